"""The protocol's parties as asyncio services (paper III.B, Fig. 1): the failure device
k_i, the original vendor v_i, the non-original supplier nv_i, the owner's smartphone and
the node's maintenance crew Rep.

Each agent has its own Ed25519 account key (transactions), BLS key (eq. 1 signatures) and
Paillier key (eqs. 6-7), and talks to the ledger through its own `Ledger`
(`diagnosis.ledger`: the RPC client with a light client, or an in-process chain in
tests). Every record it relies on is read by state proof (`diagnosis.directory`): the
receiver's Paillier key and published inbox endpoint before sending, the sender's BLS key,
the request and its assignment before accepting (`diagnosis.authorise`). Unicast messages
are sealed `C || ID_v || ID_k || T || sigma` over the channel of `diagnosis.channel`;
broadcasts are transactions. Every send, transaction, refusal and cryptographic operation
is an `Event` naming its request and step: kept in the agent's store (a process serves
them at `GET /events`) and in a shared `Tally` when several agents run in one process;
`diagnosis.report` turns them into the per-request report and the Table 3 / Table 4
comparison.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from client import Receipt, TransactionFailed
from client.contracts import ContractCall, Dsc, Registry
from contracts.registry_records import Member as MemberEntry
from crypto import Address, KeyPair, bls, keccak256
from crypto.counters import OpCounter, OpCounts, attribute_to
from crypto.paillier import PaillierPrivateKey, PaillierPublicKey
from diagnosis.authorise import Facts, authorise
from diagnosis.channel import BadPayload, Courier, Inbox, Payload, RemoteRejection
from diagnosis.directory import ChainDirectory
from diagnosis.errors import MalformedMessage, MessageRejected, Refusal, Refused
from diagnosis.ledger import Ledger
from diagnosis.lightclient import UnprovenState
from diagnosis.message import Opener, SealedMessage, seal
from diagnosis.protocol import CREW, DEVICE, PHONE, RULE_OF_KIND, SUPPLIER, VENDOR, Rule
from diagnosis.store import AgentStore

REGISTRY_ROLE_LABELS = {"device": DEVICE, "vendor": VENDOR, "supplier": SUPPLIER, "smartphone": PHONE,
                        "crew": CREW}
POOL_PREFILL = 8  # r^N values computed when a peer's key is first resolved (off the hot path)
ACCEPTED_STEPS_MAX = 65_536  # (request, kind) pairs remembered to refuse a repeated step


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Identity:
    """One party's three keys. Ed25519 and BLS keys come from a seed (the demo's are fixed
    so its addresses are stable); the Paillier key is generated fresh."""

    name: str
    key: KeyPair
    bls_key: bls.BlsPrivateKey
    paillier: PaillierPrivateKey

    @classmethod
    def from_seed(cls, name: str, seed: bytes, paillier_bits: int = 2048) -> Identity:
        root = keccak256(b"gridchain/diagnosis-identity\x00" + seed)
        return cls(name, KeyPair.from_seed(keccak256(root + b"ed25519")),
                   bls.BlsPrivateKey.from_seed(keccak256(root + b"bls")), PaillierPrivateKey.generate(paillier_bits))

    @property
    def address(self) -> bytes:
        return self.key.address

    @property
    def bls_public(self) -> bytes:
        return self.bls_key.public_key()

    @property
    def paillier_public(self) -> PaillierPublicKey:
        return self.paillier.public_key


EVENT_KINDS = ("unicast", "broadcast", "ops", "reject")


@dataclass(frozen=True)
class Event:
    """One thing an agent did: a sealed message sent ("unicast"), a transaction
    ("broadcast", with its hash, block and status), the cryptographic operations of one
    seal or open ("ops"), a message refused ("reject")."""

    kind: str  # one of EVENT_KINDS
    role: str
    agent: str
    step: str  # the step label of diagnosis.protocol ("" outside a figure)
    request: int  # the DSC request it belongs to (0: none or unknown)
    at_ms: int
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "role": self.role, "agent": self.agent, "step": self.step,
                "request": self.request, "at_ms": self.at_ms, "detail": self.detail}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Event:
        return cls(str(raw["kind"]), str(raw["role"]), str(raw["agent"]), str(raw["step"]), int(raw["request"]),
                   int(raw["at_ms"]), dict(raw["detail"]))


class Tally:
    """Collects the events of every agent of one process (tests, benchmarks); a process
    of one agent turns it off and serves its store's events instead."""

    def __init__(self, enabled: bool = True) -> None:
        self.events: list[Event] = []
        self.enabled = enabled

    def add(self, event: Event) -> None:
        if self.enabled:
            self.events.append(event)

    def of(self, request_id: int) -> list[Event]:
        return [e for e in self.events if e.request == request_id]


class Agent:
    role = ""

    def __init__(self, identity: Identity, ledger: Ledger, credit_initial: int, tally: Tally) -> None:
        self.identity = identity
        self.name = identity.name
        self.ledger = ledger
        self.directory = ChainDirectory(ledger, credit_initial)
        self.opener = Opener(own_id=identity.address, paillier_private=identity.paillier, directory=self.directory)
        self.tally = tally
        self.inbox = Inbox(self._receive)
        self.courier = Courier()
        self._accepted_steps: set[tuple[int, str]] = set()
        self.refusals: dict[Refusal, int] = {}
        self.sealed: dict[str, int] = {}  # messages sealed / opened, by kind (/metrics)
        self.opened: dict[str, int] = {}
        self.store: AgentStore | None = None  # a service's on-disk state (diagnosis/services.py)
        self.on_accepted: Callable[[Payload], None] | None = None

    @property
    def address(self) -> bytes:
        return self.identity.address

    async def start(self) -> None:
        await self.inbox.start()

    def endpoint_call(self) -> ContractCall:
        """The transaction that publishes this agent's inbox in the registry."""
        assert self.inbox.url, "start the agent first"
        return Registry.set_endpoint(self.inbox.url)

    async def stop(self) -> None:
        await self.inbox.stop()
        await self.courier.close()
        await self.ledger.close()

    # crypto with accounting ---------------------------------------------------------------
    def record(self, kind: str, step: str, request_id: int, detail: dict[str, Any]) -> None:
        """One event: to the shared tally and, for a service, to its store (after a
        restart the store still has what the process did before)."""
        event = Event(kind, self.role, self.name, step, request_id, now_ms(), detail)
        self.tally.add(event)
        if self.store is not None:
            self.store.add_event(event.to_json())

    def _ops(self, payload: Payload, peer: bytes, counterpart: str, operation: str, counter: OpCounter,
             started: float) -> None:
        counts: OpCounts = counter.snapshot()
        self.record("ops", payload.step, payload.request_id,
                    {"counterpart": counterpart, "peer": "0x" + peer.hex(), "operation": operation,
                     **counts.as_dict(), "ms": round((time.perf_counter() - started) * 1000, 3)})

    def seal_for(self, payload: Payload, receiver: bytes, receiver_key: PaillierPublicKey,
                 counterpart: str, timestamp_ms: int | None = None) -> SealedMessage:
        counter, started = OpCounter(), time.perf_counter()
        with attribute_to(counter):
            sealed = seal(payload.to_bytes(), recipient_paillier_public=receiver_key, sender_id=self.address,
                          receiver_id=receiver, sender_bls_key=self.identity.bls_key,
                          timestamp_ms=now_ms() if timestamp_ms is None else timestamp_ms)
        self._ops(payload, receiver, counterpart, "seal", counter, started)
        self.sealed[payload.kind] = self.sealed.get(payload.kind, 0) + 1
        return sealed

    async def paillier_of(self, member_id: bytes) -> PaillierPublicKey:
        key = await self.directory.paillier_key(member_id)
        if len(key.pool) < 2:
            await asyncio.to_thread(key.pool.refill, POOL_PREFILL)
        return key

    async def seal(self, to: bytes, payload: Payload, counterpart: str) -> SealedMessage:
        """Seal for member `to`, its Paillier key from proven registry state (`deliver`
        then sends it: the sender records the hash in between)."""
        return self.seal_for(payload, to, await self.paillier_of(to), counterpart)

    async def deliver(self, to: bytes, sealed: SealedMessage, payload: Payload | None = None,
                      counterpart: str = "") -> str:
        """POST to the receiver's published endpoint; a connection failure re-reads the
        endpoint once (it may have moved) before giving up. RemoteRejection when the
        receiver refuses."""
        detail = {"to": "0x" + to.hex(), "to_role": counterpart, "hash": "0x" + sealed.hash.hex(),
                  "kind": payload.kind if payload else "raw", "bytes": len(sealed.encode())}
        self.record("unicast", payload.step if payload else "", payload.request_id if payload else 0, detail)
        url = await self.directory.endpoint(to)
        try:
            return await self.courier.deliver(url, sealed.encode())
        except aiohttp.ClientConnectionError:
            return await self.courier.deliver(await self.directory.endpoint(to, refresh=True), sealed.encode())

    # receiving ---------------------------------------------------------------------------
    async def _receive(self, data: bytes) -> SealedMessage:
        try:
            message = SealedMessage.decode(data)
        except MalformedMessage:
            self.opener.open_bytes(data, now_ms=now_ms())  # counts and raises `malformed`
            raise
        try:
            entry = await self.directory.resolve(message.sender_id)
        except UnprovenState as exc:
            raise self._refuse(Refused(Refusal.UNPROVEN_STATE, str(exc))) from exc
        counterpart = REGISTRY_ROLE_LABELS.get(entry.role, entry.role) if entry else "unknown"
        counter, started = OpCounter(), time.perf_counter()
        try:
            with attribute_to(counter):
                opened = self.opener.open(message, now_ms=now_ms())
        except MessageRejected as exc:
            self.record("reject", "", 0, {"reason": str(exc.reason), "from": "0x" + message.sender_id.hex()})
            raise
        try:
            payload = Payload.from_bytes(opened.plaintext)
        except BadPayload as exc:
            raise self._refuse(Refused(Refusal.BAD_PAYLOAD, str(exc))) from exc
        self._ops(payload, opened.sender_id, counterpart, "open", counter, started)
        self.opened[payload.kind] = self.opened.get(payload.kind, 0) + 1
        try:
            await self._authorise(payload, opened.sender_id, entry)
        except Refused as exc:
            raise self._refuse(exc, payload) from exc
        except UnprovenState as exc:
            raise self._refuse(Refused(Refusal.UNPROVEN_STATE, str(exc)), payload) from exc
        if self.store is not None:  # the service acts on it, after a restart too
            self.store.log_message(message.hash, "received", payload.request_id, payload.kind, opened.sender_id,
                                   opened.timestamp_ms)
            inbox = self.store.request(payload.request_id).get("inbox", {})
            self.store.update(payload.request_id, inbox={**inbox, payload.kind: payload.body})
        if self.on_accepted is not None:
            self.on_accepted(payload)
        return message

    async def _authorise(self, payload: Payload, sender: Address, sender_entry: MemberEntry | None) -> None:
        """Read by proof what the message's rule needs, check it (diagnosis.authorise),
        and refuse a step this agent already accepted for the request."""
        rule = RULE_OF_KIND.get(payload.kind)
        request = header = sender_device = own = None
        if rule is not Rule.OWN_DEVICE_IN_WARRANTY:
            request, _ = await self.directory.request(payload.request_id)
        if rule in (Rule.BOUND_DEVICE, Rule.OWN_DEVICE_IN_WARRANTY) or (
                rule is Rule.REQUESTER_TO_ASSIGNED and request is not None and request.in_warranty):
            sender_device, header = await self.directory.device(sender)
        if rule is Rule.ASSIGNED_TO_OWN_CREW:
            own = await self.directory.resolve(self.address)
        authorise(payload.kind, payload.step, sender, self.address,
                  Facts(request, sender_entry, sender_device, own, header))
        if rule is Rule.OWN_DEVICE_IN_WARRANTY:
            return
        repeated = Refused(Refusal.STEP_REPEATED, f"{payload.kind} of request {payload.request_id} already accepted")
        if self.store is not None:  # remembered across restarts
            if not self.store.accept_step(payload.request_id, payload.kind):
                raise repeated
            return
        step = (payload.request_id, payload.kind)
        if step in self._accepted_steps:
            raise repeated
        if len(self._accepted_steps) >= ACCEPTED_STEPS_MAX:
            self._accepted_steps.clear()  # requests that old are closed: the request check refuses them
        self._accepted_steps.add(step)

    def _refuse(self, refused: Refused, payload: Payload | None = None) -> RemoteRejection:
        self.refusals[refused.reason] = self.refusals.get(refused.reason, 0) + 1
        self.record("reject", payload.step if payload else "", payload.request_id if payload else 0,
                    {"reason": str(refused.reason), "detail": refused.detail,
                     **({"kind": payload.kind} if payload else {})})
        return RemoteRejection(str(refused.reason), refused.detail)

    # broadcasts --------------------------------------------------------------------------
    async def tx(self, call: ContractCall, step: str, request_id: int = 0,
                 expect_failure: str | None = None) -> Receipt:
        """One transaction (a broadcast) for `request_id` (a DSC call names its request
        itself); `expect_failure` names the revert reason a failure path expects, and
        then the failed receipt is returned."""
        try:
            receipt = await self.ledger.transact(call, self.identity.key)
        except TransactionFailed as exc:
            receipt = exc.receipt
            error = receipt.error or ""
            self._broadcast(call, step, request_id, receipt, error)
            if expect_failure is None or not error.startswith(expect_failure):
                raise
            return receipt
        self._broadcast(call, step, request_id, receipt, None)
        if expect_failure is not None:
            raise AssertionError(f"{call.method} was expected to fail with {expect_failure}")
        return receipt

    def _broadcast(self, call: ContractCall, step: str, request_id: int, receipt: Receipt,
                   error: str | None) -> None:
        if not request_id and call.contract == "dsc":
            opened = [e.int_of("request") for e in receipt.events_named("RequestOpened")]
            request_id = opened[0] if opened else call.args[0] if call.args and isinstance(call.args[0], int) else 0
        self.record("broadcast", step, request_id,
                    {"method": f"{call.contract}.{call.method}", "tx": receipt.tx,
                     "block": receipt.block_number, "status": receipt.status,
                     "events": [{"name": e["name"], "fields": e["fields"]} for e in receipt.to_json()["events"]],
                     **({"error": error} if error else {})})

    async def log_hash(self, request_id: int, step: str, message_hash: bytes) -> Receipt:
        """The message's hash on chain (DSC log_message, with the figure's step number);
        the plaintext never goes there."""
        return await self.tx(Dsc.log_message(request_id, int(step.split(".")[0]), message_hash), step, request_id)


class DeviceAgent(Agent):
    """The failure node k_i: reports faults, applies repairs, confirms and rates."""

    role = DEVICE

    def __init__(self, *args: Any, device_type: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.device_type = device_type
        self.firmware = "1.0.0"
        self.repairs: list[dict[str, Any]] = []

    def apply_repair(self, policy: dict[str, Any]) -> None:
        """Step 5: follow the repair policy file R (here: a firmware version and settings)."""
        self.firmware = str(policy.get("firmware", self.firmware))
        self.repairs.append(policy)


class DiagnosisNodeAgent(Agent):
    """A diagnosis node: the original vendor v_i or a non-original supplier nv_i. Its
    crew is a registered member it registered itself (role `crew`)."""

    def __init__(self, *args: Any, role: str = VENDOR, prices: dict[str, int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.role = role
        self.prices = dict(prices or {})  # its quotation P_i per device type S
        self.crew: CrewAgent | None = None

    @staticmethod
    def diagnose(fault: dict[str, Any]) -> dict[str, Any]:
        """Step 4: from M_k to the repair policy file R_k (the vendor's "database")."""
        symptom = str(fault.get("symptom", ""))
        if symptom in ("physical-damage", "burnt-terminal", "cracked-housing"):
            return {"mode": "on-site", "policy": {"action": "replace-module", "module": fault.get("component", "")}}
        return {"mode": "remote", "policy": {"action": "firmware-update", "firmware": "1.0.1",
                                             "settings": {"sampling_s": 15}}}


class SmartphoneAgent(Agent):
    """The owner's app: receives the device's reports, confirms, rates and publishes the
    equipment policy (its service, diagnosis/services.py); keeps the chain events of the
    consortium it is notified of (DSC events, policy executions) for the owner's app
    (diagnosis/phone_app.py)."""

    role = PHONE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.notifications: list[dict[str, Any]] = []
        self._watchers: list[asyncio.Task[None]] = []
        self._ready: list[asyncio.Event] = []

    async def start(self) -> None:
        await super().start()
        for flt in ({"contract": "dsc"}, {"contract": "policy", "name": "PolicyExecuted"}):
            ready = asyncio.Event()
            self._ready.append(ready)
            self._watchers.append(asyncio.create_task(self._watch(flt, ready)))
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in self._ready)), 10)

    async def stop(self) -> None:
        for task in self._watchers:
            task.cancel()
        for task in self._watchers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await super().stop()

    async def _watch(self, flt: dict[str, Any], ready: asyncio.Event) -> None:
        stream = self.ledger.events(flt)
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.2)  # the subscription is registered once the socket answered
        ready.set()
        try:
            event = await first
            while True:
                self.notifications.append(event)
                event = await anext(stream)
        finally:
            await stream.aclose()


class CrewAgent(Agent):
    """The node's maintenance crew Rep: a member registered by its node, briefed by it
    (only for requests the DSC assigned to that node), repairs on site."""

    role = CREW
