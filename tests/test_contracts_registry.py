"""Registry: who admits whom, keys on chain, warranty status, revocation, accounts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chain.genesis import GenesisError
from contracts.addresses import REGISTRY
from contracts.registry import registration_consent
from contracts.testing import (
    CHAIN_ID,
    WARRANTY_S,
    TestChain,
    address_of,
    consortium,
    key_of,
    reason,
    registration,
)

NEW = address_of("newcomer")


def device_args(name: str, vendor: str, end: int = 0, nonce: int = 0, device_type: str = "lamp") -> list:
    """register_device arguments with the device key's consent to `vendor`."""
    key = key_of(name)
    return [key.address, device_type, end, b"", b"", key.public_key,
            registration_consent(key, CHAIN_ID, address_of(vendor), nonce)]


@pytest.fixture
def chain() -> Iterator[TestChain]:
    c = consortium(["s1"])
    yield c
    c.close()


def test_admins_admit_members_and_create_their_account(chain: TestChain) -> None:
    assert chain.chain.account(NEW) is None
    assert reason(chain.send("s1", REGISTRY, "register", registration("newcomer", "supplier", "s1"))) == \
        "not-authorized"
    assert reason(chain.send("admin", REGISTRY, "register", registration("newcomer", "device", REGISTRY))) == \
        "bad-role"
    supplier = registration("newcomer", "supplier", REGISTRY, bls_key=b"Y" * 96, paillier_n=b"N" * 256)
    assert chain.send("admin", REGISTRY, "register", supplier).succeeded
    assert chain.chain.account(NEW) is not None
    assert chain.view(REGISTRY, "member", [NEW]) == ["supplier", b"Y" * 96, b"N" * 256, REGISTRY, True]
    assert reason(chain.send("admin", REGISTRY, "register", registration("newcomer", "vendor", REGISTRY))) == \
        "already-registered"


def test_vendors_register_their_devices_and_bind_phones(chain: TestChain) -> None:
    assert reason(chain.send("s1", REGISTRY, "register_device", device_args("newcomer", "s1"))) == "not-authorized"
    end = chain.now_ms // 1000 + 10
    args = device_args("newcomer", "vendor", end)
    args[3:5] = [b"Y", b"N"]
    assert chain.send("vendor", REGISTRY, "register_device", args).succeeded
    assert chain.view(REGISTRY, "device", [NEW]) == ["lamp", end, address_of("vendor"), b""]
    assert chain.view(REGISTRY, "in_warranty", [NEW]) is True
    assert reason(chain.send("s1", REGISTRY, "bind_smartphone", [NEW, address_of("phone")])) == "not-authorized"
    assert chain.send("newcomer", REGISTRY, "bind_smartphone", [NEW, address_of("phone")]).succeeded
    assert chain.view(REGISTRY, "acts_for", [NEW, address_of("phone")]) is True
    assert NEW in chain.view(REGISTRY, "devices_of", [address_of("phone")])  # type: ignore[operator]
    chain.advance(11_000)
    chain.block([])
    assert chain.view(REGISTRY, "in_warranty", [NEW]) is False


def test_revocation(chain: TestChain) -> None:
    dev = address_of("dev")
    assert reason(chain.send("s1", REGISTRY, "revoke", [dev])) == "not-authorized"
    assert reason(chain.send("vendor", REGISTRY, "revoke", [address_of("admin")])) == "not-authorized"
    assert chain.send("vendor", REGISTRY, "revoke", [dev]).succeeded
    assert chain.view(REGISTRY, "is_member", [dev]) is False and chain.view(REGISTRY, "role", [dev]) == ""
    assert chain.view(REGISTRY, "acts_for", [dev, address_of("phone")]) is False
    assert chain.send("admin", REGISTRY, "revoke", [address_of("s1")]).succeeded
    assert reason(chain.send("s1", REGISTRY, "update_keys", [b"Y", b"N"])) == "not-member"


def test_warranty_of_genesis_devices(chain: TestChain) -> None:
    assert chain.view(REGISTRY, "in_warranty", [address_of("dev")]) is False
    assert chain.view(REGISTRY, "in_warranty", [address_of("wdev")]) is True
    assert WARRANTY_S > 0


def test_diagnosis_nodes_register_their_own_crews(chain: TestChain) -> None:
    crew = address_of("crew")
    for sender in ("admin", "phone"):
        args = registration("crew", "crew", sender, bls_key=b"Y", paillier_n=b"N")
        assert reason(chain.send(sender, REGISTRY, "register", args)) == "not-authorized"
    assert chain.send("s1", REGISTRY, "register", registration("crew", "crew", "s1", bls_key=b"Y",
                                                               paillier_n=b"N")).succeeded
    assert chain.view(REGISTRY, "member", [crew]) == ["crew", b"Y", b"N", address_of("s1"), True]
    assert reason(chain.send("vendor", REGISTRY, "revoke", [crew])) == "not-authorized"  # not its crew
    assert chain.send("s1", REGISTRY, "revoke", [crew]).succeeded
    assert chain.view(REGISTRY, "is_member", [crew]) is False


def test_members_publish_and_replace_their_endpoint(chain: TestChain) -> None:
    vendor = address_of("vendor")
    assert chain.view(REGISTRY, "endpoint", [vendor]) == ""
    assert reason(chain.send("stranger", REGISTRY, "set_endpoint", ["http://127.0.0.1:1/sealed"])) == "not-member"
    for bad in ("", "ftp://127.0.0.1/x", "http://" + "a" * 256):
        assert reason(chain.send("vendor", REGISTRY, "set_endpoint", [bad])) == "bad-endpoint", bad
    assert chain.send("vendor", REGISTRY, "set_endpoint", ["http://127.0.0.1:9/sealed"]).succeeded
    assert chain.send("vendor", REGISTRY, "set_endpoint", ["http://127.0.0.1:10/sealed"]).succeeded
    assert chain.view(REGISTRY, "endpoint", [vendor]) == "http://127.0.0.1:10/sealed"
    chain.send("admin", REGISTRY, "revoke", [address_of("s1")])
    assert reason(chain.send("s1", REGISTRY, "set_endpoint", ["http://127.0.0.1:9/sealed"])) == "not-member"


def test_squatting_needs_the_device_key_and_revocation_frees_the_id() -> None:
    """A vendor cannot claim an address whose key it does not hold; a revoked device can be
    registered again, with a fresh consent (the old one does not replay)."""
    chain = consortium(["s1"], extra_vendors=["vendor2"])
    try:
        victim = key_of("victim-meter")
        # consent given to another vendor, or a signature by the wrong key: refused
        stolen = device_args("victim-meter", "vendor2")
        assert reason(chain.send("vendor", REGISTRY, "register_device", stolen)) == "bad-consent"
        forged = device_args("victim-meter", "vendor")
        forged[6] = registration_consent(key_of("vendor"), CHAIN_ID, address_of("vendor"), 0)
        assert reason(chain.send("vendor", REGISTRY, "register_device", forged)) == "bad-consent"
        other_key = device_args("victim-meter", "vendor")
        other_key[5] = key_of("someone").public_key
        assert reason(chain.send("vendor", REGISTRY, "register_device", other_key)) == "bad-consent"
        assert chain.view(REGISTRY, "is_member", [victim.address]) is False
        # the rightful vendor, with the device's consent
        assert chain.send("vendor2", REGISTRY, "register_device", stolen).succeeded
        assert chain.send("vendor2", REGISTRY, "bind_smartphone", [victim.address, address_of("phone")]).succeeded
        assert reason(chain.send("vendor2", REGISTRY, "register_device", stolen)) == "already-registered"
        # revocation frees the ID and unbinds it; the consent nonce moved on
        assert chain.send("vendor2", REGISTRY, "revoke", [victim.address]).succeeded
        assert victim.address not in chain.view(REGISTRY, "devices_of", [address_of("phone")])  # type: ignore[operator]
        assert chain.view(REGISTRY, "consent_nonce", [victim.address]) == 1
        assert reason(chain.send("vendor2", REGISTRY, "register_device", stolen)) == "bad-consent"  # replay
        again = device_args("victim-meter", "vendor", nonce=1)
        assert chain.send("vendor", REGISTRY, "register_device", again).succeeded
        assert chain.view(REGISTRY, "device", [victim.address]) == ["lamp", 0, address_of("vendor"), b""]
        assert chain.view(REGISTRY, "is_member", [victim.address]) is True
    finally:
        chain.close()


@pytest.mark.parametrize(("role", "sender", "rival"), [("smartphone", "vendor", "vendor2"),
                                                       ("smartphone", "admin", "vendor"),
                                                       ("crew", "s1", "vendor")])
def test_squatting_a_phone_or_crew_needs_its_key_and_revocation_frees_the_id(role: str, sender: str,
                                                                            rival: str) -> None:
    """Smartphones and crews as devices: without the key's consent to this registrar the
    address cannot be claimed; revocation frees it, and the old consent does not replay."""
    chain = consortium(["s1"], extra_vendors=["vendor2"])
    registrar = REGISTRY if sender == "admin" else address_of(sender)  # the administrators' decision
    try:
        victim = key_of("victim")
        given = registration("victim", role, registrar)
        assert reason(chain.send(rival, REGISTRY, "register", given)) == "bad-consent"  # consent to another
        forged = [*given[:5], registration("victim", role, rival)[5][:-1] + b"\x00"]
        assert reason(chain.send(rival, REGISTRY, "register", forged)) == "bad-consent"
        not_its_key = [*given[:4], key_of("someone").public_key, given[5]]
        assert reason(chain.send(sender, REGISTRY, "register", not_its_key)) == "bad-consent"
        squatter = registration("squatter", role, rival)
        squatter[0] = victim.address  # a key it holds, claiming the victim's address
        assert reason(chain.send(rival, REGISTRY, "register", squatter)) == "bad-consent"
        assert chain.view(REGISTRY, "is_member", [victim.address]) is False
        assert chain.send(sender, REGISTRY, "register", given).succeeded
        assert chain.view(REGISTRY, "member", [victim.address]) == [role, b"", b"", registrar, True]
        assert reason(chain.send(sender, REGISTRY, "register", given)) == "already-registered"
        revoker = sender if role == "crew" else "admin"  # a crew's node, or the administrators
        assert chain.send(revoker, REGISTRY, "revoke", [victim.address]).succeeded
        assert reason(chain.send(sender, REGISTRY, "register", given)) == "bad-consent"  # replay
        again = registration("victim", role, registrar, nonce=1)
        assert chain.send(sender, REGISTRY, "register", again).succeeded
        assert chain.view(REGISTRY, "is_member", [victim.address]) is True
    finally:
        chain.close()


def test_administrators_decide_by_quorum_of_distinct_admins() -> None:
    """With three administrators and the default quorum (a majority, 2), one admin's call
    is an approval only; a second distinct admin's identical call admits; a repeat by the
    same admin, or a different call, does not count towards it. Revocation likewise."""
    admins = ["admin", "admin2", "admin3"]
    chain = TestChain({"registry": {"admins": [address_of(a).hex() for a in admins]}}, {a: 10**6 for a in admins})
    try:
        assert chain.view(REGISTRY, "admin_quorum", []) == 2
        assert chain.view(REGISTRY, "role", [address_of("admin2")]) == "admin"
        vendor = registration("newcomer", "vendor", REGISTRY)
        first = chain.send("admin", REGISTRY, "register", vendor)
        assert first.succeeded and chain.view(REGISTRY, "is_member", [NEW]) is False
        assert reason(chain.send("admin", REGISTRY, "register", vendor)) == "already-approved"
        other = registration("newcomer", "supplier", REGISTRY)  # another decision: its own count
        assert chain.send("admin2", REGISTRY, "register", other).succeeded
        assert chain.view(REGISTRY, "is_member", [NEW]) is False
        assert chain.send("admin3", REGISTRY, "register", vendor).succeeded
        assert chain.view(REGISTRY, "role", [NEW]) == "vendor"
        assert chain.send("admin", REGISTRY, "revoke", [NEW]).succeeded
        assert chain.view(REGISTRY, "is_member", [NEW]) is True
        assert chain.send("admin2", REGISTRY, "revoke", [NEW]).succeeded
        assert chain.view(REGISTRY, "is_member", [NEW]) is False
    finally:
        chain.close()


def test_admin_quorum_is_validated_and_a_node_key_is_no_admin() -> None:
    admins = [address_of(a).hex() for a in ("admin", "admin2")]
    for quorum in (0, 3):
        with pytest.raises(GenesisError, match="admin_quorum"):
            TestChain({"registry": {"admins": admins, "admin_quorum": quorum}}, {})
    node_key_admin = key_of("bookkeeper-0").address.hex()  # TestChain's first bookkeeper
    with pytest.raises(GenesisError, match="not a node key"):
        TestChain({"registry": {"admins": [node_key_admin]}}, {})
