"""Registry: who admits whom, keys on chain, warranty status, revocation, accounts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contracts.addresses import REGISTRY
from contracts.registry import device_consent
from contracts.testing import CHAIN_ID, WARRANTY_S, TestChain, address_of, consortium, key_of, reason

NEW = address_of("newcomer")


def device_args(name: str, vendor: str, end: int = 0, nonce: int = 0, device_type: str = "lamp") -> list:
    """register_device arguments with the device key's consent to `vendor`."""
    key = key_of(name)
    return [key.address, device_type, end, b"", b"", key.public_key,
            device_consent(key, CHAIN_ID, address_of(vendor), nonce)]


@pytest.fixture
def chain() -> Iterator[TestChain]:
    c = consortium(["s1"])
    yield c
    c.close()


def test_admins_admit_members_and_create_their_account(chain: TestChain) -> None:
    assert chain.chain.account(NEW) is None
    assert reason(chain.send("s1", REGISTRY, "register", [NEW, "supplier", b"Y", b"N"])) == "not-authorized"
    assert reason(chain.send("admin", REGISTRY, "register", [NEW, "device", b"", b""])) == "bad-role"
    assert chain.send("admin", REGISTRY, "register", [NEW, "supplier", b"Y" * 96, b"N" * 256]).succeeded
    assert chain.chain.account(NEW) is not None
    assert chain.view(REGISTRY, "member", [NEW]) == ["supplier", b"Y" * 96, b"N" * 256, address_of("admin"), True]
    assert reason(chain.send("admin", REGISTRY, "register", [NEW, "vendor", b"", b""])) == "already-registered"


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
    assert reason(chain.send("admin", REGISTRY, "register", [crew, "crew", b"Y", b"N"])) == "not-authorized"
    assert reason(chain.send("phone", REGISTRY, "register", [crew, "crew", b"Y", b"N"])) == "not-authorized"
    assert chain.send("s1", REGISTRY, "register", [crew, "crew", b"Y", b"N"]).succeeded
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
        forged[6] = device_consent(key_of("vendor"), CHAIN_ID, address_of("vendor"), 0)
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
