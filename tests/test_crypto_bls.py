"""BLS12-381 min-sig signatures: RFC/IETF vectors, cross-backend identity, rejections.

py_ecc pairings cost ~0.2-0.5 s each, so the default suite runs only two py_ecc
verifications (one per direction plus one tampered); everything else uses arkworks.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from py_arkworks_bls12381 import G1Point

from crypto import BadKey, BadSignature, UnknownBackend, bls, counters

ARK = bls.backend_named("arkworks")
PY_ECC = bls.backend_named("py_ecc")

# RFC 9380 Appendix J.9.1, suite BLS12381G1_XMD:SHA-256_SSWU_RO_: (msg, x || y) big-endian.
RFC9380_DST = b"QUUX-V01-CS02-with-BLS12381G1_XMD:SHA-256_SSWU_RO_"
RFC9380_G1 = [
    (b"",
     "052926add2207b76ca4fa57a8734416c8dc95e24501772c814278700eed6d1e4e8cf62d9c09db0fac349612b759e79a1"
     "08ba738453bfed09cb546dbb0783dbb3a5f1f566ed67bb6be0e8c67e2e81a4cc68ee29813bb7994998f3eae0c9c6a265"),
    (b"abc",
     "03567bc5ef9c690c2ab2ecdf6a96ef1c139cc0b2f284dca0a9a7943388a49a3aee664ba5379a7655d3c68900be2f6903"
     "0b9c15f3fe6e5cf4211f346271d7b01c8f3b28be689c8429c85b67af215533311f0b8dfaaa154fa6b88176c229f2885d"),
]

SEED = bytes(range(32))
KEY = bls.BlsPrivateKey.from_seed(SEED)
MESSAGE = b"C || ID_v || ID_k || T"


@pytest.mark.parametrize(("message", "expected"), RFC9380_G1)
def test_hash_to_g1_matches_rfc9380_in_both_libraries(message: bytes, expected: str) -> None:
    import hashlib

    from py_ecc import optimized_bls12_381 as curve
    from py_ecc.bls.hash_to_curve import hash_to_G1

    ark_xy = G1Point.hash_to_curve(message, RFC9380_DST).to_xy_bytes_be()
    assert bytes(ark_xy).hex() == expected
    x, y = curve.normalize(hash_to_G1(message, RFC9380_DST, hashlib.sha256))
    assert (int(x).to_bytes(48, "big") + int(y).to_bytes(48, "big")).hex() == expected


def test_curve_order_is_the_libraries_one() -> None:
    from py_ecc.optimized_bls12_381 import curve_order

    assert bls.CURVE_ORDER == curve_order


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=32, max_size=80))
def test_keygen_matches_ietf_reference(seed: bytes) -> None:
    from py_ecc.bls import G2Basic

    assert bls.BlsPrivateKey.from_seed(seed).scalar == G2Basic.KeyGen(seed)


def test_secret_key_bytes_round_trip_and_bounds() -> None:
    assert bls.BlsPrivateKey.from_bytes(KEY.to_bytes()) == KEY
    with pytest.raises(BadKey):
        bls.BlsPrivateKey.from_bytes(b"\x00" * 32)
    with pytest.raises(BadKey):
        bls.BlsPrivateKey.from_bytes(bls.CURVE_ORDER.to_bytes(32, "big"))
    with pytest.raises(BadKey):
        bls.BlsPrivateKey.from_bytes(b"\x01" * 31)
    with pytest.raises(BadKey):
        bls.BlsPrivateKey.from_seed(b"\x01" * 31)
    assert "scalar" not in repr(KEY)


def test_generate_gives_distinct_keys() -> None:
    assert bls.BlsPrivateKey.generate() != bls.BlsPrivateKey.generate()


@pytest.mark.parametrize("message", [b"", b"abc", bytes(range(256)) * 3])
def test_backends_give_identical_bytes(message: bytes) -> None:
    public_key = KEY.public_key(ARK)
    assert len(public_key) == bls.PUBLIC_KEY_BYTES
    assert public_key == KEY.public_key(PY_ECC)
    signature = bls.sign(KEY, message, backend=ARK)
    assert len(signature) == bls.SIGNATURE_BYTES
    assert signature == bls.sign(KEY, message, backend=PY_ECC)


def test_sign_with_arkworks_verify_with_py_ecc() -> None:
    signature = bls.sign(KEY, MESSAGE, backend=ARK)
    bls.verify(KEY.public_key(ARK), MESSAGE, signature, backend=PY_ECC)


def test_sign_with_py_ecc_verify_with_arkworks() -> None:
    other = bls.BlsPrivateKey.from_seed(b"\x07" * 32)
    signature = bls.sign(other, MESSAGE, backend=PY_ECC)
    bls.verify(other.public_key(PY_ECC), MESSAGE, signature, backend=ARK)


def test_py_ecc_rejects_tampered_message() -> None:
    signature = bls.sign(KEY, MESSAGE, backend=ARK)
    with pytest.raises(BadSignature):
        bls.verify(KEY.public_key(ARK), MESSAGE + b"!", signature, backend=PY_ECC)


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=300), st.data())
def test_arkworks_round_trip_and_bit_flips(message: bytes, data: st.DataObject) -> None:
    public_key = KEY.public_key(ARK)
    signature = bls.sign(KEY, message, backend=ARK)
    bls.verify(public_key, message, signature, backend=ARK)
    if message:
        i = data.draw(st.integers(0, len(message) - 1))
        tampered = message[:i] + bytes([message[i] ^ 1]) + message[i + 1:]
        with pytest.raises(BadSignature):
            bls.verify(public_key, tampered, signature, backend=ARK)
    j = data.draw(st.integers(0, bls.SIGNATURE_BYTES - 1))
    bad_sig = signature[:j] + bytes([signature[j] ^ 4]) + signature[j + 1:]
    with pytest.raises(BadSignature):
        bls.verify(public_key, message, bad_sig, backend=ARK)


def test_signature_under_another_key_is_rejected() -> None:
    other = bls.BlsPrivateKey.from_seed(b"\x09" * 32)
    signature = bls.sign(KEY, MESSAGE, backend=ARK)
    with pytest.raises(BadSignature):
        bls.verify(other.public_key(ARK), MESSAGE, signature, backend=ARK)


def _non_subgroup_g1_bytes() -> bytes:
    # The first x for which x^3 + 4 is a square (x = 4) gives a curve point outside the
    # r-torsion (the G1 cofactor is ~2^126).
    from py_ecc.optimized_bls12_381 import field_modulus as q

    x = 1
    while True:
        rhs = (x ** 3 + 4) % q
        y = pow(rhs, (q + 1) // 4, q)
        if y * y % q == rhs:
            point = G1Point.from_xy_bytes_unchecked_be(x.to_bytes(48, "big") + y.to_bytes(48, "big"))
            assert not point.is_in_subgroup()
            return bytes(point.to_compressed_bytes())
        x += 1


MALFORMED_SIGNATURES = {
    "short": b"\x80" * 47,
    "long": b"\x80" * 49,
    "infinity": b"\xc0" + b"\x00" * 47,
    "noncanonical_infinity": b"\xff" * 48,
    "uncompressed_flag": b"\x00" * 48,
    # x^3 + 4 is not a square mod q for x = 1: no curve point has this x.
    "x_not_on_curve": b"\x80" + b"\x00" * 46 + b"\x01",
    "x_above_field": b"\x9f" + b"\xff" * 47,
    "not_in_subgroup": _non_subgroup_g1_bytes(),
}


@pytest.mark.parametrize("backend", [ARK, PY_ECC], ids=lambda b: b.name)
@pytest.mark.parametrize("name", sorted(MALFORMED_SIGNATURES))
def test_malformed_signature_is_a_typed_error(backend: bls.BlsBackend, name: str) -> None:
    with pytest.raises(BadSignature):
        bls.verify(KEY.public_key(ARK), MESSAGE, MALFORMED_SIGNATURES[name], backend=backend)


MALFORMED_KEYS = {
    "short": b"\x80" * 95,
    "infinity": b"\xc0" + b"\x00" * 95,
    "noncanonical_infinity": b"\xff" * 96,
    "uncompressed_flag": b"\x00" * 96,
    "arbitrary_x": b"\x80" + b"\x00" * 94 + b"\x05",
}


@pytest.mark.parametrize("backend", [ARK, PY_ECC], ids=lambda b: b.name)
@pytest.mark.parametrize("name", sorted(MALFORMED_KEYS))
def test_malformed_public_key_is_a_typed_error(backend: bls.BlsBackend, name: str) -> None:
    signature = bls.sign(KEY, MESSAGE, backend=ARK)
    with pytest.raises(BadKey):
        bls.verify(MALFORMED_KEYS[name], MESSAGE, signature, backend=backend)
    with pytest.raises(BadKey):
        bls.validate_public_key(MALFORMED_KEYS[name], backend=backend)


def test_validate_public_key_accepts_a_real_key() -> None:
    bls.validate_public_key(KEY.public_key(ARK), backend=ARK)


def test_default_backend_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(bls.BACKEND_ENV, raising=False)
    assert bls.default_backend().name == "arkworks"
    monkeypatch.setenv(bls.BACKEND_ENV, "py_ecc")
    assert bls.default_backend().name == "py_ecc"
    monkeypatch.setenv(bls.BACKEND_ENV, "blst")
    with pytest.raises(UnknownBackend):
        bls.default_backend()


def test_operations_are_counted_only_inside_attribution() -> None:
    public_key = KEY.public_key(ARK)
    signature = bls.sign(KEY, MESSAGE, backend=ARK)
    counter = counters.OpCounter()
    with counters.attribute_to(counter):
        bls.sign(KEY, MESSAGE, backend=ARK)
        bls.verify(public_key, MESSAGE, signature, backend=ARK)
    bls.verify(public_key, MESSAGE, signature, backend=ARK)
    assert counter.snapshot().as_dict() == {"T_E": 0, "T_M": 1, "T_P": 2}
