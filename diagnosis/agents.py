"""The protocol's parties as asyncio services (paper III.B, Fig. 1): the failure device
k_i, the original vendor v_i, the non-original supplier nv_i, the owner's smartphone and
the vendor's maintenance crew Rep.

Each agent has its own Ed25519 account key (transactions), BLS key (eq. 1 signatures) and
Paillier key (eqs. 6-7), its own SDK client to the consortium and its own light client
(`diagnosis.lightclient`): every key and registry record it relies on is read through a
state proof checked against a certified header. Unicast messages are sealed
`C || ID_v || ID_k || T || sigma` over the channel of `diagnosis.channel`; broadcasts are
transactions. Every send, transaction and cryptographic operation is reported to the
`Tally`, which the flows turn into the Table 3 / Table 4 comparison.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from client.contracts import ContractCall, Dsc, RequestView
from client.errors import TransactionFailed
from client.sdk import GridClient
from crypto import bls
from crypto.counters import OpCounter, OpCounts, attribute_to
from crypto.hashing import keccak256
from crypto.keys import KeyPair
from crypto.paillier import PaillierPrivateKey, PaillierPublicKey
from diagnosis.channel import BadPayload, Courier, Inbox, Payload, RemoteRejection
from diagnosis.errors import MalformedMessage, MessageRejected
from diagnosis.lightclient import ChainDirectory, LightClient, TrustAnchor, UnprovenState
from diagnosis.message import OpenedMessage, Opener, SealedMessage, seal

# Paper notation for the roles (Tables 3 and 4).
DEVICE = "k_i"
VENDOR = "v_i"
SUPPLIER = "nv_i"
PHONE = "smartphone"
CREW = "Rep"
REGISTRY_ROLE_LABELS = {"device": DEVICE, "vendor": VENDOR, "supplier": SUPPLIER, "smartphone": PHONE}
MAIL_WAIT_S = 30
POOL_PREFILL = 8  # r^N values computed when a peer's key is first resolved (off the hot path)


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


@dataclass
class Event:
    """One thing an agent did, as the flows report it."""

    kind: str  # "unicast" | "broadcast" | "ops" | "reject"
    role: str
    agent: str
    step: int
    detail: dict[str, Any] = field(default_factory=dict)


class Tally:
    """Collects what agents do while a flow runs (flows are run one at a time)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.enabled = True

    def add(self, event: Event) -> None:
        if self.enabled:
            self.events.append(event)

    def take(self) -> list[Event]:
        taken, self.events = self.events, []
        return taken


@dataclass(frozen=True)
class Peer:
    """Where and who: the member id, its inbox URL and its role label."""

    member_id: bytes
    url: str
    role: str
    name: str


class Agent:
    role = ""

    def __init__(self, identity: Identity, urls: list[str], anchor: TrustAnchor, tally: Tally,
                 node_index: int = 0) -> None:
        self.identity = identity
        self.name = identity.name
        rotated = urls[node_index % len(urls):] + urls[:node_index % len(urls)]
        self.client = GridClient(rotated)
        self.light = LightClient(self.client, anchor)
        self.directory = ChainDirectory(self.light)
        self.opener = Opener(own_id=identity.address, paillier_private=identity.paillier, directory=self.directory)
        self.tally = tally
        self.inbox = Inbox(self._receive)
        self.courier = Courier()
        self._mail: list[tuple[Payload, OpenedMessage]] = []
        self._mail_changed = asyncio.Condition()
        self.app_rejections: dict[str, int] = {}

    @property
    def address(self) -> bytes:
        return self.identity.address

    def peer(self) -> Peer:
        assert self.inbox.url, "start the agent first"
        return Peer(self.address, self.inbox.url, self.role, self.name)

    async def start(self) -> None:
        await self.inbox.start()

    async def stop(self) -> None:
        await self.inbox.stop()
        await self.courier.close()
        await self.client.close()

    # crypto with accounting ---------------------------------------------------------------
    def _ops(self, step: int, counterpart: str, operation: str, counter: OpCounter, started: float) -> None:
        counts: OpCounts = counter.snapshot()
        self.tally.add(Event("ops", self.role, self.name, step,
                             {"counterpart": counterpart, "operation": operation, **counts.as_dict(),
                              "ms": (time.perf_counter() - started) * 1000}))

    def seal_for(self, payload: Payload, receiver: bytes, receiver_key: PaillierPublicKey,
                 counterpart: str, timestamp_ms: int | None = None) -> SealedMessage:
        counter, started = OpCounter(), time.perf_counter()
        with attribute_to(counter):
            sealed = seal(payload.to_bytes(), recipient_paillier_public=receiver_key, sender_id=self.address,
                          receiver_id=receiver, sender_bls_key=self.identity.bls_key,
                          timestamp_ms=now_ms() if timestamp_ms is None else timestamp_ms)
        self._ops(payload.step, counterpart, "seal", counter, started)
        return sealed

    async def paillier_of(self, member_id: bytes) -> PaillierPublicKey:
        key = await self.directory.paillier_key(member_id)
        if len(key.pool) < 2:
            await asyncio.to_thread(key.pool.refill, POOL_PREFILL)
        return key

    async def send(self, to: Peer, payload: Payload, receiver_key: PaillierPublicKey | None = None) -> SealedMessage:
        """Seal for `to` (its Paillier key from proven registry state unless given) and
        deliver; RemoteRejection when the receiver refuses."""
        key = receiver_key or await self.paillier_of(to.member_id)
        sealed = self.seal_for(payload, to.member_id, key, to.role)
        await self.deliver(to, sealed, payload)
        return sealed

    async def deliver(self, to: Peer, sealed: SealedMessage, payload: Payload | None = None) -> str:
        detail = {"to": to.name, "to_role": to.role, "hash": "0x" + sealed.hash.hex(),
                  "kind": payload.kind if payload else "raw", "bytes": len(sealed.encode())}
        self.tally.add(Event("unicast", self.role, self.name, payload.step if payload else 0, detail))
        return await self.courier.deliver(to.url, sealed.encode())

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
            raise RemoteRejection("unproven_state", str(exc)) from exc
        counterpart = CREW if entry is None and self.directory.bls_key(message.sender_id) else (
            REGISTRY_ROLE_LABELS.get(entry.role, entry.role) if entry else "unknown")
        counter, started = OpCounter(), time.perf_counter()
        try:
            with attribute_to(counter):
                opened = self.opener.open(message, now_ms=now_ms())
        except MessageRejected as exc:
            self.tally.add(Event("reject", self.role, self.name, 0,
                                 {"reason": str(exc.reason), "from": "0x" + message.sender_id.hex()}))
            raise
        try:
            payload = Payload.from_bytes(opened.plaintext)
        except BadPayload as exc:
            raise self._refuse("bad_payload", str(exc)) from exc
        self._ops(payload.step, counterpart, "open", counter, started)
        await self.accept(payload, opened)
        async with self._mail_changed:
            self._mail.append((payload, opened))
            self._mail_changed.notify_all()
        return message

    def _refuse(self, reason: str, detail: str) -> RemoteRejection:
        self.app_rejections[reason] = self.app_rejections.get(reason, 0) + 1
        self.tally.add(Event("reject", self.role, self.name, 0, {"reason": reason, "detail": detail}))
        return RemoteRejection(reason, detail)

    async def accept(self, payload: Payload, opened: OpenedMessage) -> None:
        """Application checks after the cryptographic ones; raise via `_refuse`."""

    async def expect(self, request_id: int, kind: str, timeout_s: float = MAIL_WAIT_S) -> tuple[Payload, OpenedMessage]:
        """The next accepted message of `kind` for the request (TimeoutError otherwise)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        async with self._mail_changed:
            while True:
                for item in self._mail:
                    if item[0].request_id == request_id and item[0].kind == kind:
                        self._mail.remove(item)
                        return item
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError(f"{self.name}: no {kind} message for request {request_id}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._mail_changed.wait(), remaining)

    # broadcasts --------------------------------------------------------------------------
    async def tx(self, call: ContractCall, step: int, expect_failure: str | None = None) -> dict[str, Any]:
        """One transaction (a broadcast); `expect_failure` names the revert reason a
        failure path expects, and then the failed receipt is returned."""
        try:
            receipt = await call.transact(self.client, self.identity.key)
        except TransactionFailed as exc:
            receipt = exc.receipt
            error = receipt.get("error") or ""
            self._broadcast(call, step, receipt, error)
            if expect_failure is None or not error.startswith(expect_failure):
                raise
            return receipt
        self._broadcast(call, step, receipt, None)
        if expect_failure is not None:
            raise AssertionError(f"{call.method} was expected to fail with {expect_failure}")
        return receipt

    def _broadcast(self, call: ContractCall, step: int, receipt: dict[str, Any], error: str | None) -> None:
        self.tally.add(Event("broadcast", self.role, self.name, step,
                             {"method": f"{call.contract}.{call.method}", "tx": receipt["transactionHash"],
                              "block": receipt["blockNumber"], "status": receipt["status"],
                              **({"error": error} if error else {})}))

    async def log_hash(self, request_id: int, step: int, message_hash: bytes) -> dict[str, Any]:
        """The message's hash on chain (DSC log_message); the plaintext never goes there."""
        return await self.tx(Dsc.log_message(request_id, step, message_hash), step)

    async def request(self, request_id: int) -> RequestView:
        return await Dsc.request(self.client, request_id)


class DeviceAgent(Agent):
    """The failure node k_i: reports faults, applies repairs, confirms and rates."""

    role = DEVICE

    def __init__(self, *args: Any, device_type: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.device_type = device_type
        self.firmware = "1.0.0"
        self.repairs: list[dict[str, Any]] = []

    async def accept(self, payload: Payload, opened: OpenedMessage) -> None:
        if payload.kind == "spot" and payload.body.get("crew"):
            crew = payload.body["crew"]
            # The vendor vouches for its crew in this signed message (docs/diagnosis.md).
            self.directory.vouch(bytes.fromhex(crew["id"]), bytes.fromhex(crew["bls_key"]))

    def apply_repair(self, policy: dict[str, Any]) -> None:
        """Step 5: follow the repair policy file R (here: a firmware version and settings)."""
        self.firmware = str(policy.get("firmware", self.firmware))
        self.repairs.append(policy)


class DiagnosisNodeAgent(Agent):
    """A diagnosis node: the original vendor v_i or a non-original supplier nv_i."""

    def __init__(self, *args: Any, role: str = VENDOR, prices: dict[str, int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.role = role
        self.prices = dict(prices or {})  # its quotation P_i per device type S
        self.crew: CrewAgent | None = None
        self.salt_seed = keccak256(b"salt" + self.identity.key.seed())

    def salt(self, request_id: int) -> bytes:
        return keccak256(self.salt_seed + request_id.to_bytes(8, "big"))

    async def accept(self, payload: Payload, opened: OpenedMessage) -> None:
        """V.A step 3 / V.B step 6: the request must be ours to serve, read from chain."""
        if payload.kind == "free_service":
            entry, header = await self.directory.device(opened.sender_id)
            if entry is None or entry.vendor != self.address:
                raise self._refuse("not_my_device", "0x" + opened.sender_id.hex())
            if header.timestamp_ms // 1000 > entry.warranty_end_s:
                raise self._refuse("out_of_warranty", f"warranty ended at {entry.warranty_end_s} s")
            return
        if payload.kind in ("fault", "time"):
            request = await self.request(payload.request_id)
            if request.device != opened.sender_id or request.node != self.address or request.status != "assigned":
                raise self._refuse("not_assigned", f"request {payload.request_id} is not ours to serve")
            if request.in_warranty:
                entry, header = await self.directory.device(opened.sender_id)
                if entry is None or entry.vendor != self.address:
                    raise self._refuse("not_my_device", "0x" + opened.sender_id.hex())
                if header.timestamp_ms // 1000 > entry.warranty_end_s:
                    raise self._refuse("out_of_warranty", f"warranty ended at {entry.warranty_end_s} s")

    @staticmethod
    def diagnose(fault: dict[str, Any]) -> dict[str, Any]:
        """Step 4: from M_k to the repair policy file R_k (the vendor's "database")."""
        symptom = str(fault.get("symptom", ""))
        if symptom in ("physical-damage", "burnt-terminal", "cracked-housing"):
            return {"mode": "on-site", "policy": {"action": "replace-module", "module": fault.get("component", "")}}
        return {"mode": "remote", "policy": {"action": "firmware-update", "firmware": "1.0.1",
                                             "settings": {"sampling_s": 15}}}


class SmartphoneAgent(Agent):
    """The owner's app: notified over WebSocket, receives the device's reports, confirms,
    rates and publishes the equipment policy."""

    role = PHONE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.notifications: list[dict[str, Any]] = []
        self._notified = asyncio.Condition()
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
        stream = cast(AsyncGenerator[dict[str, Any], None], self.client.subscribe("events", flt))
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.2)  # the subscription is registered once the socket answered
        ready.set()
        try:
            event = await first
            while True:
                async with self._notified:
                    self.notifications.append(event)
                    self._notified.notify_all()
                event = await stream.__anext__()
        finally:
            await stream.aclose()

    async def notified(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 20) -> dict[str, Any]:
        """Wait for a WebSocket event notification matching `predicate`."""
        async with self._notified:
            await asyncio.wait_for(self._notified.wait_for(lambda: any(predicate(e) for e in self.notifications)),
                                   timeout_s)
        return next(e for e in self.notifications if predicate(e))


class CrewAgent(Agent):
    """The vendor's maintenance crew Rep: briefed by its vendor, repairs on site. It is not
    a consortium member; its vendor vouches for its BLS key in the signed Spot message."""

    role = CREW

    def __init__(self, *args: Any, employer: bytes = b"", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.employer = employer

    async def accept(self, payload: Payload, opened: OpenedMessage) -> None:
        if payload.kind == "briefing" and opened.sender_id != self.employer:
            raise self._refuse("not_my_vendor", "0x" + opened.sender_id.hex())
