"""The parties as services that react to the chain instead of being driven by a script
(issue 11): each service wraps one agent (keys, ledger, inbox, authorisation) and its own
store, follows DSC events (subscription) and re-checks its open work every `poll_ms`
(so a missed notification or a restart never loses a step), and for each request does
the next thing its role owes, decided from proven chain state and its store.

Done here: the remote flows (RMW, Fig. 5; ROW, Fig. 7) and the DSC auction of IV.B —
devices open requests from a fault source, vendors and suppliers decide from their own
policy whether and what to bid, commit and reveal inside the windows by chain time,
anyone closes once the reveal window is over, the assigned node serves, the device
applies the repair, completes, rates and sends the package to its smartphone, which
verifies the completion and publishes the policy. Deadlines go through the contract's
expiry paths: past the service deadline the device (a winner that never serves) or the
assigned node (a requester that never confirms) sends `expire`; a bidder that never
reveals is settled by `close`. On-site flows (crew) are not reactive yet: they run in
`diagnosis/flows.py`.

Restart safety: a bid's salt is stored before its commit is sent; before sending a
commit, a reveal or a request the service reads the chain for it (a proven bid record,
the device's open request), so a restarted service never commits or deposits twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from client.contracts import Dsc, Policy
from client.errors import ClientError, TransactionFailed
from contracts import dsc_records
from contracts.addresses import DSC
from contracts.dsc_records import (
    ASSIGNED,
    BIDDING,
    COMPLETED,
    DEFAULTED,
    DISPUTED,
    FAILED,
    Request,
    bid_commitment,
)
from crypto.hashing import keccak256
from diagnosis.agents import Agent, DeviceAgent, DiagnosisNodeAgent, SmartphoneAgent, now_ms
from diagnosis.channel import Payload, RemoteRejection
from diagnosis.errors import DiagnosisError, Refusal
from diagnosis.protocol import PHONE
from diagnosis.store import AgentStore
from vm import fixedpoint

log = logging.getLogger("gridchain.agent")

POLL_MS_DEFAULT = 1_000
WINDOW_MARGIN_MS = 150  # act this long after a window's end by chain time
EVENT_RECONNECT_MS = 500
REQUEST_COUNTER_KEY = b"n"  # contracts/dsc.py REQUEST_COUNTER
SCAN_REQUESTS_MAX = 64  # new request ids a node looks at per poll
TERMINAL = (FAILED, DEFAULTED)  # a request that ended without a completion
LABELS = {True: {"fault": "2", "repair_policy": "4", "complete": "6", "rate": "6", "package": "7", "policy": "8.1"},
          False: {"fault": "6.2", "repair_policy": "6.4", "complete": "7", "rate": "8", "package": "9",
                  "policy": "10"}}  # RMW (in warranty) and ROW step labels, diagnosis/protocol.py


@dataclass
class Counters:
    """What /metrics shows (labels come from enums and fixed names, never from text)."""

    flows_started: int = 0
    flows_finished: int = 0
    flows_failed: dict[str, int] = field(default_factory=dict)
    bids: int = 0
    reactions_failed: int = 0


class Service:
    """Events + bounded polling -> one worker reacting per request id."""

    def __init__(self, agent: Agent, store: AgentStore, poll_ms: int = POLL_MS_DEFAULT) -> None:
        self.agent = agent
        self.store = store
        self.poll_ms = poll_ms
        self.counters = Counters()
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._queued: set[int] = set()
        self._timers: set[asyncio.Task[None]] = set()
        agent.store = store
        agent.on_accepted = lambda payload: self.kick(payload.request_id)

    def kick(self, request_id: int) -> None:
        if request_id > 0 and request_id not in self._queued:
            self._queued.add(request_id)
            self._queue.put_nowait(request_id)

    def wake_at(self, request_id: int, at_ms: int, now_ms: int) -> None:
        async def later() -> None:
            await asyncio.sleep(max(0, at_ms + WINDOW_MARGIN_MS - now_ms) / 1000)
            self.kick(request_id)

        task = asyncio.create_task(later())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def run(self) -> None:
        """Until cancelled."""
        tasks = [asyncio.create_task(t) for t in (self._events(), self._poll(), self._work())]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in [*tasks, *self._timers]:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _events(self) -> None:
        while True:
            try:
                async for event in self.agent.ledger.events({"contract": "dsc"}):
                    request_id = event["fields"].get("request")
                    if isinstance(request_id, int) and self.concerns(event):
                        self.kick(request_id)
            except (ClientError, OSError, DiagnosisError) as exc:
                log.warning("event subscription lost (%s); polling covers until it is back", exc)
            await asyncio.sleep(EVENT_RECONNECT_MS / 1000)

    async def _poll(self) -> None:
        while True:
            for request_id in self.store.open_requests():
                self.kick(request_id)
            with contextlib.suppress(ClientError, OSError, DiagnosisError):
                await self.discover()
            await asyncio.sleep(self.poll_ms / 1000)

    async def _work(self) -> None:
        while True:
            request_id = await self._queue.get()
            self._queued.discard(request_id)
            try:
                await self.react(request_id)
            except (ClientError, OSError, DiagnosisError, TimeoutError) as exc:
                # the next event or poll retries; the store says what is already done
                self.counters.reactions_failed += 1
                log.warning("request %d: %s: %s", request_id, type(exc).__name__, exc)

    def concerns(self, event: dict[str, Any]) -> bool:
        """Whether a DSC event is worth a look for this role."""
        return self.store.request(int(event["fields"]["request"])) != {}

    async def discover(self) -> None:
        """Find requests this role did not hear about (polling side of the subscription)."""

    async def react(self, request_id: int) -> None:
        raise NotImplementedError

    # shared steps -------------------------------------------------------------------------
    async def proven_request(self, request_id: int) -> tuple[Request | None, int]:
        """The request, proven, and the time the next block will carry: the proven
        header's time is a lower bound (an idle chain makes no blocks), the wall clock
        leads the next block by at most the batch delay. A transaction sent a little
        early is refused by the contract and retried on the next kick."""
        request, header = await self.agent.directory.request(request_id)
        return request, max(header.timestamp_ms, now_ms())

    async def close_if_due(self, request_id: int, request: Request, now: int) -> None:
        """Anyone may close an auction once the reveal window is over (IV.B)."""
        if now < request.reveal_end_ms:
            self.wake_at(request_id, request.reveal_end_ms, now)
            return
        with contextlib.suppress(TransactionFailed):  # someone else closed it first
            await self.agent.tx(Dsc.close(request_id), "4")

    async def expire_if_due(self, request_id: int, request: Request, now: int) -> None:
        """Past the service deadline anyone may settle a request through the contract's
        expiry path (the node defaults, or the silent requester if the node reported the
        repair done; a dispute's window returns every escrow). Before it: wake then."""
        if now <= request.deadline_ms:
            self.wake_at(request_id, request.deadline_ms, now)
            return
        with contextlib.suppress(TransactionFailed):  # someone else settled it first
            await self.agent.tx(Dsc.expire(request_id), "")

    async def deliver_once(self, to: bytes, payload: Payload, counterpart: str) -> None:
        """Send a step's message; a `step_repeated` refusal means it arrived before a
        restart, which is what we wanted."""
        try:
            sealed = await self.agent.send(to, payload, counterpart)
        except RemoteRejection as exc:
            if exc.reason != Refusal.STEP_REPEATED:
                raise
            return
        self.store.log_message(sealed.hash, "sent", payload.request_id, payload.kind, to, sealed.timestamp_ms)
        await self.agent.log_hash(payload.request_id, payload.step, sealed.hash)


@dataclass(frozen=True)
class NodePolicy:
    """A vendor's or supplier's own business rules (its config)."""

    prices: dict[str, int]  # cost model: its price P_i per device type S (clamped into (P_min, P_max))
    requester_credit_min: int = 0  # on the 0-100 credit scale: below it, no bid
    remote: bool = True  # capable of remote repairs
    onsite: bool = True  # capable of on-site repairs (with its crew)


class NodeService(Service):
    agent: DiagnosisNodeAgent

    def __init__(self, agent: DiagnosisNodeAgent, store: AgentStore, policy: NodePolicy,
                 poll_ms: int = POLL_MS_DEFAULT) -> None:
        super().__init__(agent, store, poll_ms)
        self.policy = policy

    def concerns(self, event: dict[str, Any]) -> bool:
        return event["name"] in ("RequestOpened", "Assigned", "AuctionClosed") or super().concerns(event)

    async def discover(self) -> None:
        proven = await self.agent.ledger.storage(DSC, REQUEST_COUNTER_KEY)
        newest = proven.value if isinstance(proven.value, int) else 0
        seen = int(self.store.get("scanned") or 0)
        for request_id in range(seen + 1, min(newest, seen + SCAN_REQUESTS_MAX) + 1):
            self.kick(request_id)
        self.store.put("scanned", min(newest, seen + SCAN_REQUESTS_MAX))

    async def react(self, request_id: int) -> None:
        request, now = await self.proven_request(request_id)
        if request is None:
            return
        state = self.store.request(request_id)
        me = self.agent.address
        if request.status == BIDDING:
            await self._bid(request_id, request, state, now)
        elif request.status == ASSIGNED and request.node == me:
            if not state.get("serving"):
                self.counters.flows_started += 1
                state = self.store.update(request_id, serving=True)
            await self._serve(request_id, request, state)
            await self.expire_if_due(request_id, request, now)
        elif request.status == DISPUTED and request.node == me:
            await self.expire_if_due(request_id, request, now)
        elif request.status == COMPLETED and request.node == me and not state.get("done"):
            if not request.rated_by_node:
                await self.agent.tx(Dsc.rate(request_id, 90), LABELS[request.in_warranty]["rate"])
            self.counters.flows_finished += 1
            self.store.update(request_id, done=True)
        elif state and not state.get("done"):
            if request.node != me and request.status != BIDDING:
                self.store.update(request_id, done=True)  # lost the auction (or never in it)
            elif request.status in TERMINAL:
                self.counters.flows_failed[request.status] = self.counters.flows_failed.get(request.status, 0) + 1
                self.store.update(request_id, done=True)

    async def _willing(self, request: Request) -> bool:
        """V.B step 2 by proof and by policy: k_i active, type S served, Cred_k high enough."""
        entry = await self.agent.directory.resolve(request.device)
        if entry is None or not entry.active or request.device_type not in self.policy.prices:
            return False
        credit = await self.agent.directory.credit(request.device)
        return credit >= max(fixedpoint.from_int(self.policy.requester_credit_min),
                             await self.agent.directory.requester_threshold(self.agent.address))

    async def _bid(self, request_id: int, request: Request, state: dict[str, Any], now: int) -> None:
        if state.get("declined"):
            return
        if now < request.commit_end_ms and "bid" not in state:
            if not await self._willing(request):
                self.store.update(request_id, declined=True, done=True)
                return
            terms = await Dsc.terms(self.agent.ledger, request.device_type)
            price = min(max(self.policy.prices[request.device_type], terms.p_min + 1), terms.p_max - 1)
            credit = await self.agent.directory.credit(self.agent.address)
            # the salt is on disk before the commitment leaves: a restart can still reveal
            state = self.store.update(request_id, bid={"price": price, "credit": credit,
                                                       "salt": secrets.token_hex(32)})
        bid = state.get("bid")
        if bid is None:
            return
        salt = bytes.fromhex(bid["salt"])
        on_chain = await self.agent.ledger.storage(DSC, dsc_records.bid_key(request_id, self.agent.address))
        if now < request.commit_end_ms:
            if on_chain.value is None:
                terms = await Dsc.terms(self.agent.ledger, request.device_type)
                commitment = bid_commitment(request_id, self.agent.address, bid["price"], bid["credit"], salt)
                await self.agent.tx(Dsc.commit(request_id, commitment).with_value(terms.bid_deposit), "3")
                self.counters.bids += 1
            self.wake_at(request_id, request.commit_end_ms, now)
        elif now < request.reveal_end_ms:
            committed = on_chain.value is not None and \
                dsc_records.Bid.from_value(on_chain.value).status == dsc_records.COMMITTED
            if committed:
                await self.agent.tx(Dsc.reveal(request_id, bid["price"], bid["credit"], salt), "3")
            self.wake_at(request_id, request.reveal_end_ms, now)
        else:
            await self.close_if_due(request_id, request, now)

    async def _serve(self, request_id: int, request: Request, state: dict[str, Any]) -> None:
        """Steps 3-4 (ROW 6.3-6.4): the fault message, the diagnosis, the repair policy."""
        if state.get("policy_sent"):
            return
        fault = state.get("inbox", {}).get("fault")
        if fault is None:
            return  # the device's message arrives later and kicks us
        decision = self.agent.diagnose(fault)
        if decision["mode"] != "remote" or not self.policy.remote:
            # on-site repairs are not reactive yet (module docstring): leave it to the deadline
            self.store.update(request_id, policy_sent=True, unsupported=decision["mode"])
            return
        labels = LABELS[request.in_warranty]
        if request.mode == "":
            await self.agent.tx(Dsc.set_mode(request_id, "remote"), labels["repair_policy"])
        await self.deliver_once(request.device, Payload(request_id, labels["repair_policy"], "repair_policy",
                                                        decision["policy"]), "k_i")
        self.store.update(request_id, policy_sent=True)


class DeviceService(Service):
    agent: DeviceAgent

    def __init__(self, agent: DeviceAgent, store: AgentStore, poll_ms: int = POLL_MS_DEFAULT,
                 rating: int = 90) -> None:
        super().__init__(agent, store, poll_ms)
        self.rating = rating

    async def fail(self, symptom: str, component: str) -> int:
        """The fault source: open a request with its deposit (in warranty the vendor is
        assigned at once, otherwise the auction opens). A device has one open request
        at a time (the DSC's rule), so an existing one is resumed, never paid twice."""
        existing = await self.agent.ledger.storage(DSC, b"o:" + self.agent.address)
        if isinstance(existing.value, int) and existing.value > 0:
            self.kick(existing.value)
            return existing.value
        record, header = await self.agent.directory.device(self.agent.address)
        assert record is not None, "a registered device"
        terms = await Dsc.terms(self.agent.ledger, record.device_type)
        in_warranty = header.timestamp_ms // 1000 <= record.warranty_end_s
        value = terms.request_deposit + (0 if in_warranty else terms.p_max)
        receipt = await self.agent.tx(Dsc.open_request(self.agent.address).with_value(value),
                                      "2" if in_warranty else "1")
        request_id = int(next(e for e in receipt["events"] if e["name"] == "RequestOpened")["fields"]["request"])
        fault = {"device": "0x" + self.agent.address.hex(), "type": record.device_type, "symptom": symptom,
                 "component": component}
        self.store.update(request_id, fault=fault, phone="0x" + record.phone.hex())
        self.counters.flows_started += 1
        self.kick(request_id)
        return request_id

    async def react(self, request_id: int) -> None:
        state = self.store.request(request_id)
        if not state or state.get("done"):
            return
        request, now = await self.proven_request(request_id)
        if request is None:
            return
        labels = LABELS[request.in_warranty]
        fault = Payload(request_id, labels["fault"], "fault", state["fault"])
        if request.status == BIDDING:
            await self.close_if_due(request_id, request, now)
        elif request.status == ASSIGNED:
            if not state.get("fault_sent"):
                await self.deliver_once(request.node, fault, "v_i" if request.in_warranty else "nv_i")
                state = self.store.update(request_id, fault_sent=True)
            policy = state.get("inbox", {}).get("repair_policy")
            if policy is not None and not state.get("repaired"):
                self.agent.apply_repair(policy)
                state = self.store.update(request_id, repaired=True, firmware=self.agent.firmware)
            if state.get("repaired"):
                receipt = await self.agent.tx(Dsc.complete(request_id, keccak256(fault.to_bytes())),
                                              labels["complete"])
                self.store.update(request_id, complete_tx=receipt["transactionHash"])
                self.kick(request_id)
            else:
                await self.expire_if_due(request_id, request, now)  # a winner that never serves
        elif request.status == DISPUTED:
            await self.expire_if_due(request_id, request, now)
        elif request.status == COMPLETED:
            await self._after_completion(request_id, request, state, labels)
        elif request.status in TERMINAL:
            self.counters.flows_failed[request.status] = self.counters.flows_failed.get(request.status, 0) + 1
            self.store.update(request_id, done=True)

    async def _after_completion(self, request_id: int, request: Request, state: dict[str, Any],
                                labels: dict[str, str]) -> None:
        """RMW 6-7 / ROW 8-9: rate the node, package the maintenance to the smartphone."""
        if not request.rated_by_requester:
            await self.agent.tx(Dsc.rate(request_id, self.rating), labels["rate"])
        body = {"request": request_id, "node": "0x" + request.node.hex(), "price": request.price,
                "firmware": state.get("firmware", self.agent.firmware), "complete_tx": state.get("complete_tx", "")}
        await self.deliver_once(bytes.fromhex(state["phone"][2:]), Payload(request_id, labels["package"], "package",
                                                                          body), PHONE)
        self.counters.flows_finished += 1
        self.store.update(request_id, done=True)


class PhoneService(Service):
    """The smartphone: a package from its bound device (authorised by proof) is checked
    against the chain (the request is proven completed) and answered with the equipment
    policy."""

    agent: SmartphoneAgent

    def __init__(self, agent: SmartphoneAgent, store: AgentStore, rules: Callable[[], list[list[Any]]],
                 poll_ms: int = POLL_MS_DEFAULT) -> None:
        super().__init__(agent, store, poll_ms)
        self.rules = rules

    async def react(self, request_id: int) -> None:
        state = self.store.request(request_id)
        if state.get("done") or "package" not in state.get("inbox", {}):
            return
        request, _ = await self.proven_request(request_id)
        if request is None or request.status != COMPLETED:
            return
        label = LABELS[request.in_warranty]["policy"]
        await self.agent.tx(Policy.publish(request.device, self.rules()), label)
        self.counters.flows_finished += 1
        self.store.update(request_id, done=True, device="0x" + request.device.hex())
