"""Errors raised by crypto/."""


class CryptoError(Exception):
    """Base class for expected cryptographic rejections."""


class BadSignature(CryptoError):
    """A signature did not verify under the claimed public key."""


class BadKey(CryptoError):
    """Key material is malformed (wrong length, not on the curve, unreadable file)."""
