"""One party as a long-running OS process (`node.py agent ROLE --config FILE`): its keys,
its RPC ledger (the config's node list is its failover) with its own light client, its
store, its service (diagnosis/services.py) and one HTTP server on the config's loopback
port: `POST /sealed` (the inbox), `GET /health`, `GET /metrics` (Prometheus text),
`GET /events?since=N` (its events after sequence number N: what it sent, refused and
computed, per request and step — the demo's report is built from these) and, on a device,
`POST /fail` (an operator's fault report: `node.py agent device --config F fail --kind K
--detail D`). Logs are one JSON object per line.

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

from client import ClientError, TransactionFailed, from_hex
from client.contracts import ContractCall, Policy, Registry
from contracts.registry_records import Device as DeviceEntry
from crypto import address_of
from crypto.keystore import resolve_passphrase
from diagnosis.agentconfig import WARRANTY_S, AgentConfig, load_identity
from diagnosis.agents import Agent, CrewAgent, DeviceAgent, DiagnosisNodeAgent, SmartphoneAgent, Tally
from diagnosis.channel import Courier, Inbox
from diagnosis.directory import ChainDirectory, NoEndpoint
from diagnosis.errors import DiagnosisError
from diagnosis.ledger import Ledger, RpcLedger
from diagnosis.lightclient import TrustAnchor, UnprovenState
from diagnosis.phone_app import PhoneApp
from diagnosis.protocol import SUPPLIER, VENDOR
from diagnosis.services import CrewService, DeviceService, NodePolicy, NodeService, Operation, PhoneService, Service
from diagnosis.store import AgentStore

log = logging.getLogger("gridchain.agent")
FAULT_KINDS = ("firmware-fault", "physical-damage", "burnt-terminal", "cracked-housing")
DETAIL_CHARS_MAX = 200
EVENTS_PAGE_MAX = 2_000  # events per GET /events reply
# receipts awaited at once by a registering vendor: each wait is an open connection, and a
# node refuses a client more than [rpc] connections_per_client_max (64) of them
REGISTRATIONS_PER_BATCH_MAX = 16
MEMBER_POLL_MS_MAX = 1_000  # first start: how often a party waiting for its registrar looks


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


def build(config: AgentConfig, ledger: Ledger | None = None, tally: Tally | None = None) -> tuple[Agent, Service]:
    """The party's agent and service: by default on an RpcLedger over the config's node
    list (a process); tests pass an in-process ledger and a shared tally."""
    identity = load_identity(config.keys, resolve_passphrase(str(config.keys), config.passphrase_file))
    anchor = TrustAnchor.from_genesis(config.genesis)
    ledger = ledger or RpcLedger(config.rpc, anchor, local_host=config.source_host)
    tally = tally or Tally(enabled=False)  # one agent per process: its events go to its store (GET /events)
    store = AgentStore(config.state)
    agent: Agent
    service: Service
    if config.role in ("vendor", "supplier"):
        prices = {str(k): int(v) for k, v in config.policy["prices"].items()}
        node = DiagnosisNodeAgent(identity, ledger, anchor.credit_initial, tally,
                                  role=VENDOR if config.role == "vendor" else SUPPLIER, prices=prices)
        misbehaviour = config.misbehaviour
        policy = NodePolicy(prices, int(config.policy.get("requester_credit_min", 0)),
                            bool(config.policy.get("remote", True)), bool(config.policy.get("onsite", True)),
                            frozenset(misbehaviour.get("never_reveal", [])),
                            frozenset(misbehaviour.get("never_serve", [])))
        crew = from_hex(config.crew["address"]) if config.crew else None
        agent, service = node, NodeService(node, store, policy, config.poll_ms, crew=crew)
    elif config.role == "crew":
        member = CrewAgent(identity, ledger, anchor.credit_initial, tally)
        agent, service = member, CrewService(member, store, config.poll_ms)
    elif config.role == "device":
        device = DeviceAgent(identity, ledger, anchor.credit_initial, tally)
        operation = Operation(**{k: config.operation[k] for k in ("power_w", "power_saving_w", "report_s")
                                 if k in config.operation})
        agent, service = device, DeviceService(device, store, config.poll_ms, operation=operation,
                                               never_confirm=bool(config.misbehaviour.get("never_confirm", False)))
    else:
        phone = SmartphoneAgent(identity, ledger, anchor.credit_initial, tally)
        agent, service = phone, PhoneService(phone, store, default_rules, config.poll_ms)
    agent.inbox = Inbox(agent._receive, config.inbox_host, config.inbox_port)
    agent.courier = Courier(config.source_host)  # its messages leave from its own address too
    return agent, service


async def first_start(config: AgentConfig, agent: Agent) -> None:
    """Registrations this agent sends itself. Each is skipped when proven state already
    has it; on a chain with no certified block yet nothing can be proven, so it is sent
    and the registry's own `already-registered` refusal makes a repeat harmless. They go
    in two batches (members, then the bindings that need them): a vendor with many
    devices waits for two rounds of blocks, not one per device."""
    directory = agent.directory
    members: list[ContractCall] = []
    if config.crew:  # a vendor or supplier registers its own crew (registrar = itself)
        crew = from_hex(config.crew["address"])
        if await _unless_proven(functools.partial(directory.resolve, crew)) is None:
            members.append(Registry.register(bytes.fromhex(config.crew["public_key"]), "crew",
                                             bytes.fromhex(config.crew["bls_key"]),
                                             bytes.fromhex(config.crew["paillier_n"]),
                                             bytes.fromhex(config.crew["consent"])))
    binds: list[ContractCall] = []
    if config.role == "vendor":
        for phone in config.phones:
            address = from_hex(phone["address"])
            if await _unless_proven(functools.partial(directory.resolve, address)) is None:
                members.append(Registry.register(bytes.fromhex(phone["public_key"]), "smartphone",
                                                 bytes.fromhex(phone["bls_key"]), bytes.fromhex(phone["paillier_n"]),
                                                 bytes.fromhex(phone["consent"])))
        now_s = int(time.time())
        for device in config.devices:
            key = bytes.fromhex(device["public_key"])
            address = address_of(key)
            record = await _unless_proven(functools.partial(_device_record, directory, address))
            if record is None:
                end = now_s + WARRANTY_S if device["in_warranty"] else now_s - 86_400
                members.append(Registry.register_device(key, device["device_type"], end,
                                                        bytes.fromhex(device["bls_key"]),
                                                        bytes.fromhex(device["paillier_n"]),
                                                        bytes.fromhex(device["consent"])))
            phone_id = from_hex(device["phone"])
            if record is None or record.phone != phone_id:
                binds.append(Registry.bind_smartphone(address, phone_id))
    await _register_all(agent, members)
    await _register_all(agent, binds)
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


async def _register_all(agent: Agent, calls: list[ContractCall]) -> None:
    """Send the calls at once and wait for every receipt; only `already-registered` (a
    repeat after a restart) is not an error."""
    receipts = []
    for first in range(0, len(calls), REGISTRATIONS_PER_BATCH_MAX):
        batch = calls[first:first + REGISTRATIONS_PER_BATCH_MAX]
        receipts += await agent.ledger.transact_many([(call, agent.identity.key) for call in batch])
    for receipt in receipts:
        if not receipt.ok and not (receipt.error or "").startswith("already-registered"):
            raise TransactionFailed(receipt)


async def _until_member(config: AgentConfig, agent: Agent) -> None:
    """Devices, smartphones and crews are admitted by their vendor's (node's) agent: wait
    (polling the proven member record) until that has happened. At most every
    MEMBER_POLL_MS_MAX, whatever the service's own poll: a one-off wait at start, which
    a long poll (the demo's 5 s) would stretch by up to that much per party."""
    interval_ms = min(config.poll_ms, MEMBER_POLL_MS_MAX)
    waiting_logged = False
    while True:
        entry = await _unless_proven(functools.partial(agent.directory.resolve, agent.address))
        if entry is not None and entry.active:
            return
        if not waiting_logged:
            log.info("not a member yet: waiting for the registrar (polling every %d ms)", interval_ms)
            waiting_logged = True
        await asyncio.sleep(interval_ms / 1000)


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
    metric("messages_sealed_total", "counter", "Sealed messages sent, by kind",
           [(f',kind="{k}"', v) for k, v in sorted(agent.sealed.items())])
    metric("messages_opened_total", "counter", "Sealed messages received and opened, by kind",
           [(f',kind="{k}"', v) for k, v in sorted(agent.opened.items())])
    metric("messages_refused_total", "counter", "Authentic messages refused by the protocol rules, by reason",
           [(f',reason="{k}"', v) for k, v in sorted((str(k), v) for k, v in agent.refusals.items())])
    metric("messages_rejected_total", "counter", "Messages the Opener rejected, by reason",
           [(f',reason="{k}"', v) for k, v in sorted((str(k), v) for k, v in agent.opener.rejections.items())])
    metric("messages_duplicate_total", "counter", "Posts of a message already held (its sender asking for the verdict)",
           [("", agent.duplicates)])
    metric("inbox_undecided", "gauge", "Authentic messages held, not yet decided",
           [("", service.store.undecided_count())])
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

    async def events(request: web.Request) -> web.Response:
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            return web.json_response({"error": "since is an event sequence number"}, status=400)
        page = service.store.events_since(since, EVENTS_PAGE_MAX)
        return web.json_response({"events": [{"seq": seq, **event} for seq, event in page],
                                  "next": page[-1][0] if page else since})

    agent.inbox.add_route("GET", "/health", health)
    agent.inbox.add_route("GET", "/metrics", metrics)
    agent.inbox.add_route("GET", "/events", events)
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
    """The simulated sensor feed: faults at exponential intervals (mean `mean_interval_s`)
    from a seeded generator, of the configured `kinds`, after `start_s`; at most
    `requests_max` requests opened (0: no limit). A fault while the device's request is
    still open joins that request (the DSC's one open request per device)."""
    mean_s = float(config.faults.get("mean_interval_s", 0))
    if mean_s <= 0:
        return
    rng = random.Random(int(config.faults.get("seed", 0)))
    kinds = [str(k) for k in config.faults.get("kinds", FAULT_KINDS[:1])]
    requests_max = int(config.faults.get("requests_max", 0))
    opened = set(service.store.all_requests())  # a restart goes on counting from its store
    await asyncio.sleep(float(config.faults.get("start_s", 0)))
    while not requests_max or len(opened) < requests_max:
        await asyncio.sleep(rng.expovariate(1 / mean_s))
        try:
            opened.add(await service.fail(rng.choice(kinds), "simulated sensor fault"))
        except (ClientError, OSError, DiagnosisError) as exc:
            log.warning("fault not reported: %s", exc)


async def run_agent(config: AgentConfig) -> None:
    """Until SIGINT/SIGTERM."""
    agent, service = build(config)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter(agent.name, config.role))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    await serve(config, agent, service, _stop_on_signals())


async def run_agents(configs: list[AgentConfig]) -> None:
    """Several parties in one process, each exactly as `run_agent` serves it (its own
    keys, ledger, store, inbox and routes), until SIGINT/SIGTERM: bench.consortium groups
    a large consortium's parties so, for cost. Logs name the group, not the party."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter(f"group of {len(configs)}", "group"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    stop = _stop_on_signals()
    await asyncio.gather(*(serve(config, *build(config), stop) for config in configs))


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def serve(config: AgentConfig, agent: Agent, service: Service, stop: asyncio.Event) -> None:
    """One party (built by `build`) until `stop` is set."""
    ready = asyncio.Event()
    add_routes(agent, service, ready)
    phone_app = PhoneApp(service.agent, service, config.state) if isinstance(service, PhoneService) else None
    if phone_app is not None:
        phone_app.mount()  # the owner's app at GET /app/ (diagnosis/phone_app.py)
    await agent.start()
    if phone_app is not None:
        phone_app.started()
    try:
        await first_start(config, agent)
        log.info("%s started at %s", agent.name, agent.inbox.url)
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
        log.info("%s stopping", agent.name)
        await agent.stop()
        service.store.close()
