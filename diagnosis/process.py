"""One party as a long-running OS process (`node.py agent ROLE --config FILE`): its keys,
its RPC ledger (the config's node list is its failover) with its own light client, its
store, its service (diagnosis/services.py) and one HTTP server on the config's loopback
port: `POST /sealed` (the inbox), `GET /health`, `GET /metrics` (Prometheus text) and, on
a device, `POST /fail` (an operator's fault report: `node.py agent device --config F
fail --kind K --detail D`). Logs are one JSON object per line.

On first start the agent does what the registry lets it do itself: a vendor registers
the devices it sold and admits their smartphones and binds them; a vendor or supplier
registers its crew; every agent publishes its endpoint (again whenever it differs from
the proven one). Each step is checked
against proven state first, so a restart repeats none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from client.contracts import ContractCall, Policy, Registry
from client.errors import TransactionFailed
from crypto.keys import address_of
from crypto.keystore import resolve_passphrase
from diagnosis.agentconfig import WARRANTY_S, AgentConfig, load_identity
from diagnosis.agents import Agent, CrewAgent, DeviceAgent, DiagnosisNodeAgent, SmartphoneAgent, Tally
from diagnosis.channel import Inbox
from diagnosis.directory import ChainDirectory, DeviceEntry, NoEndpoint
from diagnosis.ledger import RpcLedger
from diagnosis.lightclient import TrustAnchor, UnprovenState
from diagnosis.phone_app import PhoneApp
from diagnosis.protocol import SUPPLIER, VENDOR
from diagnosis.services import CrewService, DeviceService, NodePolicy, NodeService, Operation, PhoneService, Service
from diagnosis.store import AgentStore

log = logging.getLogger("gridchain.agent")
FAULT_KINDS = ("firmware-fault", "physical-damage", "burnt-terminal", "cracked-housing")
DETAIL_CHARS_MAX = 200


class JsonLogFormatter(logging.Formatter):
    def __init__(self, agent: str, role: str) -> None:
        super().__init__()
        self.agent, self.role = agent, role

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"ts": round(record.created, 3), "level": record.levelname.lower(), "agent": self.agent,
                           "role": self.role, "logger": record.name, "msg": record.getMessage()})


def default_rules() -> list[list[Any]]:
    """The smartphone's equipment policy (IV.A): power saving above 1.5 kW."""
    return [Policy.rule("report", "power_w", ">=", 1500, "set_mode", "power-saving")]


def build(config: AgentConfig) -> tuple[Agent, Service]:
    identity = load_identity(config.keys, resolve_passphrase(str(config.keys), config.passphrase_file))
    anchor = TrustAnchor.from_genesis(config.genesis)
    ledger = RpcLedger(config.rpc, anchor)
    tally = Tally()
    tally.enabled = False  # a long-running process reports through /metrics, not a flow report
    store = AgentStore(config.state)
    agent: Agent
    service: Service
    if config.role in ("vendor", "supplier"):
        prices = {str(k): int(v) for k, v in config.policy["prices"].items()}
        node = DiagnosisNodeAgent(identity, ledger, anchor.credit_initial, tally,
                                  role=VENDOR if config.role == "vendor" else SUPPLIER, prices=prices)
        policy = NodePolicy(prices, int(config.policy.get("requester_credit_min", 0)),
                            bool(config.policy.get("remote", True)), bool(config.policy.get("onsite", True)))
        crew = bytes.fromhex(config.crew["address"][2:]) if config.crew else None
        agent, service = node, NodeService(node, store, policy, config.poll_ms, crew=crew)
    elif config.role == "crew":
        member = CrewAgent(identity, ledger, anchor.credit_initial, tally)
        agent, service = member, CrewService(member, store, config.poll_ms)
    elif config.role == "device":
        device = DeviceAgent(identity, ledger, anchor.credit_initial, tally)
        operation = Operation(**{k: config.operation[k] for k in ("power_w", "power_saving_w", "report_s")
                                 if k in config.operation})
        agent, service = device, DeviceService(device, store, config.poll_ms, operation=operation)
    else:
        phone = SmartphoneAgent(identity, ledger, anchor.credit_initial, tally)
        agent, service = phone, PhoneService(phone, store, default_rules, config.poll_ms)
    agent.inbox = Inbox(agent._receive, config.inbox_host, config.inbox_port)
    return agent, service


async def first_start(config: AgentConfig, agent: Agent) -> None:
    """Registrations this agent sends itself. Each is skipped when proven state already
    has it; on a chain with no certified block yet nothing can be proven, so it is sent
    and the registry's own `already-registered` refusal makes a repeat harmless."""
    directory = agent.directory
    if config.crew:  # a vendor or supplier registers its own crew (registrar = itself)
        crew = bytes.fromhex(config.crew["address"][2:])
        if await _unless_proven(functools.partial(directory.resolve, crew)) is None:
            await _register(agent, Registry.register(bytes.fromhex(config.crew["public_key"]), "crew",
                                                     bytes.fromhex(config.crew["bls_key"]),
                                                     bytes.fromhex(config.crew["paillier_n"]),
                                                     bytes.fromhex(config.crew["consent"])))
    if config.role == "vendor":
        for phone in config.phones:
            address = bytes.fromhex(phone["address"][2:])
            if await _unless_proven(functools.partial(directory.resolve, address)) is None:
                await _register(agent, Registry.register(bytes.fromhex(phone["public_key"]), "smartphone",
                                                         bytes.fromhex(phone["bls_key"]),
                                                         bytes.fromhex(phone["paillier_n"]),
                                                         bytes.fromhex(phone["consent"])))
        now_s = int(time.time())
        for device in config.devices:
            key = bytes.fromhex(device["public_key"])
            address = address_of(key)
            record = await _unless_proven(functools.partial(_device_record, directory, address))
            if record is None:
                end = now_s + WARRANTY_S if device["in_warranty"] else now_s - 86_400
                await _register(agent, Registry.register_device(key, device["device_type"], end,
                                                                bytes.fromhex(device["bls_key"]),
                                                                bytes.fromhex(device["paillier_n"]),
                                                                bytes.fromhex(device["consent"])))
            phone_id = bytes.fromhex(device["phone"][2:])
            if record is None or record.phone != phone_id:
                await agent.tx(Registry.bind_smartphone(address, phone_id), "")
    await _until_member(config, agent)
    with contextlib.suppress(NoEndpoint):
        if await directory.endpoint(agent.address, refresh=True) == agent.inbox.url:
            return
    await agent.tx(agent.endpoint_call(), "")


async def _device_record(directory: ChainDirectory, address: bytes) -> DeviceEntry | None:
    record, _ = await directory.device(address)
    return record


async def _unless_proven(read: Callable[[], Awaitable[Any]]) -> Any:
    """The proven value, or None when nothing can be proven yet (no certified block)."""
    try:
        return await read()
    except UnprovenState:
        return None


async def _register(agent: Agent, call: ContractCall) -> None:
    try:
        await agent.tx(call, "")
    except TransactionFailed as exc:
        if not (exc.receipt.get("error") or "").startswith("already-registered"):
            raise


async def _until_member(config: AgentConfig, agent: Agent) -> None:
    """Devices, smartphones and crews are admitted by their vendor's (node's) agent: wait
    (polling the proven member record) until that has happened."""
    waiting_logged = False
    while True:
        entry = await _unless_proven(functools.partial(agent.directory.resolve, agent.address))
        if entry is not None and entry.active:
            return
        if not waiting_logged:
            log.info("not a member yet: waiting for the registrar (polling every %d ms)", config.poll_ms)
            waiting_logged = True
        await asyncio.sleep(config.poll_ms / 1000)


def metrics_text(agent: Agent, service: Service) -> str:
    labels = f'agent="{agent.name}",role="{agent.role}"'
    c = service.counters
    lines = []

    def metric(name: str, kind: str, help_text: str, values: list[tuple[str, int]]) -> None:
        lines.extend([f"# HELP gridchain_agent_{name} {help_text}", f"# TYPE gridchain_agent_{name} {kind}"])
        lines.extend(f"gridchain_agent_{name}{{{labels}{extra}}} {value}" for extra, value in values)

    metric("flows_started_total", "counter", "Requests this agent took part in", [("", c.flows_started)])
    metric("flows_finished_total", "counter", "Requests it finished its part of", [("", c.flows_finished)])
    metric("flows_failed_total", "counter", "Requests that ended without completion, by status",
           [(f',reason="{k}"', v) for k, v in sorted(c.flows_failed.items())])
    metric("bids_total", "counter", "Sealed bids committed", [("", c.bids)])
    metric("fault_to_repair_seconds_sum", "counter", "Device: fault to applied repair, summed",
           [("", int(c.repair_ms_sum / 1000))])
    metric("repairs_total", "counter", "Device: repairs applied", [("", c.repairs)])
    metric("reactions_failed_total", "counter", "Reactions that raised and will be retried",
           [("", c.reactions_failed)])
    metric("messages_refused_total", "counter", "Authentic messages refused by the protocol rules, by reason",
           [(f',reason="{k}"', v) for k, v in sorted((str(k), v) for k, v in agent.refusals.items())])
    metric("messages_rejected_total", "counter", "Messages the Opener rejected, by reason",
           [(f',reason="{k}"', v) for k, v in sorted((str(k), v) for k, v in agent.opener.rejections.items())])
    return "\n".join(lines) + "\n"


def add_routes(agent: Agent, service: Service, ready: asyncio.Event) -> None:
    """/health says `ready` once the first-start registrations are done and the service runs."""
    started = time.time()

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "ready": ready.is_set(), "agent": agent.name, "role": agent.role,
                                  "address": "0x" + agent.address.hex(), "uptime_s": round(time.time() - started),
                                  "open_requests": service.store.open_requests()})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=metrics_text(agent, service), content_type="text/plain")

    agent.inbox.add_route("GET", "/health", health)
    agent.inbox.add_route("GET", "/metrics", metrics)
    if isinstance(service, DeviceService):
        device_service = service

        async def fail(request: web.Request) -> web.Response:
            if not ready.is_set():
                return web.json_response({"error": "not ready: not yet registered by its vendor"}, status=503)
            body = await request.json()
            kind, detail = body.get("kind"), str(body.get("detail", ""))[:DETAIL_CHARS_MAX]
            if kind not in FAULT_KINDS:
                return web.json_response({"error": f"kind is one of {FAULT_KINDS}"}, status=400)
            request_id = await device_service.fail(kind, detail)
            return web.json_response({"request": request_id})

        agent.inbox.add_route("POST", "/fail", fail)


async def fault_source(config: AgentConfig, service: DeviceService) -> None:
    """The simulated sensor feed: faults at exponential intervals from a seeded generator."""
    mean_s = float(config.faults.get("mean_interval_s", 0))
    if mean_s <= 0:
        return
    rng = random.Random(int(config.faults.get("seed", 0)))
    while True:
        await asyncio.sleep(rng.expovariate(1 / mean_s))
        with contextlib.suppress(Exception):
            await service.fail(rng.choice(FAULT_KINDS[:1]), "simulated sensor fault")


async def run_agent(config: AgentConfig) -> None:
    """Until SIGINT/SIGTERM."""
    agent, service = build(config)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter(agent.name, config.role))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    ready = asyncio.Event()
    add_routes(agent, service, ready)
    phone_app = PhoneApp(service.agent, service, config.state) if isinstance(service, PhoneService) else None
    if phone_app is not None:
        phone_app.mount()  # the owner's app at GET /app/ (diagnosis/phone_app.py)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await agent.start()
    if phone_app is not None:
        phone_app.started()
    try:
        await first_start(config, agent)
        log.info("started at %s", agent.inbox.url)
        tasks = [asyncio.create_task(service.run())]
        if isinstance(service, DeviceService):
            tasks.append(asyncio.create_task(fault_source(config, service)))
        ready.set()
        await stop.wait()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, TransactionFailed):
                await task
    finally:
        log.info("stopping")
        await agent.stop()
        service.store.close()
