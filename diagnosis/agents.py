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
from pathlib import Path
from typing import Any

import aiohttp

from client import ClientError, Receipt, TransactionFailed
from client.contracts import ContractCall, Dsc, Registry
from crypto import Address, KeyPair, bls, keccak256
from crypto.counters import OpCounter, OpCounts, attribute_to
from crypto.paillier import PaillierPrivateKey, PaillierPublicKey
from diagnosis.authorise import authorise
from diagnosis.channel import (
    ACCEPTED,
    ANSWER_WAIT_S,
    BadPayload,
    Courier,
    DeliveryPending,
    Inbox,
    Payload,
    RemoteRejection,
)
from diagnosis.directory import ChainDirectory
from diagnosis.errors import MalformedMessage, MessageRejected, Refusal, Refused, RejectReason
from diagnosis.ledger import Ledger
from diagnosis.lightclient import UnprovenState
from diagnosis.message import Opener, SealedMessage, seal
from diagnosis.protocol import CREW, DEVICE, PHONE, RULE_OF_KIND, SUPPLIER, VENDOR, Rule
from diagnosis.store import PENDING, AgentStore, Verdict

REGISTRY_ROLE_LABELS = {"device": DEVICE, "vendor": VENDOR, "supplier": SUPPLIER, "smartphone": PHONE,
                        "crew": CREW}
POOL_PREFILL = 8  # r^N values computed when a peer's key is first resolved (off the hot path)
INBOX_UNDECIDED_MAX = 1_024  # messages held and not yet decided, per agent: beyond, `inbox_full`
DELIVERY_PATIENCE_S = 60.0  # a send waits this long for the receiver's verdict; then the reaction tries later
DELIVERY_POLL_S = 1.0  # between posts of the same copy while the receiver decides
# a rejection the sender's key as last proven may cause (it rekeyed, or registered since)
KEY_REASONS = (RejectReason.UNKNOWN_SENDER, RejectReason.BAD_SIGNATURE, RejectReason.SENDER_KEY_INVALID)


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


@dataclass(frozen=True)
class _Opening:
    """A received message's open so far: the operations counted, the seconds they took, the
    sender's BLS key sigma verified with (None until then)."""

    counter: OpCounter
    seconds: float
    key: bytes | None


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
        self.refusals: dict[Refusal, int] = {}
        self.sealed: dict[str, int] = {}  # messages sealed / opened, by kind (/metrics)
        self.opened: dict[str, int] = {}
        self.duplicates = 0  # posts of a copy already held (a sender asking for the verdict)
        # its state; a service gives it the one on disk (diagnosis/services.py)
        self.store = AgentStore(Path(":memory:"))
        self.on_accepted: Callable[[Payload], None] | None = None
        self._deciding: dict[bytes, asyncio.Task[Verdict]] = {}  # message hash -> its decision

    @property
    def address(self) -> bytes:
        return self.identity.address

    async def start(self) -> None:
        await self.inbox.start()
        self.resume_inbox()

    def resume_inbox(self) -> None:
        """Decide what the store holds undecided (an earlier life was killed meanwhile)."""
        for data, arrival_ms in self.store.undecided():
            message = SealedMessage.decode(data)
            if message.hash not in self._deciding:
                self._decide_later(message, arrival_ms, None)

    def endpoint_call(self) -> ContractCall:
        """The transaction that publishes this agent's inbox in the registry."""
        assert self.inbox.url, "start the agent first"
        return Registry.set_endpoint(self.inbox.url)

    async def stop(self) -> None:
        await self.inbox.stop()
        deciding = list(self._deciding.values())
        for task in deciding:
            task.cancel()
        for task in deciding:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.courier.close()
        await self.ledger.close()

    # crypto with accounting ---------------------------------------------------------------
    def record(self, kind: str, step: str, request_id: int, detail: dict[str, Any]) -> None:
        """One event: to the shared tally and, for a service, to its store (after a
        restart the store still has what the process did before)."""
        event = Event(kind, self.role, self.name, step, request_id, now_ms(), detail)
        self.tally.add(event)
        self.store.add_event(event.to_json())

    def _ops(self, payload: Payload, peer: bytes, counterpart: str, operation: str, counter: OpCounter,
             seconds: float) -> None:
        counts: OpCounts = counter.snapshot()
        self.record("ops", payload.step, payload.request_id,
                    {"counterpart": counterpart, "peer": "0x" + peer.hex(), "operation": operation,
                     **counts.as_dict(), "ms": round(seconds * 1000, 3)})

    def seal_for(self, payload: Payload, receiver: bytes, receiver_key: PaillierPublicKey,
                 counterpart: str, timestamp_ms: int | None = None) -> SealedMessage:
        counter, started = OpCounter(), time.perf_counter()
        with attribute_to(counter):
            sealed = seal(payload.to_bytes(), recipient_paillier_public=receiver_key, sender_id=self.address,
                          receiver_id=receiver, sender_bls_key=self.identity.bls_key,
                          timestamp_ms=now_ms() if timestamp_ms is None else timestamp_ms)
        self._ops(payload, receiver, counterpart, "seal", counter, time.perf_counter() - started)
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
        """POST to the receiver's published endpoint until it decides: the same bytes again
        while it answers `pending` or does not answer (it knows them by their hash: never a
        second message), for at most DELIVERY_PATIENCE_S, then DeliveryPending (the caller
        sends the same copy again later). A connection failure re-reads the endpoint once
        (it may have moved). RemoteRejection when the receiver refuses."""
        detail = {"to": "0x" + to.hex(), "to_role": counterpart, "hash": "0x" + sealed.hash.hex(),
                  "kind": payload.kind if payload else "raw", "bytes": len(sealed.encode())}
        self.record("unicast", payload.step if payload else "", payload.request_id if payload else 0, detail)
        data = sealed.encode()
        url = await self.directory.endpoint(to)
        moved = False
        patience_ends = time.monotonic() + DELIVERY_PATIENCE_S
        while True:
            try:
                return await self.courier.deliver(url, data)
            except (DeliveryPending, TimeoutError) as exc:  # before ClientConnectionError: a timeout is both
                if time.monotonic() >= patience_ends:
                    raise DeliveryPending(f"no verdict in {DELIVERY_PATIENCE_S:g} s") from exc
            except aiohttp.ClientConnectionError:
                if moved:
                    raise
                moved = True
                url = await self.directory.endpoint(to, refresh=True)
                continue
            await asyncio.sleep(DELIVERY_POLL_S)

    # receiving ---------------------------------------------------------------------------
    async def _receive(self, data: bytes) -> tuple[SealedMessage, Verdict]:
        """POST /sealed. What needs no proof is checked at once (the Opener's checks, sigma
        against the sender's key as last proven: a sender never seen is proven first) and
        an authentic message is held in the store before the answer; the proven facts are
        read and the message decided after (`_decide`). The answer is the verdict if it
        comes within ANSWER_WAIT_S, else `pending`: a receiver slow to prove never makes
        its sender time out, give up and seal the step again. The same bytes again get the
        verdict (or the wait for it), whatever their age."""
        arrival = now_ms()
        try:
            message = SealedMessage.decode(data)
        except MalformedMessage:
            self.opener.open_bytes(data, now_ms=arrival)  # counts and raises `malformed`
            raise
        known = self.store.verdict(message.hash)
        if known is not None:
            return message, await self._again(message.hash, known)
        if self.store.undecided_count() >= INBOX_UNDECIDED_MAX:
            full = MessageRejected(RejectReason.INBOX_FULL, f"{INBOX_UNDECIDED_MAX} messages undecided")
            self.opener.count(full)
            raise self._rejected(full, message)
        counter = OpCounter()
        started = time.perf_counter()
        if self.directory.cached(message.sender_id) is not None:
            try:
                with attribute_to(counter):
                    self.opener.authenticate(message, now_ms=arrival, count=False)
            except MessageRejected as exc:
                if exc.reason not in KEY_REASONS:
                    self.opener.count(exc)
                    raise self._rejected(exc, message) from exc
            else:
                return message, await self._hold(message, data, arrival, counter, time.perf_counter() - started)
        try:
            await self.directory.resolve(message.sender_id)
        except UnprovenState as exc:
            raise self._refuse(Refused(Refusal.UNPROVEN_STATE, str(exc))) from exc
        known = self.store.verdict(message.hash)  # held meanwhile, by a post of the same bytes
        if known is not None:
            return message, await self._again(message.hash, known)
        started = time.perf_counter()
        try:
            with attribute_to(counter):
                self.opener.authenticate(message, now_ms=arrival)
        except MessageRejected as exc:
            raise self._rejected(exc, message) from exc
        return message, await self._hold(message, data, arrival, counter, time.perf_counter() - started)

    async def _hold(self, message: SealedMessage, data: bytes, arrival: int, counter: OpCounter,
                    seconds: float) -> Verdict:
        self.store.hold(message.hash, data, arrival)
        self._decide_later(message, arrival, _Opening(counter, seconds, self.directory.bls_key(message.sender_id)))
        return await self._answer(message.hash)

    async def _again(self, message_hash: bytes, known: Verdict) -> Verdict:
        """The same bytes again (a sender asking for the verdict, or a replay: either way
        nothing is done twice)."""
        self.duplicates += 1
        return known if known.verdict != PENDING else await self._answer(message_hash)

    async def _answer(self, message_hash: bytes) -> Verdict:
        task = self._deciding.get(message_hash)
        if task is not None:
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(task), ANSWER_WAIT_S)
        return self.store.verdict(message_hash) or Verdict(PENDING)

    def _decide_later(self, message: SealedMessage, arrival_ms: int, opening: _Opening | None) -> None:
        task = asyncio.create_task(self._decide(message, arrival_ms, opening))
        self._deciding[message.hash] = task
        task.add_done_callback(lambda _: self._deciding.pop(message.hash, None))

    async def _decide(self, message: SealedMessage, arrival_ms: int, opening: _Opening | None) -> Verdict:
        """Decrypt, prove the facts, authorise; the verdict goes to the store with what an
        accepted message changes (its step, its log entry, the request's inbox), at once."""
        payload: Payload | None = None
        try:
            if opening is None:  # held by an earlier life: authenticated again, by a key proven now
                await self.directory.resolve(message.sender_id)
                opening = _Opening(OpCounter(), 0.0, None)
                started = time.perf_counter()
                with attribute_to(opening.counter):
                    self.opener.authenticate(message, now_ms=arrival_ms)
                opening = _Opening(opening.counter, time.perf_counter() - started,
                                   self.directory.bls_key(message.sender_id))
            started = time.perf_counter()
            with attribute_to(opening.counter):
                opened = self.opener.decrypt(message)
            payload = Payload.from_bytes(opened.plaintext)
            entry = self.directory.cached(message.sender_id)
            counterpart = REGISTRY_ROLE_LABELS.get(entry.role, entry.role) if entry else "unknown"
            self._ops(payload, message.sender_id, counterpart, "open", opening.counter,
                      opening.seconds + time.perf_counter() - started)
            self.opened[payload.kind] = self.opened.get(payload.kind, 0) + 1
            await self._authorise(payload, message.sender_id, opening.key)
            verdict = self._accept(message, payload)
        except MessageRejected as exc:
            self._rejected(exc, message)
            verdict = Verdict(str(exc.reason), exc.detail)
        except BadPayload as exc:
            verdict = self._refusal(Refused(Refusal.BAD_PAYLOAD, str(exc)))
        except Refused as exc:
            verdict = self._refusal(exc, payload)
        except (UnprovenState, ClientError, OSError, TimeoutError) as exc:  # facts not proven: the sender tries anew
            verdict = self._refusal(Refused(Refusal.UNPROVEN_STATE, f"{type(exc).__name__}: {exc}"), payload)
        if verdict.verdict != ACCEPTED:
            self.store.decide(message.hash, verdict, now_ms())
        elif self.on_accepted is not None and payload is not None:
            self.on_accepted(payload)
        return verdict

    def _accept(self, message: SealedMessage, payload: Payload) -> Verdict:
        """Its step (once per request and kind, across restarts), its log entry and the
        request's inbox, with the verdict, in one store transaction."""
        once = RULE_OF_KIND.get(payload.kind) is not Rule.OWN_DEVICE_IN_WARRANTY
        with self.store.transaction():
            if once and not self.store.accept_step(payload.request_id, payload.kind):
                held = self.store.held_hash(payload.request_id, payload.kind)
                refused = Refused(Refusal.STEP_REPEATED,
                                  f"{payload.kind} of request {payload.request_id} already accepted", held)
            else:
                refused = None
                self.store.log_message(message.hash, "received", payload.request_id, payload.kind,
                                       message.sender_id, message.timestamp_ms)
                inbox = self.store.request(payload.request_id).get("inbox", {})
                self.store.update(payload.request_id, inbox={**inbox, payload.kind: payload.body})
                self.store.decide(message.hash, Verdict(ACCEPTED), now_ms())
        if refused is not None:
            verdict = self._refusal(refused, payload)
            self.store.decide(message.hash, verdict, now_ms())
            return verdict
        return Verdict(ACCEPTED)

    async def _authorise(self, payload: Payload, sender: Address, verified_key: bytes | None) -> None:
        """Read by proof, in one batch against one header, what the message's rule needs
        and the sender's record (still the key sigma was checked with), and check them
        (diagnosis.authorise)."""
        rule = RULE_OF_KIND.get(payload.kind)
        facts = await self.directory.facts(
            sender, None if rule is Rule.OWN_DEVICE_IN_WARRANTY else payload.request_id,
            # a fault's sender's device record matters in warranty only: read it anyway, in the same batch
            rule in (Rule.BOUND_DEVICE, Rule.OWN_DEVICE_IN_WARRANTY, Rule.REQUESTER_TO_ASSIGNED),
            self.address if rule is Rule.ASSIGNED_TO_OWN_CREW else None)
        if facts.sender is None or not facts.sender.active or facts.sender.bls_key != verified_key:
            raise Refused(Refusal.SENDER_CHANGED, f"0x{sender.hex()} is revoked or rekeyed")
        authorise(payload.kind, payload.step, sender, self.address, facts)

    def _rejected(self, exc: MessageRejected, message: SealedMessage) -> MessageRejected:
        self.record("reject", "", 0, {"reason": str(exc.reason), "from": "0x" + message.sender_id.hex()})
        return exc

    def _refusal(self, refused: Refused, payload: Payload | None = None) -> Verdict:
        self._refuse(refused, payload)
        return Verdict(str(refused.reason), refused.detail, refused.held or b"")

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
