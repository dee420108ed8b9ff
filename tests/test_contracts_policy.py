"""Policy contracts: rules published by the bound smartphone fire in the end-of-block hook,
exactly once per trigger, and set the device's effective policy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contracts.addresses import POLICY
from contracts.testing import Call, TestChain, address_of, consortium, events, reason

DEV = address_of("dev")


@pytest.fixture
def chain() -> Iterator[TestChain]:
    c = consortium([])
    yield c
    c.close()


def fired(receipts: list) -> list[dict]:
    return events(receipts[-1], "PolicyExecuted")  # the end-of-block receipt


def test_only_the_bound_smartphone_publishes(chain: TestChain) -> None:
    rule = ["height", "", "", 1, "notify", "hello", 0]
    assert reason(chain.send("stranger", POLICY, "publish", [DEV, [rule]])) == "not-authorized"
    assert reason(chain.send("dev", POLICY, "publish", [DEV, [rule]])) == "not-authorized"
    assert reason(chain.send("phone", POLICY, "publish", [DEV, [["height", "", "", 1, "explode", "x", 0]]])) \
        == "bad-rule"
    assert chain.send("phone", POLICY, "publish", [DEV, [rule]]).succeeded


def test_report_rule_fires_once_per_qualifying_report(chain: TestChain) -> None:
    rules = [["report", "power", ">", 500, "set_mode", "power-saving", 0],
             ["report", "power", ">", 500, "set_limit", "power", 400]]
    assert chain.send("phone", POLICY, "publish", [DEV, rules]).succeeded
    quiet = chain.block([Call("dev", POLICY, "report", ["power", 300])])
    assert fired(quiet) == [] and chain.view(POLICY, "effective", [DEV]) == ["normal", [], 1]
    hot = chain.block([Call("dev", POLICY, "report", ["power", 600]), Call("dev", POLICY, "report", ["power", 700])])
    executions = fired(hot)
    assert [(e["rule"], e["trigger_value"]) for e in executions] == [(0, 600), (1, 600), (0, 700), (1, 700)]
    assert chain.view(POLICY, "effective", [DEV]) == ["power-saving", [["power", 400]], 1]
    assert fired(chain.block([])) == []  # nothing fires twice
    assert chain.view(POLICY, "pending", []) == [0, 0]


def test_time_and_height_rules_fire_exactly_once(chain: TestChain) -> None:
    height = chain.chain.height + 3
    time_s = chain.now_ms // 1000 + 100
    rules = [["height", "", "", height, "notify", "check-meter", 0], ["time", "", "", time_s, "set_mode", "eco", 0]]
    assert chain.send("phone", POLICY, "publish", [DEV, rules]).succeeded
    seen = []
    for _ in range(6):
        chain.advance(30_000)
        seen += [(e["rule"], e["trigger"]) for e in fired(chain.block([]))]
    assert seen == [(0, "height"), (1, "time")]
    assert chain.view(POLICY, "effective", [DEV])[0] == "eco"  # type: ignore[index]


def test_republishing_drops_unfired_triggers(chain: TestChain) -> None:
    far = chain.chain.height + 100
    assert chain.send("phone", POLICY, "publish", [DEV, [["height", "", "", far, "notify", "old", 0]]]).succeeded
    assert chain.view(POLICY, "pending", []) == [1, 0]
    assert chain.send("phone", POLICY, "publish", [DEV, [["report", "temp", ">=", 90, "notify", "hot", 0]]]).succeeded
    assert chain.view(POLICY, "pending", []) == [0, 0]  # the superseded rule was dropped by the hook
    assert chain.view(POLICY, "effective", [DEV])[2] == 2  # type: ignore[index]


def test_bounded_fires_per_block_carry_over() -> None:
    c = consortium([])
    params_policy = c.chain.engine.by_name["policy"]
    params_policy.fires_per_block_max = 2  # type: ignore[attr-defined]
    try:
        rule = ["report", "v", ">", 0, "notify", "n", 0]
        assert c.send("phone", POLICY, "publish", [DEV, [rule]]).succeeded
        first = c.block([Call("dev", POLICY, "report", ["v", i]) for i in range(1, 6)])
        assert [e["trigger_value"] for e in fired(first)] == [1, 2]
        assert [e["trigger_value"] for e in fired(c.block([]))] == [3, 4]
        assert [e["trigger_value"] for e in fired(c.block([]))] == [5]
        assert fired(c.block([])) == []
    finally:
        c.close()


def test_only_devices_report(chain: TestChain) -> None:
    assert reason(chain.send("phone", POLICY, "report", ["power", 1])) == "not-device"
    assert chain.send("dev", POLICY, "report", ["power", 1]).succeeded
    assert chain.view(POLICY, "last_report", [DEV, "power"]) == [1]
