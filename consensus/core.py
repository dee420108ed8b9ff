"""The state of one replica and what both halves of the protocol share.

`ReplicaCore` holds the replica's record: the durable part (view, normal or view change,
the log entry, the epoch, and the SUSPECT that justifies the view: what a `Persist` writes)
and `ViewState` (`self.vs`), the per-view part, replaced by a fresh one whenever the view
changes (votes, commits, holders, outbox, the VIEW-CHANGE, VC-FINAL and VC-CONFIRM sets, the
selection, timers). The common case
(consensus/common.py) and the view change (consensus/viewchange.py) are two classes over
this one record; `Replica` (consensus/replica.py) combines them and routes each input, as
etcd's raft `Step` routes to `stepLeader` / `stepFollower`. Methods that one half calls in
the other are declared here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import msgpack
import rlp

from chain import Block, CommitCertificate, DecodeError, InvalidCertificate, LedgerError, decode
from chain.certificate import (
    commit_message,
    synchronous_group,
    verify_certificate,
    verify_finality,
)
from chain.epochs import Epoch
from consensus.actions import (
    Action,
    Check,
    FaultDetected,
    Finalize,
    Persist,
    Propose,
    Rejected,
    Send,
    ViewChanged,
)
from consensus.admission import DecodeBudget, role_refusal
from consensus.app import Application
from consensus.config import ConsensusConfig
from consensus.detection import InvalidFault, verify_fault
from consensus.errors import InvalidMessage, RejectReason
from consensus.log import Entry
from consensus.messages import (
    FAULT_NOTICE_BYTES_MAX,
    Commit,
    FaultNotice,
    Final,
    Message,
    NewView,
    Prepare,
    Suspect,
    VcConfirm,
    VcFinal,
    ViewChange,
    check_block,
    message_from_wire,
    view_of,
)
from consensus.selection import Start
from consensus.storage import StoredState
from crypto import KeyPair, is_valid_signature

NORMAL = "normal"
VIEW_CHANGE = "view-change"
EARLY_MESSAGES_MAX = 64  # current-view messages held until the replica can use them
# ... and their bytes: 64 PREPAREs near the frame limit from a Byzantine primary would hold
# 256 MB.
EARLY_BYTES_MAX = 16 * 1024 * 1024
RETRANSMIT_DOUBLINGS_MAX = 3  # retransmissions back off to 8x retransmit_ms at most
SLOW_START_SHARE = 8  # before any measured block cycle, a proposal's budget is commit_timeout_ms / 8
TIMEOUT_DOUBLINGS_MAX = 4  # at most 16x the configured commit and view-change timeouts
CYCLE_ALLOWANCE_MAX = 4  # the block-cycle allowance adds at most 4x a timeout ...
# ... of at least this much: a short floor (the WAN preset's 500 ms commit timeout, for quick
# detection of a crash) must not shorten how slow a block this machine may take (a 4 x 500 ms
# cap made a starved t = 2 cluster suspect working primaries under load)
CYCLE_ALLOWANCE_BASE_MS = 1_000
# Views left with a member never heard from, remembered until the next final block: a late
# message of such a view from that member shows it slow, not dead (the view then counts as
# slow after all). The newest are kept.
SILENT_VIEWS_MAX = 8


def _decode_suspect(data: bytes, n: int) -> Suspect | None:
    if not data:
        return None
    message = message_from_wire(msgpack.unpackb(data, raw=False), n)
    assert isinstance(message, Suspect), "storage holds the SUSPECT this replica acted on"
    return message


class Suspicion(Exception):
    """Raised inside a handler when a group member misbehaved; the replica suspects.
    `reason` labels the rejection (metrics), the text says what happened (logs)."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class OverBudget(Exception):
    """Raised inside a handler when decoding a block would take the peer the input came
    from over its decode budget (consensus/admission.py): the message is dropped and
    counted, nobody is suspected."""


@dataclass(frozen=True)
class Status:
    view: int
    primary: int
    group: tuple[int, ...]
    is_active: bool
    final_height: int
    view_changes: int
    state: str
    last_suspect_reason: str | None


class CheckFor(Enum):
    """What a block is executed for (a `Check`), so what the replica does once it executes."""

    PROPOSAL = "proposal"  # a PREPARE's or NEW-VIEW's block: vote for it
    FINAL = "final"  # a FINAL's certified block: finalize it
    PICK = "pick"  # the view change's selected entry: go on with the NEW-VIEW


@dataclass(frozen=True)
class Building:
    """A `Propose` is out: block `height` of `view`, asked for at `started_ms` (the
    primary's block cycle counts the build)."""

    view: int
    height: int
    started_ms: int


@dataclass(frozen=True)
class Checking:
    """A `Check` of `block` is out, and what to do once its outcome is in."""

    purpose: CheckFor
    block: Block
    view: int
    # The input it came with (link sender, time): a Rejected names that peer, and a block
    # decoded on the way on is charged to it. None from a timer.
    input: tuple[int, int] | None
    culprit: int | None = None  # the member suspected when it fails (PROPOSAL, PICK)
    entry: Entry | None = None  # PROPOSAL: the entry to log and vote for
    final: Final | None = None  # FINAL: the message, with its checked certificate below
    certificate: CommitCertificate | None = None
    charge: tuple[bytes, int] | None = None  # its block's decode charge, given back once it executes


@dataclass
class ViewState:
    """The part of a replica's record that lives for one view: what it collected and sent
    in it, and its timers. A view change starts a fresh one; the durable part (view, state,
    entry, epoch: what a `Persist` writes) stays on the replica."""

    votes: dict[int, bytes] = field(default_factory=dict)  # votes on the entry in this view, by member
    # The primary's own proposal: when building started, and how long it took (measured at
    # the next tick, whose time is fresh). The followers execute the same block, so the wait
    # for their votes allows twice that on top of the commit timeout.
    proposed_at_ms: int | None = None
    build_ms: int | None = None
    commits: dict[int, Commit] = field(default_factory=dict)  # follower votes for height final+1
    holders: set[int] = field(default_factory=set)  # members known to hold the entry's certificate
    finals: dict[int, bytes] = field(default_factory=dict)  # t >= 2: members' COMMITTED.holds signatures
    outbox: dict[int, Message] = field(default_factory=dict)  # proposal to retransmit, per follower
    early: list[tuple[int, Message]] = field(default_factory=list)  # this view's messages held until they can be used
    heard: set[int] = field(default_factory=set)  # members heard from in this view
    view_changes: dict[int, ViewChange] = field(default_factory=dict)  # VIEW-CHANGEs received, by sender
    vc_finals: dict[int, VcFinal] = field(default_factory=dict)  # VC-FINALs received, by member
    vc_final_sent: VcFinal | None = None
    confirms: dict[int, bytes] = field(default_factory=dict)  # VC-CONFIRM digests by member, its own too
    confirm_sent: VcConfirm | None = None
    faults_shared: set[int] = field(default_factory=set)  # replicas sent our proofs in this view
    my_view_change: ViewChange | None = None
    start: Start | None = None  # the selection, once every VC-FINAL is in
    new_view: NewView | None = None  # sent (primary) or waiting (follower)
    vc_started_ms: int = 0
    vc_deadline_ms: int = 0
    retransmit_at: int | None = None
    retransmits: int = 0  # retransmissions since the last progress (they back off)
    propose_at: int | None = None
    busy_since: int | None = None  # since when work has been pending (the stall clock)
    last_suspect: Suspect | None = None  # the signed SUSPECT that justifies this view (persisted)
    # The Propose or Check out (the node hands its outcome back before any other input);
    # a view change drops it, and its outcome is then ignored.
    awaiting: Building | Checking | None = None
    held_for_outcome: bool = False  # messages wait in `early` for that outcome
    pick_checked: bool = False  # the selection's entry executes here


class ReplicaCore:
    vs: ViewState  # the per-view part of the record (reset at each view change)

    def __init__(self, config: ConsensusConfig, *, index: int, key: KeyPair,
                 bookkeepers: list[bytes], chain_id: int, app: Application,
                 stored: StoredState, epoch: int = 1,
                 set_of: Callable[[int], Epoch] | None = None,
                 decode_budget: DecodeBudget | None = None) -> None:
        """`bookkeepers` (n = 2t+1, t from `config`) run the epoch starting at height
        `epoch`; `set_of(height)` gives the set of any other height (default: this one).
        `stored` is what the node's consensus storage holds (its last `Persist`).
        `decode_budget` is keyed by bookkeeper key; the node shares one with block sync
        (default: one of the replica's own, from `config`)."""
        assert len(bookkeepers) == 2 * config.t + 1, "XPaxos runs n = 2t+1 bookkeepers"
        assert bookkeepers[index] == key.public_key, "key is not bookkeeper `index`"
        self._config = config
        self._t = config.t
        self._n = len(bookkeepers)
        self._index = index
        self._key = key
        self._bookkeepers = bookkeepers
        self._chain_id = chain_id
        self._app = app
        self._epoch = epoch
        own = Epoch(epoch, tuple(bookkeepers), config.t)
        self._set_of = set_of or (lambda height: own)
        if stored.epoch != epoch:
            stored = StoredState(view=0, normal=True, entry=None, epoch=epoch)
        self.view = stored.view
        self.state = NORMAL if stored.normal else VIEW_CHANGE
        self._last_final = app.final_height()
        self._entry = stored.entry if self._current(stored.entry) else None
        self.view_changes = 0
        # Views failed since the final head last moved in which every member of the group
        # answered the view change: each doubles the commit and view-change timeouts (PBFT's
        # rule), so a machine or network slower than the defaults assume gets a view that
        # lasts long enough, instead of churning for ever. A view whose group holds a member
        # that never sent its VIEW-CHANGE failed on that member (crashed or cut off: XFT counts
        # it out of every synchronous group), not on the timeouts, and does not count
        # (docs/consensus.md "Failed views and the doubling").
        self._slow_views = 0
        # ... those views, by view, with the members never heard in them (SILENT_VIEWS_MAX).
        self._silent_members: dict[int, frozenset[int]] = {}
        # How long a block takes here from work pending to final (a moving average): the
        # timeouts stretch with it, so a loaded or slow machine is not taken for a dead one.
        self._cycle_ms = 0
        self._last_final_ms: int | None = None
        self.last_suspect_reason: str | None = None
        self._future: dict[tuple[int, str], Message] = {}
        self._clock_ms = 0  # the wall clock of the input being handled (set by each entry)
        # The peer (link sender) and time of the message being handled: what a block decoded
        # for it is charged to. None outside a handler (a timer re-preparing the selection).
        self._input: tuple[int, int] | None = None
        self._decode_budget = decode_budget or DecodeBudget(config.decode_bytes_per_s,
                                                            config.decode_burst_bytes)
        # The last decode charged: (message, peer key, bytes), given back by `_block_of_use`
        # (or taken by `_charge_of` for a block whose Check is out).
        self._charged: tuple[Message, bytes, int] | None = None
        self._final_message: tuple[tuple[int, bool], Message] | None = None
        # Proven faults (XFT §4.4), one proof per accused and kind: at most 2n, for the
        # epoch's life (the node keeps its own record for RPC across epochs).
        self.faults: dict[tuple[int, str], FaultNotice] = {}
        self._reset_view_state()
        self.vs.last_suspect = _decode_suspect(stored.suspect, self._n)

    # ------------------------------------------------------------------ bookkeeping

    def _reset_view_state(self) -> None:
        self.vs = ViewState()

    def _group(self, view: int) -> tuple[int, ...]:
        return synchronous_group(view, self._n, self._t)

    def _is_member(self, view: int, replica: int | None = None) -> bool:
        return (self._index if replica is None else replica) in self._group(view)

    def _is_primary(self) -> bool:
        return self._group(self.view)[0] == self._index

    def _followers(self) -> tuple[int, ...]:
        return self._group(self.view)[1:]

    def _others(self, members: tuple[int, ...]) -> list[int]:
        return [member for member in members if member != self._index]

    def _current(self, entry: Entry | None) -> bool:
        return entry is not None and entry.height == self._app.final_height() + 1

    def _pending_entry(self) -> Entry | None:
        """The entry of this view that is not final yet."""
        entry = self._entry
        if entry is None or not self._current(entry) or entry.view != self.view:
            return None
        return entry

    def _persist(self, actions: list[Action]) -> None:
        """Ask the node to write the state durably before it carries out what follows (the
        sends that commit this replica to it): handlers never touch storage themselves."""
        actions.append(Persist(self._stored_state()))

    def _stored_state(self) -> StoredState:
        suspect = msgpack.packb(self.vs.last_suspect.to_wire(), use_bin_type=True) \
            if self.vs.last_suspect is not None else b""
        return StoredState(self.view, self.state == NORMAL, self._entry, suspect, self._epoch)

    def _sign(self, message: Message) -> Message:
        return dataclasses.replace(message, epoch=self._epoch).signed(self._key)

    def _vote(self, view: int, height: int, block_hash: bytes) -> bytes:
        return self._key.sign(commit_message(self._chain_id, view, height, block_hash))

    def _valid_vote(self, replica: int, vote: bytes, view: int, height: int,
                    block_hash: bytes) -> bool:
        message = commit_message(self._chain_id, view, height, block_hash)
        return is_valid_signature(self._bookkeepers[replica], vote, message)

    def _send(self, to: int, message: Message, actions: list[Action]) -> None:
        actions.append(Send(to, message))

    def _output(self, actions: list[Action]) -> list[Action]:
        return actions

    # ------------------------------------------------------------------ hooks
    # An honest replica's choices at the points where the test-only Byzantine replicas
    # (consensus/byzantine.py) choose otherwise; nothing else in the core knows of them.

    def _built(self, block: Block) -> Block:
        """The proposal as it goes out, from the block the application built."""
        return block

    def _proposal_for(self, number: int, prepare: Message, block: Block) -> Message:
        """The PREPARE for the `number`-th follower."""
        return prepare

    def _verdict(self, error: LedgerError | None) -> LedgerError | None:
        """Whether a proposal or the selected entry fails, from how its `Check` went."""
        return error

    def _new_view_pick(self, start: Start) -> Entry | None:
        """The entry a new primary re-prepares: the selection's."""
        return start.pick

    def _certified_as_follower(self, entry: Entry, actions: list[Action]) -> bool:
        """t = 1: a follower holds the full certificate of `entry` and is about to log it
        and vote; True when it does something else instead."""
        return False

    def _busy(self) -> bool:
        # With empty blocks on, a block is always due: a silent primary must be suspected
        # even when no transaction is pending.
        return self._config.empty_blocks or self._app.pending_transactions() > 0 or \
            self._pending_entry() is not None

    def _update_busy(self, now_ms: int) -> None:
        if not self._busy():
            self.vs.busy_since = None
        elif self.vs.busy_since is None:
            self.vs.busy_since = now_ms
            if self.vs.proposed_at_ms is not None and self.vs.build_ms is None:
                self.vs.build_ms = now_ms - self.vs.proposed_at_ms

    def _stall_deadline(self) -> int | None:
        if self.state != NORMAL or not self._is_member(self.view) or self.vs.busy_since is None or \
                self.vs.awaiting is not None:  # (its outcome comes first, then the clock is looked at)
            return None
        allowance = self._config.empty_block_interval_ms if self._config.empty_blocks else 0
        allowance += 2 * (self.vs.build_ms or 0)
        return self.vs.busy_since + self._backed_off(self._config.commit_timeout_ms) + allowance

    def _backed_off(self, timeout_ms: int) -> int:
        """`timeout_ms` plus twice the recent block cycle (at most CYCLE_ALLOWANCE_MAX times
        the timeout or CYCLE_ALLOWANCE_BASE_MS, the larger), doubled for each slow view
        since the last final block (`_leave_view`), up to 2**TIMEOUT_DOUBLINGS_MAX times."""
        cap = CYCLE_ALLOWANCE_MAX * max(timeout_ms, CYCLE_ALLOWANCE_BASE_MS)
        stretched = timeout_ms + min(2 * self._cycle_ms, cap)
        return stretched << min(self._slow_views, TIMEOUT_DOUBLINGS_MAX)

    def _leave_view(self) -> None:
        """The view is left without a final block since the last one (a final block resets
        the count). It counts as slow when this replica, a member, had the VIEW-CHANGE of
        every member (itself included; a member's VC-FINAL carries its VIEW-CHANGE): all
        answered, too slowly for the timeouts. A view entered without a view change (view 0,
        a view joined from a certificate, a restart in the normal state) does not count: the
        first view change after a crash keeps the floors. A view with a member never heard
        is remembered (`_late_message`)."""
        if not self._is_member(self.view) or self.vs.my_view_change is None:
            return
        silent = frozenset(self._group(self.view)) - set(self.vs.view_changes) - set(self.vs.vc_finals)
        if not silent:
            self._slow_views += 1
            return
        self._silent_members[self.view] = silent
        for view in sorted(self._silent_members)[:-SILENT_VIEWS_MAX]:
            del self._silent_members[view]

    def _late_message(self, message: Message) -> None:
        """A message (its signature checked) of a view this replica left: from a member it
        never heard in that view, it shows that member slow, not dead, and the view counts
        as slow after all (once)."""
        view = view_of(message)
        if message.sender in self._silent_members.get(view, frozenset()):
            del self._silent_members[view]
            self._slow_views += 1

    # ------------------------------------------------------------------ dispatch

    def _handle(self, sender: int, message: Message, now_ms: int,
                actions: list[Action]) -> None:
        if message.epoch != self._epoch:
            return  # another set's: its indexes and views are not this epoch's
        if not 0 <= message.sender < self._n or not 0 <= sender < self._n:
            actions.append(Rejected(sender, RejectReason.UNKNOWN_SENDER,
                                    f"sender {message.sender} via {sender}"))
            return
        if not message.verify_signature(self._bookkeepers[message.sender]):
            actions.append(Rejected(sender, RejectReason.BAD_SIGNATURE, message.TYPE))
            # Only a direct sender is to blame: a forwarder may relay a forgery.
            if sender == message.sender:
                self._suspect_member(sender, "bad signature", now_ms, actions)
            return
        outer, self._input = self._input, (sender, now_ms)
        try:
            self._dispatch(sender, message, now_ms, actions)
        except Suspicion as suspicion:
            actions.append(Rejected(sender, suspicion.reason, suspicion.detail))
            self._suspect_member(message.sender, str(suspicion), now_ms, actions)
        except OverBudget as over:
            actions.append(Rejected(sender, RejectReason.DECODE_BUDGET, str(over)))
        finally:
            self._input = outer

    def _block(self, message: Message, name: str) -> Block | None:
        """The block in field `name` of a peer's message, decoded and checked (once: the
        message keeps it). Called only once the cheap fields say it is of use; a decode not
        done before is charged to the peer the input came from (consensus/admission.py)."""
        cost = message.decoding_bytes(name)
        if cost and self._input is not None:
            peer, now_ms = self._input
            if not self._decode_budget.take(self._bookkeepers[peer], cost, now_ms):
                raise OverBudget(f"{message.TYPE}: a block of {cost} bytes from bookkeeper {peer}")
            self._charged = (message, self._bookkeepers[peer], cost)
        try:
            block = message.decoded_block(name)
            if block is not None:
                check_block(block, self._n)
        except (DecodeError, InvalidMessage) as exc:
            raise Suspicion(RejectReason.BAD_BLOCK, f"undecodable block: {exc}") from exc
        return block

    def _block_of_use(self, message: Message) -> None:
        """The block just decoded for `message` is of use (a proposal that executes, a final
        block, a certified log entry): the chain's own work, given back to its sender's
        budget (consensus/admission.py)."""
        self._give_back(self._charge_of(message))

    def _charge_of(self, message: Message) -> tuple[bytes, int] | None:
        """The decode charged for `message`'s block (peer key, bytes), taken from the slot."""
        charged, self._charged = self._charged, None
        return (charged[1], charged[2]) if charged is not None and charged[0] is message else None

    def _give_back(self, charge: tuple[bytes, int] | None) -> None:
        if charge is not None:
            self._decode_budget.give_back(*charge)

    # ------------------------------------------------------------------ the application's turn
    # Building and executing blocks are the node's (runtime/, via consensus/loop.py): the
    # replica asks with an action and goes on from the outcome, an input of its own.

    def _ask_proposal(self, height: int, budget_ms: int | None, now_ms: int,
                      actions: list[Action]) -> None:
        assert self.vs.awaiting is None, "one Propose or Check out at a time"
        self.vs.awaiting = Building(self.view, height, now_ms)
        actions.append(Propose(height, self.view, self._index, self._clock_ms, budget_ms))

    def _ask_check(self, checking: Checking, actions: list[Action]) -> None:
        assert self.vs.awaiting is None, "one Propose or Check out at a time"
        self.vs.awaiting = checking
        actions.append(Check(checking.block))

    def _asked(self, actions: list[Action]) -> list[Action]:
        """The output, checked for the order the node relies on: at most one Propose or
        Check, and never with a Finalize (it would run on a head the replica did not see)."""
        asks = [action for action in actions if isinstance(action, Propose | Check)]
        assert len(asks) <= 1 and not (asks and any(isinstance(a, Finalize) for a in actions)), \
            f"a Propose or Check must be alone and come without a Finalize: {actions}"
        return self._output(actions)

    def _stash_future(self, message: Message) -> None:
        """Hold a message of a later view, undecoded, for when this replica gets there: one
        per (sender, type), the latest view, at most EARLY_BYTES_MAX per sender; only what
        that view's roles allow (a PREPARE of view v from v's primary, ...)."""
        if role_refusal(message.TYPE, view_of(message), message.sender, self._index, self._n,
                        self._t) is not None:
            return
        key = (message.sender, message.TYPE)
        kept = self._future.get(key)
        if kept is not None and view_of(kept) > view_of(message):
            return
        held = sum(m.payload_bytes() for k, m in self._future.items()
                   if k[0] == message.sender and k != key)
        if held + message.payload_bytes() <= EARLY_BYTES_MAX:
            self._future[key] = message

    def _hold_early(self, sender: int, message: Message) -> None:
        held = sum(early.payload_bytes() for _, early in self.vs.early)
        if len(self.vs.early) < EARLY_MESSAGES_MAX and \
                held + message.payload_bytes() <= EARLY_BYTES_MAX:
            self.vs.early.append((sender, message))

    def _replay_early(self, now_ms: int, actions: list[Action]) -> None:
        early, self.vs.early = self.vs.early, []
        self.vs.held_for_outcome = False
        for number, (sender, message) in enumerate(early):
            if self.vs.awaiting is not None:
                # A Check or Propose is out (this replay asked it): the rest wait for its
                # outcome, as every input does.
                self.vs.early = early[number:] + self.vs.early
                self.vs.held_for_outcome = True
                return
            if any(isinstance(action, Finalize) for action in actions):
                # The head moves once the node has stored it: the rest (a PREPARE of the
                # next height, say) wait for that, at the next input (_observe_app).
                self.vs.early = early[number:] + self.vs.early
                return
            self._handle(sender, message, now_ms, actions)

    # ------------------------------------------------------------------ across the halves
    # What one half calls in the other (defined in consensus/common.py, consensus/viewchange.py
    # or consensus/replica.py); declared here so that each half type-checks alone.

    def _dispatch(self, sender: int, message: Message, now_ms: int,
                  actions: list[Action]) -> None:
        raise NotImplementedError  # consensus/replica.py

    def _schedule_proposal(self, now_ms: int, *, batched: bool = False) -> None:
        raise NotImplementedError  # consensus/common.py

    def _accept_proposal(self, height: int, proposal: Prepare | NewView, now_ms: int,
                         actions: list[Action]) -> None:
        raise NotImplementedError  # consensus/common.py

    def _send_my_commit(self, entry: Entry, actions: list[Action]) -> None:
        raise NotImplementedError  # consensus/common.py

    def _suspect_member(self, member: int, reason: str, now_ms: int,
                        actions: list[Action]) -> None:
        raise NotImplementedError  # consensus/viewchange.py

    def _view_change_message(self) -> ViewChange:
        raise NotImplementedError  # consensus/viewchange.py

    def _maybe_select(self, now_ms: int, actions: list[Action]) -> None:
        raise NotImplementedError  # consensus/viewchange.py

    def _retransmit_view_change(self, actions: list[Action]) -> None:
        raise NotImplementedError  # consensus/viewchange.py

    # ------------------------------------------------------------------ proven faults

    def _record_fault(self, notice: FaultNotice, actions: list[Action], *,
                      found_here: bool = True) -> None:
        """Keep a checked proof, report it once, and forward it (signed as its messenger) to
        every other replica, so that each can check it and name the accused too."""
        key = (notice.accused, notice.kind)
        if key in self.faults:
            return
        forwarded = self._sign(dataclasses.replace(notice, sender=self._index))
        assert isinstance(forwarded, FaultNotice)
        self.faults[key] = forwarded
        actions.append(FaultDetected(forwarded, found_here))
        if forwarded.payload_bytes() <= FAULT_NOTICE_BYTES_MAX:
            for replica in self._others(tuple(range(self._n))):
                self._send(replica, forwarded, actions)

    def _on_fault(self, sender: int, message: FaultNotice, actions: list[Action]) -> None:
        """A forwarded proof: checked here, never taken on the messenger's word."""
        if (message.accused, message.kind) in self.faults:
            return
        try:
            verify_fault(message, chain_id=self._chain_id,
                         epoch=Epoch(self._epoch, tuple(self._bookkeepers), self._t))
        except InvalidFault as exc:
            actions.append(Rejected(sender, RejectReason.BAD_FAULT_PROOF, str(exc)))
            return
        self._record_fault(message, actions, found_here=False)

    # ------------------------------------------------------------------ shared

    def _checked_certificate(self, raw: bytes, height: int, block_hash: bytes, *,
                             final: bool = False) -> CommitCertificate:
        """The decoded certificate; `final`: with its finality proof checked as well. By
        the set of that height (the last block of the previous epoch is another's)."""
        verify = verify_finality if final else verify_certificate
        certifiers = self._set_of(height)
        try:
            certificate = decode(raw, CommitCertificate)
            verify(certificate, chain_id=self._chain_id, height=height,
                   block_hash=block_hash, bookkeepers=list(certifiers.keys), t=certifiers.t)
        except (DecodeError, InvalidCertificate) as exc:
            raise Suspicion(RejectReason.BAD_CERTIFICATE, f"bad certificate: {exc}") from exc
        return certificate

    def _finalize(self, block: Block, certificate: CommitCertificate,
                  actions: list[Action]) -> Block:
        """Ask the node to store `block` as final, with the record it makes true: the log
        holds nothing at or below the final head (checkpoints are folded into finality), and
        a block certified in a later view puts this replica in that view. The block with its
        certificate, for the FINALs that follow."""
        final_block = block.with_certificate(certificate)
        self._entry = None
        joined = self._join_view_of(final_block)
        actions.append(Finalize(final_block, self._stored_state()))
        if joined:
            actions.append(ViewChanged(self.view))
        return final_block

    def _join_view_of(self, head: Block) -> bool:
        """A final block certified in a later view proves that view's group is running; a
        replica that slept through its view change (restart, partition) joins it rather
        than report and act on a view the others have left. Whether it did."""
        certified = head.certificate[0].view if head.certificate else 0
        if certified <= self.view or head.number < self._epoch:
            return False  # (a view of the previous epoch is no view of this one)
        self.view = certified
        self.state = NORMAL
        self._reset_view_state()
        return True

    def _final_certificate(self, height: int) -> bytes:
        if height == 0:
            return b""
        block = self._app.final_block(height)
        assert block is not None and block.certificate, "a final block has a certificate"
        encoded: bytes = rlp.encode(block.certificate[0])
        return encoded

