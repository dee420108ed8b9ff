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
reveals is settled by `close`. On site (SMW, SOW) the node briefs its crew (`CrewService`),
which repairs at the time the device chose.

Misbehaviour for the failure paths is configuration too (`NodePolicy.never_reveal`,
`never_serve`; `DeviceService(never_confirm=True)`): the other parties meet it through the
contract's deadlines, nothing is scripted.

Restart safety: a bid's salt is stored before its commit is sent; before sending a
commit, a reveal or a request the service reads the chain for it (a proven bid record,
the device's open request), so a restarted service never commits or deposits twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from client import ClientError, TransactionFailed, from_hex
from client.contracts import Dsc, Policy
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
from crypto import keccak256
from diagnosis import protocol as proto
from diagnosis.agents import Agent, CrewAgent, DeviceAgent, DiagnosisNodeAgent, SmartphoneAgent, now_ms
from diagnosis.channel import Payload, RemoteRejection
from diagnosis.errors import DiagnosisError, Refusal
from diagnosis.message import SealedMessage
from diagnosis.protocol import CREW, DEVICE, NODE, PHONE
from diagnosis.store import AgentStore
from vm import fixedpoint

log = logging.getLogger("gridchain.agent")

POLL_MS_DEFAULT = 1_000
WINDOW_MARGIN_MS = 150  # act this long after a window's end by chain time
CLOSE_GRACE_MS = 5_000  # a node closes an auction only if the requester has not, this long after the window
REPORT_LEAD_MS = 5_000  # a node reports a remote repair done this long before the deadline if still unconfirmed
EVENT_RECONNECT_MS = 500
REQUEST_COUNTER_KEY = b"n"  # contracts/dsc.py REQUEST_COUNTER
SCAN_REQUESTS_MAX = 64  # new request ids a node looks at per poll
REACTIONS_MAX = 64  # requests reacted to at once (one at a time per request: waiting for one
# request's receipts must not make a node miss another auction's window)
TERMINAL = (FAILED, DEFAULTED)  # a request that ended without a completion
VISIT_DELAY_MS = 2_000  # the maintenance time t_k a device proposes, from now
CREW_STEP = 7  # SMW / SOW: Rep's on-site repair, whose hash the device logs
POWER_SAVING = "power-saving"  # the policy mode the smartphone's default rule sets


@dataclass
class Counters:
    """What /metrics shows (labels come from enums and fixed names, never from text)."""

    flows_started: int = 0
    flows_finished: int = 0
    flows_failed: dict[str, int] = field(default_factory=dict)
    bids: int = 0
    reactions_failed: int = 0
    repairs: int = 0  # a device's applied repairs, and their fault-to-repair time
    repair_ms_sum: int = 0


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
        self._wakes: set[tuple[int, int]] = set()  # (request, time) a timer is set for
        self._active: dict[int, asyncio.Task[None]] = {}  # request id -> its running reaction
        self._again: set[int] = set()  # kicked while its reaction ran: react once more after it
        self._slots = asyncio.Semaphore(REACTIONS_MAX)
        agent.store = store
        agent.on_accepted = lambda payload: self.kick(payload.request_id)

    def kick(self, request_id: int) -> None:
        if request_id > 0 and request_id not in self._queued:
            self._queued.add(request_id)
            self._queue.put_nowait(request_id)

    def wake_at(self, request_id: int, at_ms: int, now_ms: int) -> None:
        """Kick the request just after `at_ms` (one timer per request and time: every poll
        of a waiting request asks again)."""
        if (request_id, at_ms) in self._wakes:
            return
        self._wakes.add((request_id, at_ms))

        async def later() -> None:
            await asyncio.sleep(max(0, at_ms + WINDOW_MARGIN_MS - now_ms) / 1000)
            self._wakes.discard((request_id, at_ms))
            self.kick(request_id)

        task = asyncio.create_task(later())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def run(self) -> None:
        """Until cancelled."""
        self.agent.resume_inbox()  # what its inbox held when an earlier life ended
        tasks = [asyncio.create_task(t) for t in (self._events(), self._poll(), self._work(), *self.loops())]
        try:
            await asyncio.gather(*tasks)
        finally:
            reactions = list(self._active.values())
            for task in [*tasks, *self._timers, *reactions]:
                task.cancel()
            for task in [*tasks, *reactions]:
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
            if request_id in self._active:
                self._again.add(request_id)
                continue
            await self._slots.acquire()
            self._active[request_id] = asyncio.create_task(self._react_once(request_id))

    async def _react_once(self, request_id: int) -> None:
        try:
            await self.react(request_id)
        except (ClientError, OSError, DiagnosisError, TimeoutError) as exc:
            # the next event or poll retries; the store says what is already done
            self.counters.reactions_failed += 1
            log.warning("request %d: %s: %s", request_id, type(exc).__name__, exc)
        finally:
            del self._active[request_id]
            self._slots.release()
            if request_id in self._again:
                self._again.discard(request_id)
                self.kick(request_id)

    def loops(self) -> list[Coroutine[Any, Any, None]]:
        """More long-running loops of a role (a device's operation)."""
        return []

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

    async def close_if_due(self, request_id: int, request: Request, now: int, grace_ms: int = 0) -> None:
        """Anyone may close an auction once the reveal window is over (IV.B); the
        requester does (Figs. 7-8 step 4), the others `grace_ms` later if it has not."""
        if now < request.reveal_end_ms + grace_ms:
            self.wake_at(request_id, request.reveal_end_ms + grace_ms, now)
            return
        with contextlib.suppress(TransactionFailed):  # someone else closed it first
            await self.agent.tx(Dsc.close(request_id), proto.label_of(proto.ROW, DEVICE, "dsc.close"))

    async def expire_if_due(self, request_id: int, request: Request, now: int) -> None:
        """Past the service deadline anyone may settle a request through the contract's
        expiry path (the node defaults, or the silent requester if the node reported the
        repair done; a dispute's window returns every escrow). Before it: wake then."""
        if now <= request.deadline_ms:
            self.wake_at(request_id, request.deadline_ms, now)
            return
        with contextlib.suppress(TransactionFailed):  # someone else settled it first
            await self.agent.tx(Dsc.expire(request_id), "")

    async def deliver_once(self, to: bytes, payload: Payload, counterpart: str, *, log_hash: bool = True) -> None:
        """Send a step's message and log its hash on chain (a crew logs nothing: it sends
        no transactions). One sealed copy per step until the receiver refuses it: the copy
        is kept (and recorded as sent) before it leaves, and sent again, never sealed again,
        while the receiver decides, after a timeout and after a restart; so however slow
        the receiver, it sees one message, not one per try. A copy sent before may already
        be logged on chain (a restart between the log and the store's flag): it is logged
        only if it is not. `step_repeated` (a copy lost with a store that was not this
        one's, or refused and sealed anew) names the copy the receiver holds: logged
        likewise if it is one of this agent's."""
        kept = self.store.copy(payload.request_id, payload.kind)
        if kept is not None:
            sealed = SealedMessage.decode(kept)
        else:
            sealed = await self.agent.seal(to, payload, counterpart)
            self.store.keep_copy(sealed.hash, payload.request_id, payload.kind, to, sealed.encode(),
                                 sealed.timestamp_ms)
        try:
            await self.agent.deliver(to, sealed, payload, counterpart)
            held = sealed.hash
        except RemoteRejection as exc:
            self.store.drop_copy(payload.request_id, payload.kind)  # refused: the next try seals anew
            if exc.reason != Refusal.STEP_REPEATED:
                raise
            ours = {h for direction, kind, h in self.store.messages(payload.request_id)
                    if direction == "sent" and kind == payload.kind}
            if "0x" + exc.held.hex() not in ours:
                return  # the receiver has the step from a copy this agent has no record of: nothing to log
            held = exc.held
        if log_hash and ((kept is None and held == sealed.hash)
                         or not any(e[2] == held for e in await self._logged(payload.request_id))):
            await self.agent.log_hash(payload.request_id, payload.step, held)
        self.store.drop_copy(payload.request_id, payload.kind)

    def received_hash(self, request_id: int, kind: str) -> bytes:
        """The hash of the message of `kind` this agent accepted for the request."""
        found = [h for direction, k, h in self.store.messages(request_id) if direction == "received" and k == kind]
        assert found, f"no {kind} received for request {request_id}"
        return from_hex(found[-1])

    async def device_logged(self, request_id: int, step: int, device: bytes) -> bool:
        """Whether the device logged a message hash at `step` (DSC log, proven)."""
        return any(e[0] == step and e[1] == device for e in await self._logged(request_id))

    async def _logged(self, request_id: int) -> list[list[Any]]:
        """The request's DSC message log [step, sender, hash], read by proof."""
        proven = await self.agent.ledger.storage(DSC, dsc_records.messages_key(request_id))
        entries = proven.value if isinstance(proven.value, list) else []
        return [e for e in entries if isinstance(e, list) and len(e) == 3]


@dataclass(frozen=True)
class NodePolicy:
    """A vendor's or supplier's own business rules (its config)."""

    prices: dict[str, int]  # cost model: its price P_i per device type S (clamped into (P_min, P_max))
    requester_credit_min: int = 0  # on the 0-100 credit scale: below it, no bid
    remote: bool = True  # capable of remote repairs
    onsite: bool = True  # capable of on-site repairs (with its crew)
    # misbehaviour, per device type (the demo's failure paths): commit and never reveal;
    # win and never serve
    never_reveal: frozenset[str] = frozenset()
    never_serve: frozenset[str] = frozenset()


def _flow(request: Request) -> proto.Flow:
    """The figure the request follows; before the node chose, both modes share the label
    of every message sent so far (the fault)."""
    return proto.flow_for(request.in_warranty, request.mode or "remote")


class NodeService(Service):
    agent: DiagnosisNodeAgent

    def __init__(self, agent: DiagnosisNodeAgent, store: AgentStore, policy: NodePolicy,
                 poll_ms: int = POLL_MS_DEFAULT, crew: bytes | None = None) -> None:
        super().__init__(agent, store, poll_ms)
        self.policy = policy
        self.crew = crew  # the registered crew it sends on site (None: no on-site repairs)

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
            if request.device_type not in self.policy.never_serve:
                await self._serve(request_id, request, state)
                await self._report_if_unconfirmed(request_id, request, now)
                await self.expire_if_due(request_id, request, now)
        elif request.status == DISPUTED and request.node == me:
            await self.expire_if_due(request_id, request, now)
        elif request.status == COMPLETED and request.node == me and not state.get("done"):
            if not request.rated_by_node and not state.get("rated"):
                await self.agent.tx(Dsc.rate(request_id, 90), proto.label_of(_flow(request), NODE, "dsc.rate"))
                self.store.update(request_id, rated=True)
            self.counters.flows_finished += 1
            self.store.update(request_id, done=True)
        elif state and not state.get("done"):
            if request.node != me and request.status != BIDDING:
                self.store.update(request_id, done=True)  # lost the auction (or never in it)
            elif request.status in TERMINAL:
                self.counters.flows_failed[request.status] = self.counters.flows_failed.get(request.status, 0) + 1
                self.store.update(request_id, done=True)

    async def _report_if_unconfirmed(self, request_id: int, request: Request, now: int) -> None:
        """A remote repair the requester has not confirmed shortly before the deadline is
        reported done, so the expiry path settles it as the requester's default (the
        node is paid) and not as the node's."""
        state = self.store.request(request_id)
        if request.mode != "remote" or not state.get("policy_sent") or request.node_done \
                or state.get("done_reported"):
            return
        if now < request.deadline_ms - REPORT_LEAD_MS:
            self.wake_at(request_id, request.deadline_ms - REPORT_LEAD_MS, now)
            return
        await self.agent.tx(Dsc.report_done(request_id), "")
        self.store.update(request_id, done_reported=True)

    async def _willing(self, request: Request) -> bool:
        """V.B step 2 by proof and by policy: k_i active, type S served, Cred_k high enough."""
        if request.device_type not in self.policy.prices:
            return False
        directory = self.agent.directory
        # independent proven reads at once: a commit window is a few of a loaded node's round trips
        entry, credit, threshold = await asyncio.gather(directory.resolve(request.device),
                                                        directory.credit(request.device),
                                                        directory.requester_threshold(self.agent.address))
        if entry is None or not entry.active:
            return False
        return credit >= max(fixedpoint.from_int(self.policy.requester_credit_min), threshold)

    async def _bid(self, request_id: int, request: Request, state: dict[str, Any], now: int) -> None:
        """Commit, then reveal, inside the windows by chain time. The store says what was
        sent (`committed`, `revealed` after each receipt); only when it cannot know — a
        stored salt without `committed`, a crash between the send and the write — the
        proven bid record decides, so a restart never commits twice and still reveals."""
        if state.get("declined") or state.get("revealed"):
            if now >= request.reveal_end_ms and not state.get("declined"):
                await self.close_if_due(request_id, request, now, CLOSE_GRACE_MS)
            elif not state.get("declined"):
                self.wake_at(request_id, request.reveal_end_ms, now)
            return
        fresh = False
        if now < request.commit_end_ms and "bid" not in state:
            willing, terms, credit = await asyncio.gather(self._willing(request),
                                                          Dsc.terms(self.agent.ledger, request.device_type),
                                                          self.agent.directory.credit(self.agent.address))
            if not willing:
                self.store.update(request_id, declined=True, done=True)
                return
            price = min(max(self.policy.prices[request.device_type], terms.p_min + 1), terms.p_max - 1)
            # the salt is on disk before the commitment leaves: a restart can still reveal
            state = self.store.update(request_id, bid={"price": price, "credit": credit,
                                                       "salt": secrets.token_hex(32)})
            fresh = True
        bid = state.get("bid")
        if bid is None:
            return
        salt = bytes.fromhex(bid["salt"])
        label = proto.label_of(proto.ROW, NODE, "dsc.commit")
        status = dsc_records.COMMITTED if state.get("committed") else None
        if status is None and not fresh:
            on_chain = await self.agent.ledger.storage(DSC, dsc_records.bid_key(request_id, self.agent.address))
            status = None if on_chain.value is None else dsc_records.Bid.from_value(on_chain.value).status
        if now < request.commit_end_ms:
            if status is None:
                terms = await Dsc.terms(self.agent.ledger, request.device_type)  # a view: one round trip
                commitment = bid_commitment(request_id, self.agent.address, bid["price"], bid["credit"], salt)
                await self.agent.tx(Dsc.commit(request_id, commitment).with_value(terms.bid_deposit), label)
                self.counters.bids += 1
                self.store.update(request_id, committed=True)
            self.wake_at(request_id, request.commit_end_ms, now)
        elif now < request.reveal_end_ms:
            if status == dsc_records.COMMITTED and request.device_type not in self.policy.never_reveal:
                await self.agent.tx(Dsc.reveal(request_id, bid["price"], bid["credit"], salt), label)
                self.store.update(request_id, revealed=True)
            self.wake_at(request_id, request.reveal_end_ms, now)
        else:
            await self.close_if_due(request_id, request, now, CLOSE_GRACE_MS)

    async def _serve(self, request_id: int, request: Request, state: dict[str, Any]) -> None:
        """Steps 3-4 (ROW/SOW 6.3-6.4): the fault, the diagnosis, the repair policy or the
        Spot; on site also 6 (6.6): the crew's briefing once the device chose t_k, and 7:
        `report_done` once the device logged the crew's message."""
        inbox = state.get("inbox", {})
        if "decision" not in state:
            if "fault" not in inbox:
                return  # the device's message arrives later and kicks us
            decision = self.agent.diagnose(inbox["fault"])
            capable = self.policy.remote if decision["mode"] == "remote" else self.policy.onsite and bool(self.crew)
            if not capable:
                # it cannot serve this: the service deadline settles it (the node defaults)
                self.store.update(request_id, decision=decision, unsupported=True)
                return
            state = self.store.update(request_id, decision=decision)
        decision = state["decision"]
        if state.get("unsupported"):
            return
        flow = proto.flow_for(request.in_warranty, decision["mode"])
        if request.mode == "":
            await self.agent.tx(Dsc.set_mode(request_id, decision["mode"]), proto.label_of(flow, NODE, "dsc.set_mode"))
        if decision["mode"] == "remote":
            if not state.get("policy_sent"):
                await self.deliver_once(request.device, Payload(request_id, proto.label_of(flow, NODE, "repair_policy"),
                                                                "repair_policy", decision["policy"]), DEVICE)
                self.store.update(request_id, policy_sent=True)
            return
        assert self.crew is not None
        if not state.get("spot_sent"):
            spot = {"spot": f"site-of-{request.device.hex()[:8]}/{request.device_type}",
                    "window": "next maintenance slot", "crew": "0x" + self.crew.hex()}
            await self.deliver_once(request.device, Payload(request_id, proto.label_of(flow, NODE, "spot"), "spot",
                                                            spot), DEVICE)
            state = self.store.update(request_id, spot_sent=True, spot=spot["spot"])
        if "time" in inbox and not state.get("briefed"):
            briefing = {"device": "0x" + request.device.hex(), "fault": inbox["fault"], "policy": decision["policy"],
                        "spot": state["spot"], "t_ms": int(inbox["time"]["t_ms"])}
            await self.deliver_once(self.crew, Payload(request_id, proto.label_of(flow, NODE, "briefing"), "briefing",
                                                       briefing), CREW)
            state = self.store.update(request_id, briefed=True)
        if state.get("briefed") and not request.node_done and not state.get("done_reported") \
                and await self.device_logged(request_id, CREW_STEP, request.device):
            await self.agent.tx(Dsc.report_done(request_id), proto.label_of(flow, NODE, "dsc.report_done"))
            self.store.update(request_id, done_reported=True)


class CrewService(Service):
    """The crew Rep: briefed by its node (authorised by proof), it goes on site at t_k and
    sends the device the on-site repair (SMW / SOW step 7)."""

    agent: CrewAgent

    async def react(self, request_id: int) -> None:
        state = self.store.request(request_id)
        briefing = state.get("inbox", {}).get("briefing")
        if briefing is None or state.get("done"):
            return
        request, _ = await self.proven_request(request_id)
        if request is None or request.status != ASSIGNED:  # ended before the visit (an expiry)
            if request is not None and request.status != COMPLETED:
                self.counters.flows_failed[request.status] = self.counters.flows_failed.get(request.status, 0) + 1
            self.store.update(request_id, done=True)
            return
        if now_ms() < int(briefing["t_ms"]):
            self.wake_at(request_id, int(briefing["t_ms"]), now_ms())
            return
        repair = Payload(request_id, str(CREW_STEP), "onsite_repair", {"policy": briefing["policy"], "at_ms": now_ms()})
        await self.deliver_once(from_hex(briefing["device"]), repair, DEVICE, log_hash=False)
        self.counters.flows_finished += 1
        self.store.update(request_id, done=True)


@dataclass(frozen=True)
class Operation:
    """A device's simulated operation: its power draw, which the policy in force changes
    (IV.A: "once the power consumption reaches the upper limit, it enters power saving"),
    reported every `report_s` seconds (0: no reports)."""

    power_w: int = 1_600
    power_saving_w: int = 900
    report_s: float = 0.0


class DeviceService(Service):
    agent: DeviceAgent

    def __init__(self, agent: DeviceAgent, store: AgentStore, poll_ms: int = POLL_MS_DEFAULT,
                 rating: int = 90, operation: Operation | None = None, never_confirm: bool = False) -> None:
        super().__init__(agent, store, poll_ms)
        self.rating = rating
        self.operation = operation or Operation()
        self.never_confirm = never_confirm  # misbehaviour (a failure path): applies repairs, never confirms

    def loops(self) -> list[Coroutine[Any, Any, None]]:
        return [self._operate()] if self.operation.report_s > 0 else []

    async def _operate(self) -> None:
        """Run by the policy in force: read it, draw power by its mode, report the draw
        (a report rule the draw meets fires at the end of that block, so the next report
        shows what the rule changed)."""
        while True:
            try:
                mode, _, version = await Policy.effective(self.agent.ledger, self.agent.address)
                power = self.operation.power_saving_w if mode == POWER_SAVING else self.operation.power_w
                # the first report under the policy a flow's smartphone published is that
                # flow's last step (RMW 8.2: the report that fires the policy)
                awaited = self.store.get("policy_awaited")
                label, request_id = "", 0
                if awaited and version != awaited["version"]:
                    label, request_id = proto.label_of(proto.RMW, DEVICE, "policy.report"), int(awaited["request"])
                await self.agent.tx(Policy.report("power_w", power), label, request_id)
                if request_id:
                    self.store.put("policy_awaited", None)
                self.store.put("operation", {"mode": mode, "policy_version": version, "power_w": power})
            except (ClientError, OSError, DiagnosisError) as exc:
                log.warning("operation report failed: %s", exc)
            await asyncio.sleep(self.operation.report_s)

    async def fail(self, symptom: str, component: str) -> int:
        """The fault source: open a request with its deposit (in warranty the vendor is
        assigned at once, otherwise the auction opens). A device has one open request
        at a time (the DSC's rule), so an existing one is resumed, never paid twice."""
        fault_ms = now_ms()
        existing = await self.agent.ledger.storage(DSC, b"o:" + self.agent.address)
        if isinstance(existing.value, int) and existing.value > 0:
            self.kick(existing.value)
            return existing.value
        record, header = await self.agent.directory.device(self.agent.address)
        if record is None:
            raise NotRegistered(f"0x{self.agent.address.hex()} is not a registered device yet")
        terms = await Dsc.terms(self.agent.ledger, record.device_type)
        in_warranty = header.timestamp_ms // 1000 <= record.warranty_end_s
        value = terms.request_deposit + (0 if in_warranty else terms.p_max)
        flow = proto.flow_for(in_warranty, "remote")
        receipt = await self.agent.tx(Dsc.open_request(self.agent.address).with_value(value),
                                      proto.label_of(flow, DEVICE, "dsc.open_request"))
        request_id = receipt.event("RequestOpened").int_of("request")
        fault = {"device": "0x" + self.agent.address.hex(), "type": record.device_type, "symptom": symptom,
                 "component": component}
        self.store.update(request_id, fault=fault, phone="0x" + record.phone.hex(), fault_ms=fault_ms,
                          in_warranty=in_warranty)
        self.counters.flows_started += 1
        self.kick(request_id)
        return request_id

    async def react(self, request_id: int) -> None:
        state = self.store.request(request_id)
        if not state or state.get("done") or "fault" not in state:
            return
        request, now = await self.proven_request(request_id)
        if request is None:
            return
        flow = _flow(request)
        fault = Payload(request_id, proto.label_of(flow, DEVICE, "fault"), "fault", state["fault"])
        if request.status == BIDDING:
            await self.close_if_due(request_id, request, now)
        elif request.status == ASSIGNED:
            if not state.get("fault_sent"):
                await self.deliver_once(request.node, fault, flow.node_role)
                state = self.store.update(request_id, fault_sent=True, failure_hash=keccak256(fault.to_bytes()).hex())
            if request.mode == "remote":
                await self._remote(request_id, request, state, flow)
            elif request.mode == "on-site":
                await self._onsite(request_id, request, state, flow, now)
            if not self.store.request(request_id).get("repaired"):
                await self.expire_if_due(request_id, request, now)  # a winner that never serves
        elif request.status == DISPUTED:
            await self.expire_if_due(request_id, request, now)
        elif request.status == COMPLETED:
            await self._after_completion(request_id, request, state, flow)
        elif request.status in TERMINAL:
            self.counters.flows_failed[request.status] = self.counters.flows_failed.get(request.status, 0) + 1
            self.store.update(request_id, done=True)

    def _count_repair(self, state: dict[str, Any]) -> None:
        self.counters.repairs += 1
        self.counters.repair_ms_sum += int(state["repaired_ms"]) - int(state.get("fault_ms", state["repaired_ms"]))

    def _phone(self, state: dict[str, Any]) -> bytes:
        return from_hex(state["phone"])

    async def _remote(self, request_id: int, request: Request, state: dict[str, Any], flow: proto.Flow) -> None:
        """RMW / ROW 5-6: apply the repair policy, confirm (complete)."""
        policy = state.get("inbox", {}).get("repair_policy")
        if policy is not None and not state.get("repaired"):
            self.agent.apply_repair(policy)
            state = self.store.update(request_id, repaired=True, firmware=self.agent.firmware, repaired_ms=now_ms())
            self._count_repair(state)
        # a proof may trail the last block by one: the store says whether complete was sent
        if state.get("repaired") and not state.get("complete_tx") and not self.never_confirm:
            receipt = await self.agent.tx(Dsc.complete(request_id, bytes.fromhex(state["failure_hash"])),
                                          proto.label_of(flow, DEVICE, "dsc.complete"))
            self.store.update(request_id, complete_tx=receipt.tx)
            self.kick(request_id)

    async def _onsite(self, request_id: int, request: Request, state: dict[str, Any], flow: proto.Flow,
                      now: int) -> None:
        """SMW / SOW 5-8: choose t_k, tell the smartphone, accept the crew's repair (the
        crew of the assigned node, by proof), log it; in warranty report to the phone."""
        inbox = state.get("inbox", {})
        if "spot" in inbox and not state.get("time_sent"):
            # chosen once: a retry sends the copy that carries it, and the notice must agree
            if "visit_ms" not in state:
                state = self.store.update(request_id, visit_ms=now + VISIT_DELAY_MS)
            visit_ms = int(state["visit_ms"])
            await self.deliver_once(request.node, Payload(request_id, proto.label_of(flow, DEVICE, "time"), "time",
                                                          {"t_ms": visit_ms}), flow.node_role)
            notice = {"spot": inbox["spot"]["spot"], "t_ms": visit_ms, "node": "0x" + request.node.hex(),
                      "fault": state["fault"]["symptom"], "failure_hash": state["failure_hash"]}
            await self.deliver_once(self._phone(state), Payload(request_id, proto.label_of(flow, DEVICE,
                                                                                         "diagnosis_notice"),
                                                                "diagnosis_notice", notice), PHONE)
            state = self.store.update(request_id, time_sent=True)
        if "onsite_repair" in inbox and not state.get("repaired"):
            self.agent.apply_repair(inbox["onsite_repair"]["policy"])
            await self.agent.log_hash(request_id, str(CREW_STEP), self.received_hash(request_id, "onsite_repair"))
            state = self.store.update(request_id, repaired=True, repaired_at_ms=inbox["onsite_repair"]["at_ms"],
                                      repaired_ms=now_ms())
            self._count_repair(state)
        if state.get("repaired") and request.in_warranty and not state.get("reported"):
            await self._report(request_id, state, flow)

    async def _report(self, request_id: int, state: dict[str, Any], flow: proto.Flow) -> None:
        report = {"repaired_at_ms": state.get("repaired_at_ms"), "failure_hash": state["failure_hash"]}
        await self.deliver_once(self._phone(state), Payload(request_id, proto.label_of(flow, DEVICE,
                                                                                     "maintenance_report"),
                                                            "maintenance_report", report), PHONE, log_hash=False)
        self.store.update(request_id, reported=True)

    async def _after_completion(self, request_id: int, request: Request, state: dict[str, Any],
                                flow: proto.Flow) -> None:
        """Remote: rate the node, package the maintenance to the smartphone (RMW 6-7, ROW
        8-9). Out of warranty on site: the report to the phone follows completion (SOW 9)."""
        if request.mode == "on-site":
            if not state.get("reported"):
                await self._report(request_id, state, flow)
        else:
            if not request.rated_by_requester and not state.get("rated"):
                await self.agent.tx(Dsc.rate(request_id, self.rating), proto.label_of(flow, DEVICE, "dsc.rate"))
                self.store.update(request_id, rated=True)
            body = {"request": request_id, "node": "0x" + request.node.hex(), "price": request.price,
                    "firmware": state.get("firmware", self.agent.firmware),
                    "complete_tx": state.get("complete_tx", "")}
            if flow is proto.RMW and self.operation.report_s > 0 and not state.get("package_sent"):
                _, _, version = await Policy.effective(self.agent.ledger, self.agent.address)
                self.store.put("policy_awaited", {"request": request_id, "version": version})
            await self.deliver_once(self._phone(state), Payload(request_id, proto.label_of(flow, DEVICE, "package"),
                                                                "package", body), PHONE)
            self.store.update(request_id, package_sent=True)
        self.counters.flows_finished += 1
        self.store.update(request_id, done=True)


class NotRegistered(DiagnosisError):
    """A device asked to open a request before its vendor registered it."""


class PhoneService(Service):
    """The smartphone: messages from its bound device (authorised by proof) are checked
    against the chain. Remote flows: a package for a proven completed request is answered
    with the equipment policy. On site it acts for the device (Figs. 6, 8): in warranty it
    confirms on the maintenance report; out of warranty it confirms once the device logged
    the crew's message, then rates on the report; then it publishes the policy."""

    agent: SmartphoneAgent

    def __init__(self, agent: SmartphoneAgent, store: AgentStore, rules: Callable[[], list[list[Any]]],
                 poll_ms: int = POLL_MS_DEFAULT, rating: int = 92) -> None:
        super().__init__(agent, store, poll_ms)
        self.rules = rules
        self.rating = rating

    async def react(self, request_id: int) -> None:
        state = self.store.request(request_id)
        inbox = state.get("inbox", {})
        if state.get("done") or not inbox:
            return
        request, _ = await self.proven_request(request_id)
        if request is None or request.mode == "":
            return
        if request.status in TERMINAL:  # ended through an expiry path: nothing more to do for it
            self.counters.flows_failed[request.status] = self.counters.flows_failed.get(request.status, 0) + 1
            self.store.update(request_id, done=True)
            return
        flow = _flow(request)
        if request.mode == "on-site":
            if not await self._onsite(request_id, request, inbox, flow):
                return
        elif "package" not in inbox or request.status != COMPLETED:
            return
        await self.agent.tx(Policy.publish(request.device, self.rules()), proto.label_of(flow, PHONE, "policy.publish"),
                            request_id)
        self.counters.flows_finished += 1
        self.store.update(request_id, done=True, device="0x" + request.device.hex())

    async def _onsite(self, request_id: int, request: Request, inbox: dict[str, Any], flow: proto.Flow) -> bool:
        """True once its part before the policy is done."""
        failure_hash = (inbox.get("maintenance_report") or inbox.get("diagnosis_notice") or {}).get("failure_hash")
        if request.status == ASSIGNED and failure_hash:
            # the node reported the repair done (Figs. 6, 8 step 7) and, in warranty, the
            # device reported it (step 8); out of warranty the device logged Rep's message
            confirm = request.node_done and ("maintenance_report" in inbox if request.in_warranty else
                                             await self.device_logged(request_id, CREW_STEP, request.device))
            if confirm and not self.store.request(request_id).get("confirmed"):
                await self.agent.tx(Dsc.complete(request_id, bytes.fromhex(failure_hash)),
                                    proto.label_of(flow, PHONE, "dsc.complete"))
                self.store.update(request_id, confirmed=True)
            return False
        if request.status != COMPLETED or "maintenance_report" not in inbox:
            return False
        label = proto.label_of(flow, PHONE, "dsc.rate")
        if not request.rated_by_requester and not self.store.request(request_id).get("rated"):
            await self.agent.tx(Dsc.rate(request_id, self.rating), label)
            self.store.update(request_id, rated=True)
        if not self.store.request(request_id).get("logged"):
            await self.agent.log_hash(request_id, label, self.received_hash(request_id, "maintenance_report"))
            self.store.update(request_id, logged=True)
        return True
