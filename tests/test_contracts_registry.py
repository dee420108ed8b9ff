"""Registry: who admits whom, keys on chain, warranty status, revocation, accounts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contracts.addresses import REGISTRY
from contracts.testing import WARRANTY_S, TestChain, address_of, consortium, reason

NEW = address_of("newcomer")


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
    assert reason(chain.send("s1", REGISTRY, "register_device", [NEW, "lamp", 0, b"", b""])) == "not-authorized"
    end = chain.now_ms // 1000 + 10
    assert chain.send("vendor", REGISTRY, "register_device", [NEW, "lamp", end, b"Y", b"N"]).succeeded
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
