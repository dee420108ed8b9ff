"""The agents and flows in one process on the in-process ledger adapter (LocalChain):
the figures run step by step as diagnosis/protocol.py declares them, and every message the
protocol does not allow — the losing bidder's repair policy, a crew of a node that was not
assigned, packages from a foreign or unbound device, a wrong step, a repeated step — is
refused with its typed reason while the flow goes on. Fast: no cluster, short windows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from chain.genesis import Genesis
from contracts.testing import key_of
from diagnosis import flows as fl
from diagnosis import protocol as proto
from diagnosis.demo import (
    Consortium,
    Printer,
    authorisation_failures,
    build_consortium,
    demo_contract_params,
    flow_ok,
    message_failures,
    start_consortium,
)
from diagnosis.ledger import LocalChain
from diagnosis.lightclient import TrustAnchor
from diagnosis.overhead import gridchain_table3

pytestmark = pytest.mark.timeout(120)

FUNDER = "funder"


def local_chain() -> LocalChain:
    params = demo_contract_params()
    # auction windows long enough that a loaded box still commits and reveals inside them
    params["dsc"].update(commit_ms=2_000, reveal_ms=1_500, service_ms=15_000)
    return LocalChain(Genesis.from_dict({
        "chain_id": 7, "t": 1, "timestamp_ms": 1_700_000_000_000,
        "bookkeepers": [{"name": f"b{i}", "public_key": key_of(f"bookkeeper-{i}").public_key.hex()}
                        for i in range(3)],
        "accounts": [{"public_key": key_of(FUNDER).public_key.hex(), "balance": 10**9}],
        "contracts": params}))


@pytest.fixture
async def consortium() -> AsyncIterator[tuple[Consortium, LocalChain]]:
    local = local_chain()
    admin = local.ledger()
    c = await build_consortium(lambda _: local.ledger(), admin, key_of(FUNDER), TrustAnchor.of(local.genesis),
                               Printer(True),
                               paillier_bits=1024)
    await start_consortium(c, admin, Printer(True))
    try:
        yield c, local
    finally:
        await c.stop()
        local.close()


def _checked(report: fl.FlowReport) -> dict[str, Any]:
    flow = report.to_json()
    flow["ok"], flow["problems"] = flow_ok(flow)
    return flow


async def test_rmw_and_smw_send_exactly_what_the_protocol_declares(consortium: Any) -> None:
    c, _ = consortium
    for name, run in (("RMW", fl.rmw), ("SMW", fl.smw)):
        device = c.devices["meter-A" if name == "RMW" else "relay-A"]
        flow = _checked(await run(c.tally, device, c.nodes["vendor-A"], c.phones["phone-1"]))
        assert flow["ok"], flow["problems"]
        labels = [s["step"] for s in flow["steps"]]
        assert labels == [s.label for s in proto.FLOWS[name].steps]  # each declared step once, in order
        design = gridchain_table3(name)
        assert {r: (v["gridchain"]["unicast"], v["gridchain"]["broadcast"])
                for r, v in flow["tables"]["table3"].items() if r in design} == design
    assert c.devices["meter-A"].firmware == "1.0.1"


async def test_sow_numbers_each_step_once_and_the_winners_crew_repairs(consortium: Any) -> None:
    c, _ = consortium
    bids = {n: n.prices["relay"] for n in c.nodes.values()}
    flow = _checked(await fl.sow(c.tally, c.devices["relay-B"], c.phones["phone-2"], bids))
    assert flow["ok"], flow["problems"]
    labels = [s["step"] for s in flow["steps"]]
    assert len(labels) == len(set(labels)) and labels == [s.label for s in proto.SOW.steps]
    repairer = next(u for u in flow["unicasts"] if u["kind"] == "onsite_repair")
    winner = c.nodes[flow["outcome"]["winner"]]
    assert winner.crew is not None and repairer["from"] == winner.crew.name


async def test_messages_the_protocol_does_not_allow_are_refused_and_the_flow_goes_on(consortium: Any) -> None:
    c, _ = consortium
    result = await authorisation_failures(c, Printer(True))
    for name, path in result["paths"].items():
        assert path["ok"], (name, path)
    device = c.devices["meter-C"]
    assert "6.6.6-attacker" not in [r.get("firmware") for r in device.repairs]
    refused = {str(k): v for k, v in device.refusals.items()}
    assert refused == {"sender_not_assigned": 1, "crew_not_of_assigned": 1, "step_repeated": 1}


async def test_forged_tampered_replayed_stale_and_unregistered_are_refused(consortium: Any) -> None:
    c, _ = consortium
    result = await message_failures(c, Printer(True))
    for name, path in result["paths"].items():
        assert path["ok"], (name, path)


async def test_endpoints_come_from_the_registry_by_proof(consortium: Any) -> None:
    c, _ = consortium
    device, vendor = c.devices["meter-A"], c.nodes["vendor-A"]
    assert await device.directory.endpoint(vendor.address) == vendor.inbox.url
    await vendor.inbox.stop()  # the vendor moves: a new inbox, a new endpoint on chain
    await vendor.inbox.start()
    await vendor.tx(vendor.endpoint_call(), "")
    flow = _checked(await fl.rmw(c.tally, device, vendor, c.phones["phone-1"]))
    assert flow["ok"], flow["problems"]
    assert await device.directory.endpoint(vendor.address) == vendor.inbox.url
