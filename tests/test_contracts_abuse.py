"""Contract-level abuse closed (issue 13): the credit pump, identity squatting (in
test_contracts_registry), a node paid for work it did not do, and one party filling the
tables every owner shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chain import Value
from contracts.addresses import CREDIT, DSC, POLICY, REGISTRY, TOKEN
from contracts.registry import registration_consent
from contracts.testing import (
    BID_DEPOSIT,
    CHAIN_ID,
    FUNDS,
    REQUEST_DEPOSIT,
    START_MS,
    Call,
    TestChain,
    address_of,
    consortium,
    events,
    key_of,
    reason,
    registration,
)
from crypto import keccak256
from tests.test_contracts_dsc import run_auction, total_supply
from vm.fixedpoint import SCALE

DAY_MS = 86_400_000


@pytest.fixture
def chain() -> Iterator[TestChain]:
    c = consortium(["s1", "s2"])
    yield c
    c.close()


def credit(c: TestChain, name: str) -> int:
    value = c.view(CREDIT, "credit_of", [address_of(name)])
    assert isinstance(value, int)
    return value


def serve_in_warranty(c: TestChain, phone: str, device: bytes, vendor: str, rating: int) -> dict:
    """One in-warranty service by `vendor` for `device`, rated by `phone`; the Rated event."""
    opened = c.send(phone, DSC, "open_request", [device], value=REQUEST_DEPOSIT)
    assert opened.succeeded, opened.error
    request_id = events(opened, "RequestOpened")[0]["request"]
    receipts = c.block([Call(vendor, DSC, "set_mode", [request_id, "remote"]),
                        Call(phone, DSC, "complete", [request_id, keccak256(b"fault")]),
                        Call(phone, DSC, "rate", [request_id, rating])])
    assert all(r.succeeded for r in receipts), [r.error for r in receipts]
    return events(receipts[2], "Rated")[0]


def test_credit_pump_through_own_devices_fails(chain: TestChain) -> None:
    """The issue's reproduction: a vendor admits its own smartphone, registers a device it
    holds the key of, and rates itself 100 twelve times. Its credit does not move."""
    pump_device = key_of("pump-device")
    assert chain.send("vendor", REGISTRY, "register", registration("pump-phone", "smartphone", "vendor")).succeeded
    end = START_MS // 1000 + 10**6
    consent = registration_consent(pump_device, CHAIN_ID, address_of("vendor"), 0)
    assert chain.send("vendor", REGISTRY, "register_device", [pump_device.address, "meter", end, b"", b"",
                                                              pump_device.public_key, consent]).succeeded
    assert chain.send("vendor", REGISTRY, "bind_smartphone", [pump_device.address, address_of("pump-phone")]).succeeded
    assert chain.send("admin", TOKEN, "transfer", [address_of("pump-phone"), 10**6]).succeeded
    before = credit(chain, "vendor")
    for _ in range(12):
        rated = serve_in_warranty(chain, "pump-phone", pump_device.address, "vendor", 100)
        assert rated["counted"] is False
    assert credit(chain, "vendor") == before == 60 * SCALE
    assert chain.view(CREDIT, "ratings", [address_of("vendor")]) == []


def test_independent_owner_counts_once_per_period(chain: TestChain) -> None:
    """The genesis-admitted smartphone is independent of the vendor: its first rating
    counts, a second within the rating period does not, one a period later does."""
    wdev = address_of("wdev")
    assert serve_in_warranty(chain, "phone", wdev, "vendor", 90)["counted"] is True
    assert credit(chain, "vendor") == 90 * SCALE
    assert serve_in_warranty(chain, "phone", wdev, "vendor", 100)["counted"] is False
    assert credit(chain, "vendor") == 90 * SCALE
    chain.advance(DAY_MS)
    assert serve_in_warranty(chain, "phone", wdev, "vendor", 70)["counted"] is True
    assert credit(chain, "vendor") == 80 * SCALE  # (90 + 70) / 2


def reported_done(c: TestChain) -> int:
    """An auction won by s1 at 80, which then claims the repair done."""
    request_id, _ = run_auction(c, {"s1": 80})
    assert c.send("s1", DSC, "set_mode", [request_id, "remote"]).succeeded
    assert c.send("s1", DSC, "report_done", [request_id]).succeeded
    return request_id


def test_dispute_arbiter_finds_the_node_at_fault(chain: TestChain) -> None:
    request_id = reported_done(chain)
    assert reason(chain.send("s2", DSC, "dispute", [request_id])) == "not-requester"
    disputed = chain.send("phone", DSC, "dispute", [request_id])
    assert events(disputed, "Disputed")[0]["until_ms"] == chain.now_ms + 7 * DAY_MS
    # while disputed nothing settles: the deadline path and the node's claim wait
    chain.advance(600_001)
    assert reason(chain.send("stranger", DSC, "expire", [request_id])) == "deadline-not-reached"
    assert reason(chain.send("s2", DSC, "resolve", [request_id, "node"])) == "not-arbiter"
    assert reason(chain.send("admin", DSC, "resolve", [request_id, "both"])) == "bad-verdict"
    resolved = chain.send("admin", DSC, "resolve", [request_id, "node"])
    assert events(resolved, "Defaulted")[0]["reason"] == "dispute-lost"
    assert chain.balance("s1") == FUNDS - BID_DEPOSIT  # not paid, deposit to the payer
    assert chain.balance("phone") == FUNDS + BID_DEPOSIT
    assert total_supply(chain) == FUNDS * 8


def test_dispute_arbiter_finds_the_requester_at_fault(chain: TestChain) -> None:
    request_id = reported_done(chain)
    assert chain.send("phone", DSC, "dispute", [request_id]).succeeded
    assert chain.send("admin", DSC, "resolve", [request_id, "requester"]).succeeded
    assert chain.balance("s1") == FUNDS + 80 + REQUEST_DEPOSIT
    assert chain.balance("phone") == FUNDS - 80 - REQUEST_DEPOSIT
    assert reason(chain.send("admin", DSC, "resolve", [request_id, "node"])) == "not-disputed"


def test_unresolved_dispute_returns_everything(chain: TestChain) -> None:
    request_id = reported_done(chain)
    assert chain.send("phone", DSC, "dispute", [request_id]).succeeded
    chain.advance(7 * DAY_MS + 1)
    expired = chain.send("stranger", DSC, "expire", [request_id])
    assert events(expired, "Defaulted")[0]["reason"] == "dispute-unresolved"
    assert chain.balance("s1") == FUNDS and chain.balance("phone") == FUNDS
    # a dispute needs a report_done to contest
    other, _ = run_auction(chain, {"s2": 70})
    assert reason(chain.send("phone", DSC, "dispute", [other])) == "not-reported"


def test_one_smartphone_cannot_fill_the_timed_table() -> None:
    """16 devices x 16 far-future rules from one phone used to fill timed_max for everyone:
    the owner quota stops it first and another owner can still arm its rule."""
    c = consortium([], extra_vendors=[])
    try:
        far: list[Value] = ["time", "", "", 10**12, "notify", "later", 0]
        assert c.send("phone", POLICY, "publish", [address_of("dev"), [far] * 16]).succeeded
        assert c.send("phone", POLICY, "publish", [address_of("wdev"), [far] * 16]).succeeded
        third = _own_device(c, "dev3", "phone")
        refused = c.send("phone", POLICY, "publish", [third, [far]])
        assert reason(refused) == "owner-timed-full"
        # republishing a device's policy replaces its own rules, within the quota
        assert c.send("phone", POLICY, "publish", [address_of("dev"), [far] * 16]).succeeded
        other = _own_device(c, "dev4", "phone-2")
        assert c.send("phone-2", POLICY, "publish", [other, [far]]).succeeded
    finally:
        c.close()


def test_one_device_cannot_fill_the_report_queue() -> None:
    c = consortium([])
    policy = c.chain.engine.by_name["policy"]
    policy.fires_per_block_max = 1  # type: ignore[attr-defined]  # keep triggers queued
    try:
        rule: list[Value] = ["report", "v", ">", 0, "notify", "n", 0]
        assert c.send("phone", POLICY, "publish", [address_of("dev"), [rule]]).succeeded
        assert c.send("phone", POLICY, "publish", [address_of("wdev"), [rule]]).succeeded
        receipts = c.block([Call("dev", POLICY, "report", ["v", i]) for i in range(1, 19)])[:-1]
        assert [reason(r) for r in receipts].count("device-queue-full") == 2  # 16 waiting, 2 refused
        assert c.send("wdev", POLICY, "report", ["v", 1]).succeeded  # another device still reports
    finally:
        c.close()


def _own_device(c: TestChain, name: str, phone: str) -> bytes:
    """A further device of `vendor` bound to `phone` (admitted by the administrator)."""
    key = key_of(name)
    if c.view(REGISTRY, "role", [address_of(phone)]) != "smartphone":
        assert c.send("admin", REGISTRY, "register", registration(phone, "smartphone", REGISTRY)).succeeded
    consent = registration_consent(key, CHAIN_ID, address_of("vendor"), 0)
    assert c.send("vendor", REGISTRY, "register_device", [key.address, "meter", 0, b"", b"", key.public_key,
                                                          consent]).succeeded
    assert c.send("vendor", REGISTRY, "bind_smartphone", [key.address, address_of(phone)]).succeeded
    return key.address
