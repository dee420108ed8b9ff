"""Errors raised by crypto/."""


class CryptoError(Exception):
    """Base class for expected cryptographic rejections."""


class BadSignature(CryptoError):
    """A signature did not verify under the claimed public key."""


class BadKey(CryptoError):
    """Key material is malformed (wrong length, not on the curve, unreadable file)."""


class BadCiphertext(CryptoError):
    """A ciphertext is malformed (wrong length, out of range) or fails authentication."""


class PlaintextOutOfRange(CryptoError):
    """An integer plaintext outside [0, N) for a Paillier key with modulus N."""

    def __init__(self, value: int, modulus_bits: int) -> None:
        super().__init__(f"plaintext must lie in [0, N) for a {modulus_bits}-bit N")
        self.value = value
        self.modulus_bits = modulus_bits


class UnknownBackend(ValueError):
    """A BLS backend name that is not one of the known backends (a configuration error)."""

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        super().__init__(f"unknown BLS backend {name!r}; known: {', '.join(known)}")
        self.name = name
        self.known = known
