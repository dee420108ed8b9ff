"""Agents as OS processes (`node.py agent ROLE --config FILE`) on a real 3-node cluster:
`consortium init` writes the cluster and the configs, each party runs in its own process,
registers what the registry lets it register, publishes its endpoint, and the flows
happen because the processes react — an in-warranty damage repaired on site by the
vendor's crew (SMW: device, vendor, crew, smartphone), an out-of-warranty fault auctioned
and repaired remotely (ROW: the suppliers bid). Mid-flow, one process of each role is
SIGKILLed and started again: the supplier after its sealed bid, the vendor after its Spot,
the device after its time t_k, the crew after its briefing, the smartphone after the
maintenance report. Both flows complete, nothing is paid, committed or logged twice, no
escrow is left. Plus config validation."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from chain.genesis import Genesis
from client import GridClient, RpcClient
from client.contracts import Dsc, Token
from diagnosis.agentconfig import (
    INBOX_PORT_OFFSET,
    AgentConfig,
    BadAgentConfig,
    DevicePlan,
    NodePlan,
    Plan,
    _inbox_ports,
    consortium_init,
    party_hosts,
    public_address,
)
from diagnosis.channel import Courier
from diagnosis.demo import demo_contract_params, token_check
from diagnosis.fleet import Fleet
from runtime.cluster import PORT_SPAN, ClusterProcesses, discover, free_base_port

WAIT_S = 300  # a loaded 2-core box starts Python processes slowly


def test_agent_config_refuses_what_cannot_run(tmp_path: Path) -> None:
    good = {"role": "vendor", "name": "v", "rpc": ["http://127.0.0.1:1"], "genesis": "g.toml", "keys": "k.json",
            "state": "s.sqlite", "policy": {"prices": {"meter": 100}}}
    assert AgentConfig.from_dict(good, tmp_path).state == tmp_path / "s.sqlite"
    bad = [({"role": "bookkeeper"}, "role"), ({"rpc": []}, "rpc"), ({"inbox_port": 70_000}, "inbox_port"),
           ({"poll_ms": 1}, "poll_ms"), ({"inbox_host": "0.0.0.0"}, "inbox_host"),
           ({"inbox_host": "10.0.0.1"}, "inbox_host"), ({"inbox_host": "localhost"}, "inbox_host"),
           ({"policy": {"prices": {"meter": -1}}}, "policy.prices")]
    for change, setting in bad:
        with pytest.raises(BadAgentConfig) as caught:
            AgentConfig.from_dict({**good, **change}, tmp_path)
        assert caught.value.setting == setting
    with pytest.raises(BadAgentConfig):
        AgentConfig.from_dict({k: v for k, v in good.items() if k != "keys"}, tmp_path)
    # a party's own loopback address is its source too; ::1 is one address, nothing to tell apart
    assert AgentConfig.from_dict({**good, "inbox_host": "127.0.1.7"}, tmp_path).source_host == "127.0.1.7"
    assert AgentConfig.from_dict({**good, "inbox_host": "::1"}, tmp_path).source_host is None


def test_each_party_has_its_own_address_and_inbox_ports_fit_the_cluster_span() -> None:
    hosts = party_hosts(300)
    assert len(set(hosts)) == 300 and hosts[0] == "127.0.1.1" and hosts[254] == "127.0.2.1"
    base = free_base_port()
    ports = _inbox_ports(base, hosts[:210])  # the 100-device benchmark: 5 nodes, 5 crews, 100 + 100
    assert len(set(ports)) == 210 and ports[0] >= base + INBOX_PORT_OFFSET and ports[-1] < base + PORT_SPAN
    with pytest.raises(BadAgentConfig) as caught:  # past the span: the next cluster's or the ephemeral ports
        _inbox_ports(base, hosts[:1] * (PORT_SPAN - INBOX_PORT_OFFSET + 1))
    assert caught.value.setting == "inbox_port"


async def test_rpc_and_messages_leave_from_the_partys_address() -> None:
    """A node counts connections per client address: the RPC client and the courier must
    connect from the party's own address, not the machine's 127.0.0.1."""
    async def remote(request: web.Request) -> web.Response:
        return web.json_response({"jsonrpc": "2.0", "id": 1, "result": request.remote, "accepted": request.remote})

    app = web.Application()
    app.router.add_post("/", remote)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    rpc, courier, shared = RpcClient([url], local_host="127.0.1.9"), Courier("127.0.1.10"), RpcClient([url])
    try:
        assert await rpc.call("chain_status") == "127.0.1.9"
        assert await courier.deliver(url, b"x") == "127.0.1.10"
        assert await shared.call("chain_status") == "127.0.0.1"  # the control: no address given
    finally:
        await rpc.close()
        await courier.close()
        await shared.close()
        await runner.cleanup()


def _plan() -> Plan:
    return Plan(nodes=(NodePlan("vendor-A", "vendor", {"meter": 120, "relay": 300}),
                       NodePlan("supplier-1", "supplier", {"meter": 90}, crew=False),
                       NodePlan("supplier-2", "supplier", {"meter": 100}, crew=False)),
                devices=(DevicePlan("relay-1", "relay", "vendor-A", True, "phone-1", report_s=0),
                         DevicePlan("meter-2", "meter", "vendor-A", False, "phone-1", report_s=0)))


async def _until(fleet: Fleet, what: str, check: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):  # not listening (yet, again)
            if await check():
                return
        exited = fleet.exited()
        assert not exited and time.monotonic() < deadline, f"{what} not reached (exited: {exited})\n" + "\n".join(
            f"== {n}\n{fleet.tail(n)}" for n in fleet.processes)
        await asyncio.sleep(0.5)


async def _sent(fleet: Fleet, name: str, kind: str, what: str, request_id: int) -> list[dict[str, Any]]:
    """The agent's events of `kind` ("unicast", "broadcast", "ops") whose kind/method/operation
    is `what`, for the request (its store keeps them across restarts)."""
    events, _ = await fleet.events(name, 0)
    key = {"unicast": "kind", "broadcast": "method", "ops": "operation"}[kind]
    return [e for e in events if e["kind"] == kind and e["request"] == request_id and e["detail"][key] == what
            and (kind != "broadcast" or e["detail"]["status"] == 1)]


async def _kill_and_restart(fleet: Fleet, name: str) -> None:
    fleet.kill(name)  # SIGKILL: nothing of its memory survives
    fleet.start(name)
    await _until(fleet, f"{name} ready again", functools.partial(fleet.ready, name))


@pytest.mark.timeout(900)
async def test_every_role_sigkilled_mid_flow_resumes_and_repeats_nothing(tmp_path: Path) -> None:
    params = demo_contract_params()
    # windows long enough for a SIGKILLed process to start again on a loaded box
    params["dsc"].update(commit_ms=20_000, reveal_ms=40_000, service_ms=180_000)
    consortium_init(tmp_path, plan=_plan(), contracts=params, paillier_bits=1024, poll_ms=500)
    cluster = ClusterProcesses(discover(tmp_path / "cluster"))
    fleet = Fleet(tmp_path / "agents")
    cluster.start_all()
    try:
        cluster.wait_healthy()
        for name in fleet.names():
            fleet.start(name)
        for name in fleet.names():
            await _until(fleet, f"{name} ready", functools.partial(fleet.ready, name))
        rpc = fleet.configs["vendor-A"].rpc
        async with GridClient(rpc) as client, aiohttp.ClientSession() as session:
            relay = public_address(fleet.configs["relay-1"].keys)
            before = await Token.balance_of(client, relay)
            requests = {}
            for device, kind in (("relay-1", "physical-damage"), ("meter-2", "firmware-fault")):
                async with session.post(fleet.url(device, "/fail"), json={"kind": kind, "detail": "E42"}) as reply:
                    requests[device] = int((await reply.json())["request"])
            smw, row = requests["relay-1"], requests["meter-2"]
            kills = [("supplier-1", "broadcast", "dsc.commit", row), ("vendor-A", "unicast", "spot", smw),
                     ("relay-1", "unicast", "time", smw), ("crew-vendor-A", "ops", "open", smw),
                     ("phone-1", "ops", "open", smw)]
            for name, kind, what, request_id in kills:
                needed = 2 if name == "phone-1" else 1  # the smartphone: after the notice and the report
                await _until(fleet, f"{name}: {what}", lambda n=name, k=kind, w=what, r=request_id, m=needed:
                             _at_least(_sent(fleet, n, k, w, r), m))
                await _kill_and_restart(fleet, name)
            for request_id in (smw, row):
                await _until(fleet, f"request {request_id} completed and published",
                             functools.partial(_published, fleet, request_id))
            assert (await Dsc.request(client, smw)).mode == "on-site"
            assert await Token.balance_of(client, relay) == before  # one deposit, returned
            logged = {r: sorted(step for step, _, _ in await Dsc.messages(client, r)) for r in (smw, row)}
            assert logged == {smw: [2, 4, 5, 6, 6, 7, 9], row: [6, 6, 9]}  # each step's hash once
            for name in ("supplier-1", "supplier-2"):
                assert len(await _sent(fleet, name, "broadcast", "dsc.commit", row)) == 1  # one commit each
                bid = await Dsc.bid(client, row, public_address(fleet.configs[name].keys))
                assert bid.status == "valid"  # supplier-1 revealed after its restart, with the stored salt
            for device, request_id in requests.items():
                assert len(await _sent(fleet, device, "broadcast", "dsc.open_request", request_id)) == 1
            genesis = Genesis.load(tmp_path / "cluster" / "genesis.toml")
            parties = [public_address(c.keys) for c in fleet.configs.values()]
            tokens = await token_check(client, list(genesis.accounts), parties)
            assert tokens["ok"], tokens
    finally:
        fleet.stop_all()
        await fleet.close()
        cluster.stop_all()


async def _at_least(events: Awaitable[list[Any]], count: int) -> bool:
    return len(await events) >= count


async def _published(fleet: Fleet, request_id: int) -> bool:
    return bool(await _sent(fleet, "phone-1", "broadcast", "policy.publish", request_id))
