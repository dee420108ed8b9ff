"""Paillier (eqs. 3-7): round trips, homomorphism, serialisation, the r^N pool, hybrid
encoding. Property tests use a 512-bit key for speed; one test runs at 2048 bits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import BadCiphertext, BadKey, PlaintextOutOfRange, counters, paillier

KEY = paillier.PaillierPrivateKey.generate(512)
PUBLIC = KEY.public_key
OTHER = paillier.PaillierPrivateKey.generate(512)

plaintexts = st.integers(min_value=0, max_value=PUBLIC.n - 1)


@settings(max_examples=60, deadline=None)
@given(plaintexts)
def test_round_trip(m: int) -> None:
    assert KEY.decrypt(PUBLIC.encrypt(m)) == m


@settings(max_examples=40, deadline=None)
@given(plaintexts, plaintexts)
def test_homomorphic_addition(a: int, b: int) -> None:
    assert KEY.decrypt(PUBLIC.encrypt(a) + PUBLIC.encrypt(b)) == (a + b) % PUBLIC.n


def test_encryption_is_randomised() -> None:
    # The paper's fixed r would make these equal (docs/crypto.md, randomness deviation).
    assert PUBLIC.encrypt(7).value != PUBLIC.encrypt(7).value


@pytest.mark.parametrize("m", [-1, PUBLIC.n, PUBLIC.n + 5])
def test_plaintext_out_of_range(m: int) -> None:
    with pytest.raises(PlaintextOutOfRange):
        PUBLIC.encrypt(m)


def test_cannot_mix_keys() -> None:
    with pytest.raises(BadCiphertext):
        PUBLIC.encrypt(1) + OTHER.public_key.encrypt(1)
    with pytest.raises(BadCiphertext):
        KEY.decrypt(OTHER.public_key.encrypt(1))


def test_public_key_bytes() -> None:
    data = PUBLIC.to_bytes()
    assert len(data) == 64
    assert paillier.PaillierPublicKey.from_bytes(data) == PUBLIC


@pytest.mark.parametrize("data", [
    b"\x00" + b"\xff" * 64,  # leading zero byte: not canonical
    b"\xff" * 32,  # 256 bits: too small
    b"\xff" * 63 + b"\xfe",  # even
    (2 ** 521 - 1).to_bytes(66, "big"),  # a Mersenne prime, not a product of two
], ids=["leading_zero", "too_small", "even", "prime"])
def test_bad_public_key_bytes(data: bytes) -> None:
    with pytest.raises(BadKey):
        paillier.PaillierPublicKey.from_bytes(data)


def test_private_key_bytes() -> None:
    assert paillier.PaillierPrivateKey.from_bytes(KEY.to_bytes()) == KEY
    assert "p=" not in repr(KEY)


@pytest.mark.parametrize("data", [b"", b"\xc2\x01\x02", b"\xff\xff"], ids=["empty", "tiny", "junk"])
def test_bad_private_key_bytes(data: bytes) -> None:
    with pytest.raises(BadKey):
        paillier.PaillierPrivateKey.from_bytes(data)


def test_ciphertext_bytes_round_trip() -> None:
    c = PUBLIC.encrypt(99)
    data = c.to_bytes()
    assert len(data) == PUBLIC.ciphertext_bytes == 128
    assert KEY.decrypt(PUBLIC.ciphertext_from_bytes(data)) == 99


@pytest.mark.parametrize("value", [
    0,
    PUBLIC.n * PUBLIC.n,  # outside Z_{N^2}
    PUBLIC.n * 3,  # shares the factors of N: not a unit mod N^2
], ids=["zero", "n_squared", "not_unit"])
def test_bad_ciphertext_values(value: int) -> None:
    with pytest.raises(BadCiphertext):
        PUBLIC.ciphertext_from_bytes(value.to_bytes(PUBLIC.ciphertext_bytes, "big"))


def test_ciphertext_of_wrong_length() -> None:
    with pytest.raises(BadCiphertext):
        PUBLIC.ciphertext_from_bytes(PUBLIC.encrypt(1).to_bytes()[1:])


def test_pool_hands_out_each_value_once_and_falls_back_inline() -> None:
    key = paillier.PaillierPrivateKey.generate(512)
    pool = key.public_key.pool
    assert pool.refill(3) == 3
    assert len(pool) == 3
    ciphertexts = [key.public_key.encrypt(5) for _ in range(5)]
    assert (pool.hits, pool.misses, len(pool)) == (3, 2, 0)
    assert len({c.value for c in ciphertexts}) == 5
    assert all(key.decrypt(c) == 5 for c in ciphertexts)
    assert pool.refill() == pool.size_max
    assert pool.refill() == 0


def test_operations_are_counted() -> None:
    counter = counters.OpCounter()
    with counters.attribute_to(counter):
        KEY.decrypt(PUBLIC.encrypt(3) + PUBLIC.encrypt(4))
    assert counter.snapshot().as_dict() == {"T_E": 3, "T_M": 0, "T_P": 0}


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=4000), st.binary(max_size=40))
def test_hybrid_round_trip(body: bytes, associated: bytes) -> None:
    data = paillier.hybrid_encrypt(PUBLIC, body, associated)
    assert paillier.hybrid_decrypt(KEY, data, associated) == body


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=500), st.data())
def test_hybrid_detects_any_flipped_byte(body: bytes, data: st.DataObject) -> None:
    sealed = paillier.hybrid_encrypt(PUBLIC, body)
    i = data.draw(st.integers(0, len(sealed) - 1))
    tampered = sealed[:i] + bytes([sealed[i] ^ 0x20]) + sealed[i + 1:]
    with pytest.raises(BadCiphertext):
        paillier.hybrid_decrypt(KEY, tampered)


def test_hybrid_rejects_wrong_associated_data_and_key() -> None:
    sealed = paillier.hybrid_encrypt(PUBLIC, b"fault: relay 7", b"header")
    with pytest.raises(BadCiphertext):
        paillier.hybrid_decrypt(KEY, sealed, b"headex")
    with pytest.raises(BadCiphertext):
        paillier.hybrid_decrypt(OTHER, sealed, b"header")


def test_hybrid_rejects_a_homomorphically_shifted_key() -> None:
    # E(k) * E(1) = E(k + 1): a well-formed ciphertext of the wrong AES key.
    import rlp

    sealed = paillier.hybrid_encrypt(PUBLIC, b"body")
    key_ct, nonce, body = rlp.decode(sealed)
    shifted = PUBLIC.ciphertext_from_bytes(key_ct) + PUBLIC.encrypt(1)
    with pytest.raises(BadCiphertext):
        paillier.hybrid_decrypt(KEY, rlp.encode([shifted.to_bytes(), nonce, body]))


def test_full_size_2048_bit_key() -> None:
    key = paillier.PaillierPrivateKey.generate()
    public = key.public_key
    assert public.n.bit_length() == 2048
    assert len(public.to_bytes()) == 256
    a, b = 2 ** 200 + 17, 123456789
    assert key.decrypt(public.encrypt(a) + public.encrypt(b)) == a + b
    body = b"trouble spot: breaker 3; failure performance: trips at 0.8 In" * 40
    assert paillier.hybrid_decrypt(key, paillier.hybrid_encrypt(public, body)) == body


def _hybrid_parts() -> tuple[bytes, bytes, bytes]:
    import rlp

    key_ct, nonce, body = rlp.decode(paillier.hybrid_encrypt(PUBLIC, b"abc"))
    return key_ct, nonce, body


@pytest.mark.parametrize("shape", ["empty_body", "truncated_body", "two_fields", "nested",
                                   "not_a_list", "short_key_ct"])
def test_hybrid_rejects_structural_damage(shape: str) -> None:
    import rlp

    key_ct, nonce, body = _hybrid_parts()
    data = {
        "empty_body": rlp.encode([key_ct, nonce, b""]),
        "truncated_body": rlp.encode([key_ct, nonce, body[:-1]]),
        "two_fields": rlp.encode([key_ct, nonce]),
        "nested": rlp.encode([key_ct, nonce, [body]]),
        "not_a_list": rlp.encode(body),
        "short_key_ct": rlp.encode([key_ct[1:], nonce, body]),
    }[shape]
    with pytest.raises(BadCiphertext):
        paillier.hybrid_decrypt(KEY, data)
