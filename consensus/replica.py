"""One XPaxos (XFT) replica as a sans-IO state machine: no sockets, no clock, no threads.

The node feeds it messages, transactions and the time, carries out the returned actions
(consensus/actions.py) and calls `on_tick` at `next_deadline()`. Time comes in twice with
every input: `now_ms`, a monotonic clock for every timer, and `clock_ms`, the node's wall
clock, for block time only: a primary stamps its proposal with it (chain/ keeps block time
strictly increasing: max(parent + 1, clock)), and a member refuses (suspects) a block
stamped more than `clock_drift_ms_max` ahead of its own clock, so a primary with a clock
far ahead cannot date the chain into the future. The paper's reference is
arXiv 1502.05831 (Algorithms 1-6); docs/consensus.md sums it up.

Common case (sequence number = block height, D(req) = block hash, one block per height,
no pipelining). The primary of view v proposes block h+1 only once h is final at the
primary: it logs the block with its own vote (a signature on commit_message) and sends
PREPARE to its t followers. A follower checks the height, the vote and the block
(`app.check` executes it on the final head; the header's roots make the hash cover the
execution result), logs it and answers COMMIT with its own vote: to the primary when
t = 1, to every active replica when t >= 2. A replica *commits* (the paper's commit log)
when it holds the full certificate, every member's vote. A block is *final* only once
every member of the group holds that certificate, because then any later view change
(n - t logs, the 2Δ wait) recovers it outside anarchy:
  - t = 1: the follower holds the certificate as soon as it votes, so the primary
    finalizes on its COMMIT and then sends FINAL (no block inside) to the follower right
    away; this is how the follower learns finality. A follower that misses it resends its
    COMMIT, and a COMMIT for a final height is answered with FINAL.
  - t >= 2: a replica holding the certificate tells the other members with COMMITTED
    (which hands them the certificate too); it finalizes when every member did.
Each final block is stored with its finality proof (chain.certificate.verify_finality):
t = 1 the primary's signature on final_message, signed when it finalizes and sent in
FINAL; t >= 2 every member's, each carried in its COMMITTED. A certificate alone never
makes a block final here (FINAL, VIEW-CHANGE, block sync): with t = 1 a follower holds
one as soon as it votes, so a Byzantine follower could otherwise pass off a block it
withheld its COMMIT for.
Passive replicas get each final block from the primary (FINAL carrying the block: lazy
replication) and otherwise catch up by block sync (consensus/sync.py, via `CatchUp`).
Only final blocks reach `app.finalize`, so the ledger never rolls back. A committed but
not final entry lives only in the consensus log (storage); when a view change selects
another block for that height the replica drops its entry: that is how it rolls back a
committed-but-not-final suffix.

View change. A member of the active group suspects on an invalid or out-of-order message,
a bad signature, a conflicting vote, no progress on pending work for commit_timeout_ms,
a view change that does not finish in view_change_timeout_ms, or a NEW-VIEW that does not
match its own selection; it sends SUSPECT(v) to all. SUSPECT(v) is accepted only from a
member of sg_v and forwarded; each replica then sends VIEW-CHANGE(v+1, final head, commit
log) to sg_{v+1}. A new active replica waits for all n or for 2Δ and n - t, sends
VC-FINAL to the other new actives, merges all of theirs and selects (consensus/
viewchange.py). The new primary re-prepares the pick in NEW-VIEW; followers vote for it
only if it equals their own selection. The pick is final before any new block is
proposed. A view change that times out is suspected in turn, so views advance in order
until a group of correct, synchronous replicas is reached.

Checkpoints (§4.5) are folded into finality: the log holds nothing below the final head,
and each final block carries t+1 signatures, the quorum a CHKPT round would collect.

Epochs (governance, docs/consensus.md). A replica runs one bookkeeper set, from its epoch's
first height on: it signs every message with that epoch, ignores messages of any other,
starts the epoch in view 0 (stored state of another epoch is not resumed), and checks a
certificate of another height with the set that certified it (`set_of`: the last block of
the previous epoch is the final head a VIEW-CHANGE of this one may carry). The node builds
a new replica when the next height belongs to another set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import msgpack
import rlp

from chain.certificate import (
    commit_message,
    final_message,
    synchronous_group,
    verify_certificate,
    verify_finality,
)
from chain.epochs import Epoch
from chain.errors import DecodeError, InvalidCertificate, LedgerError
from chain.types import Block, CommitCertificate, Vote, decode
from consensus.actions import (
    Action,
    CatchUp,
    Finalized,
    Persist,
    Rejected,
    Send,
    Suspected,
    ViewChanged,
)
from consensus.app import Application
from consensus.config import ConsensusConfig
from consensus.errors import RejectReason
from consensus.log import Entry
from consensus.messages import (
    VIEW_MAX,
    Commit,
    Committed,
    Final,
    Message,
    NewView,
    Prepare,
    Suspect,
    VcFinal,
    ViewChange,
    message_from_wire,
    view_of,
)
from consensus.storage import StoredState
from consensus.viewchange import Start, merge, select
from crypto.keys import KeyPair, is_valid_signature

NORMAL = "normal"
VIEW_CHANGE = "view-change"
EARLY_MESSAGES_MAX = 64  # current-view messages held until the replica can use them
# ... and their bytes: 64 PREPAREs near the frame limit from a Byzantine primary would hold
# 256 MB.
EARLY_BYTES_MAX = 16 * 1024 * 1024
RETRANSMIT_DOUBLINGS_MAX = 3  # retransmissions back off to 8x retransmit_ms at most
SLOW_START_SHARE = 8  # before any measured block cycle, a proposal's budget is commit_timeout_ms / 8
TIMEOUT_DOUBLINGS_MAX = 4  # at most 16x the configured commit and view-change timeouts
CYCLE_ALLOWANCE_MAX = 4  # the block-cycle allowance adds at most 4x a timeout


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


def _block_field(message: Message, name: str) -> Block | None:
    """The block a message carries, decoded once (message_from_wire did it)."""
    try:
        return message.decoded_block(name)
    except DecodeError as exc:
        raise Suspicion(RejectReason.BAD_BLOCK, f"undecodable block: {exc}") from exc


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


class Replica:
    # Per-view state, reset by _reset_view_state when the view changes.
    _votes: dict[int, bytes]
    _commits: dict[int, Commit]
    _holders: set[int]
    _finals: dict[int, bytes]
    _outbox: dict[int, Message]
    _early: list[tuple[int, Message]]
    _heard: set[int]
    _view_changes: dict[int, ViewChange]
    _vc_finals: dict[int, VcFinal]
    _vc_final_sent: VcFinal | None
    _my_view_change: ViewChange | None
    _start: Start | None
    _new_view: NewView | None
    _retransmit_at: int | None
    _retransmits: int
    _propose_at: int | None
    _busy_since: int | None
    _last_suspect: Suspect | None
    _vc_started_ms: int
    _vc_deadline_ms: int

    def __init__(self, config: ConsensusConfig, *, index: int, key: KeyPair,
                 bookkeepers: list[bytes], chain_id: int, app: Application,
                 stored: StoredState, epoch: int = 1,
                 set_of: Callable[[int], Epoch] | None = None) -> None:
        """`bookkeepers` (n = 2t+1, t from `config`) run the epoch starting at height
        `epoch`; `set_of(height)` gives the set of any other height (default: this one).
        `stored` is what the node's consensus storage holds (its last `Persist`)."""
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
        # Views entered since the final head last moved: each one that fails doubles the
        # commit and view-change timeouts (PBFT's rule), so a machine slower than the
        # defaults assume gets a view that lasts long enough, instead of churning for ever.
        self._views_without_final = 0
        # How long a block takes here from work pending to final (a moving average): the
        # timeouts stretch with it, so a loaded or slow machine is not taken for a dead one.
        self._cycle_ms = 0
        self._last_final_ms: int | None = None
        # The primary's own proposal: when building started, and how long it took (measured
        # at the next tick, whose time is fresh). The followers execute the same block, so
        # the wait for their votes allows twice that on top of the commit timeout.
        self._proposed_at_ms: int | None = None
        self._build_ms: int | None = None
        self.last_suspect_reason: str | None = None
        self._future: dict[tuple[int, str], Message] = {}
        self._clock_ms = 0  # the wall clock of the input being handled (set by each entry)
        self._final_message: tuple[tuple[int, bool], Message] | None = None
        self._reset_view_state()
        self._last_suspect = _decode_suspect(stored.suspect, self._n)

    # ------------------------------------------------------------------ public API

    def start(self, now_ms: int, clock_ms: int) -> list[Action]:
        self._clock_ms = clock_ms
        actions: list[Action] = []
        if self.state == VIEW_CHANGE:
            self._enter_view(self.view, now_ms, actions, restarted=True)
        else:
            self._busy_since = None
            self._update_busy(now_ms)
            self._retransmit_at = now_ms + self._config.retransmit_ms
            pending = self._pending_entry()
            if pending is not None and self._is_primary():
                # Restarted with a proposal in flight: resend that one, never another.
                self._votes = {self._index: pending.prepare_vote}
                prepare = self._sign(Prepare(sender=self._index, view=self.view,
                                             height=pending.height, block=pending.block_raw,
                                             vote=pending.prepare_vote))
                self._outbox = {follower: prepare for follower in self._followers()}
            self._schedule_proposal(now_ms)
        return self._output(actions)

    def on_message(self, sender: int, message: Message, now_ms: int,
                   clock_ms: int) -> list[Action]:
        self._clock_ms = clock_ms
        actions: list[Action] = []
        self._observe_app(now_ms, actions)
        self._handle(sender, message, now_ms, actions)
        self._update_busy(now_ms)
        return self._output(actions)

    def on_transactions(self, now_ms: int, clock_ms: int) -> list[Action]:
        self._clock_ms = clock_ms
        actions: list[Action] = []
        self._observe_app(now_ms, actions)
        self._update_busy(now_ms)
        self._schedule_proposal(now_ms)
        return self._output(actions)

    def on_tick(self, now_ms: int, clock_ms: int) -> list[Action]:
        self._clock_ms = clock_ms
        actions: list[Action] = []
        self._observe_app(now_ms, actions)
        self._update_busy(now_ms)
        if self.state == VIEW_CHANGE and self._is_member(self.view):
            if now_ms >= self._vc_deadline_ms:
                self._suspect("view change timed out", now_ms, actions)
            else:
                self._maybe_send_vc_final(now_ms, actions)
        if self._retransmit_at is not None and now_ms >= self._retransmit_at:
            self._retransmit(now_ms, actions)
        if self._propose_at is not None and now_ms >= self._propose_at:
            self._propose_at = None
            self._propose(now_ms, actions)
        stalled = self._stall_deadline()
        if stalled is not None and now_ms >= stalled:
            self._suspect("no progress on pending work", now_ms, actions)
        return self._output(actions)

    def next_deadline(self) -> int | None:
        deadlines = [self._retransmit_at, self._propose_at, self._stall_deadline()]
        if self._busy_since is None and self.state == NORMAL and self._is_member(self.view) and self._busy():
            deadlines.append(0)  # start the stall clock at once, with the caller's fresh time
        if self.state == VIEW_CHANGE and self._is_member(self.view):
            deadlines.append(self._vc_deadline_ms)
            # The 2Δ wait matters only once n - t VIEW-CHANGEs are in; before, a message
            # (not the clock) is what can move the view change on.
            if self._vc_final_sent is None and \
                    len(self._view_changes) >= self._n - self._t:
                deadlines.append(self._vc_started_ms + 2 * self._config.delta_ms)
        present = [deadline for deadline in deadlines if deadline is not None]
        return min(present) if present else None

    @property
    def status(self) -> Status:
        group = self._group(self.view)
        return Status(self.view, group[0], group, self._index in group,
                      self._app.final_height(), self.view_changes, self.state,
                      self.last_suspect_reason)

    # ------------------------------------------------------------------ bookkeeping

    def _reset_view_state(self) -> None:
        self._votes = {}  # votes on the entry in this view, by member
        self._proposed_at_ms, self._build_ms = None, None
        self._commits = {}  # follower votes for height final+1
        self._holders = set()  # members known to hold the entry's certificate
        self._finals = {}  # t >= 2: their signatures on final_message (COMMITTED.holds)
        self._outbox = {}  # proposal to retransmit, per follower
        self._early = []
        self._heard = set()
        self._view_changes = {}
        self._vc_finals = {}
        self._vc_final_sent = None
        self._my_view_change = None
        self._start = None
        self._new_view = None  # sent (primary) or waiting (follower)
        self._vc_started_ms = 0
        self._vc_deadline_ms = 0
        self._retransmit_at = None
        self._retransmits = 0  # retransmissions since the last progress (they back off)
        self._propose_at = None
        self._busy_since = None
        self._last_suspect = None

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
        suspect = msgpack.packb(self._last_suspect.to_wire(), use_bin_type=True) \
            if self._last_suspect is not None else b""
        actions.append(Persist(StoredState(self.view, self.state == NORMAL, self._entry, suspect,
                                           self._epoch)))

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

    def _check_block(self, block: Block) -> None:
        """Execute `block` on the final head; LedgerError when it is invalid."""
        self._app.check(block)

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
            self._busy_since = None
        elif self._busy_since is None:
            self._busy_since = now_ms
            if self._proposed_at_ms is not None and self._build_ms is None:
                self._build_ms = now_ms - self._proposed_at_ms

    def _stall_deadline(self) -> int | None:
        if self.state != NORMAL or not self._is_member(self.view) or self._busy_since is None:
            return None
        allowance = self._config.empty_block_interval_ms if self._config.empty_blocks else 0
        allowance += 2 * (self._build_ms or 0)
        return self._busy_since + self._backed_off(self._config.commit_timeout_ms) + allowance

    def _backed_off(self, timeout_ms: int) -> int:
        """`timeout_ms` plus twice the recent block cycle (at most CYCLE_ALLOWANCE_MAX times
        the timeout), doubled for each failed view since the last final block, up to
        2**TIMEOUT_DOUBLINGS_MAX times (the first view change keeps the base timeout)."""
        stretched = timeout_ms + min(2 * self._cycle_ms, CYCLE_ALLOWANCE_MAX * timeout_ms)
        doublings = min(max(self._views_without_final - 1, 0), TIMEOUT_DOUBLINGS_MAX)
        return stretched << doublings

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
        try:
            self._dispatch(sender, message, now_ms, actions)
        except Suspicion as suspicion:
            actions.append(Rejected(sender, suspicion.reason, suspicion.detail))
            self._suspect_member(message.sender, str(suspicion), now_ms, actions)

    def _dispatch(self, sender: int, message: Message, now_ms: int,
                  actions: list[Action]) -> None:
        if isinstance(message, Final):
            self._on_final(message, now_ms, actions)
            return
        if isinstance(message, Suspect):
            self._on_suspect(sender, message, now_ms, actions)
            return
        view = view_of(message)
        if view < self.view:
            return  # from a view this replica left: harmless, and it already acted on it
        if view > self.view:
            self._stash_future(message)
            return
        self._heard.add(message.sender)
        if isinstance(message, ViewChange):
            self._on_view_change(message, now_ms, actions)
        elif isinstance(message, VcFinal):
            self._on_vc_final(message, now_ms, actions)
        elif isinstance(message, NewView):
            self._on_new_view(message, now_ms, actions)
        elif self.state == VIEW_CHANGE:
            self._hold_early(sender, message)
        elif isinstance(message, Prepare):
            self._on_prepare(sender, message, now_ms, actions)
        elif isinstance(message, Commit):
            self._on_commit(message, now_ms, actions)
        elif isinstance(message, Committed):
            self._on_committed(message, now_ms, actions)

    def _stash_future(self, message: Message) -> None:
        # One message per (sender, type), the latest view: bounded by n * types.
        key = (message.sender, message.TYPE)
        kept = self._future.get(key)
        if kept is None or view_of(kept) <= view_of(message):
            self._future[key] = message

    def _hold_early(self, sender: int, message: Message) -> None:
        held = sum(early.payload_bytes() for _, early in self._early)
        if len(self._early) < EARLY_MESSAGES_MAX and \
                held + message.payload_bytes() <= EARLY_BYTES_MAX:
            self._early.append((sender, message))

    def _replay_early(self, now_ms: int, actions: list[Action]) -> None:
        early, self._early = self._early, []
        for sender, message in early:
            self._handle(sender, message, now_ms, actions)

    # ------------------------------------------------------------------ common case

    def _schedule_proposal(self, now_ms: int) -> None:
        if self.state != NORMAL or not self._is_primary() or self._current(self._entry):
            return
        if self._propose_at is not None:
            return
        if self._app.pending_transactions() > 0:
            self._propose_at = now_ms + self._config.batch_timeout_ms
        elif self._config.empty_blocks:
            self._propose_at = now_ms + self._config.empty_block_interval_ms

    def _propose(self, now_ms: int, actions: list[Action]) -> None:
        if self.state != NORMAL or not self._is_primary() or self._current(self._entry):
            return
        height = self._app.final_height() + 1
        # Slow start: until one block cycle has been measured here (a fresh start), a small
        # block, so that a machine much slower than the timeouts assume shows it on a block
        # that fits them; the timeouts then stretch with the cycle (_backed_off).
        budget_ms = None if self._cycle_ms else self._config.commit_timeout_ms // SLOW_START_SHARE
        block = self._app.propose(height, self.view, self._index, self._clock_ms, budget_ms)
        if block is None:
            self._schedule_proposal(now_ms)
            return
        block = self._built(block)
        raw = block.encoded()
        vote = self._vote(self.view, height, block.hash)
        self._entry = Entry.create(self.view, raw, vote, block=block)
        self._votes = {self._index: vote}
        self._holders, self._finals = set(), {}
        # Proposing is progress: the stall clock restarts at the next tick, after this
        # build (which may have taken seconds on a starved machine; now_ms is from before).
        self._busy_since = None
        self._proposed_at_ms, self._build_ms = now_ms, None
        self._persist(actions)  # the PREPARE carries a vote: log before sending it
        prepare = self._sign(Prepare(sender=self._index, view=self.view, height=height,
                                     block=raw, vote=vote))
        for number, follower in enumerate(self._followers()):
            proposal = self._proposal_for(number, prepare, block)
            self._outbox[follower] = proposal
            self._send(follower, proposal, actions)
        self._retransmit_at = now_ms + self._config.retransmit_ms

    def _on_prepare(self, sender: int, message: Prepare, now_ms: int,
                    actions: list[Action]) -> None:
        if message.sender != self._group(self.view)[0] or self._is_primary():
            raise Suspicion(RejectReason.NOT_FROM_PRIMARY, "PREPARE not from the primary")
        pending = self._pending_entry()
        if pending is not None and message.height == pending.height + 1:
            # The FINAL of the pending height was lost: ask again, use this one after.
            self._hold_early(sender, message)
            self._send_my_commit(pending, actions)
            return
        self._accept_proposal(message.height, message, now_ms, actions)

    def _accept_proposal(self, height: int, proposal: Prepare | NewView, now_ms: int,
                         actions: list[Action]) -> None:
        raw, vote = proposal.block, proposal.vote
        final = self._app.final_height()
        pending = self._pending_entry()
        if height <= final:
            return
        if pending is not None and pending.height == height:
            if raw != pending.block_raw:
                raise Suspicion(RejectReason.CONFLICT, f"two proposals for height {height}")
            self._send_my_commit(pending, actions)
            return
        if height != final + 1:
            raise Suspicion(RejectReason.OUT_OF_SEQUENCE,
                            f"sequence number {height} skips past {final + 1}")
        block = _block_field(proposal, "block")
        if block is None:
            raise Suspicion(RejectReason.BAD_BLOCK, "a proposal without a block")
        entry = Entry.create(self.view, raw, vote, block=block)
        if entry.height != height:
            raise Suspicion(RejectReason.BAD_BLOCK, "block number differs from the sequence number")
        ahead_ms = entry.block.header.timestamp_ms - self._clock_ms
        if ahead_ms > self._config.clock_drift_ms_max:
            # Refused before voting: the block time is what contracts read as "now".
            raise Suspicion(RejectReason.CLOCK_AHEAD,
                            f"block time {ahead_ms} ms ahead of this replica's clock "
                            f"(clock_drift_ms_max {self._config.clock_drift_ms_max})")
        primary = self._group(self.view)[0]
        if not self._valid_vote(primary, vote, self.view, height, entry.block_hash):
            raise Suspicion(RejectReason.BAD_VOTE, "bad vote of the primary")
        try:
            self._check_block(entry.block)
        except LedgerError as exc:
            raise Suspicion(RejectReason.INVALID_BLOCK, f"invalid block: {exc}") from exc
        my_vote = self._vote(self.view, height, entry.block_hash)
        self._votes = {primary: vote, self._index: my_vote}
        if self._t == 1:
            # Both votes are here: the follower has committed (holds the certificate).
            entry = entry.with_certificate(self._certificate(self._votes))
            self._holders = {self._index}
            if self._certified_as_follower(entry, actions):
                return
        if self._entry is None or self._entry.block_hash != entry.block_hash:
            # A new valid proposal is progress: the stall clock restarts at the next tick,
            # whose time comes after this replica executed the block (`now_ms` is from
            # before), so its own slowness under load is not counted against the primary.
            self._busy_since = None
        self._entry = entry
        self._persist(actions)  # log before the COMMIT leaves
        self._send_my_commit(entry, actions)
        self._retransmit_at = now_ms + self._config.retransmit_ms
        self._check_commits(now_ms, actions)

    def _send_my_commit(self, entry: Entry, actions: list[Action]) -> None:
        commit = self._sign(Commit(sender=self._index, view=entry.view, height=entry.height,
                                   block_hash=entry.block_hash,
                                   vote=self._vote(entry.view, entry.height,
                                                   entry.block_hash)))
        targets = self._group(self.view)[:1] if self._t == 1 else self._group(self.view)
        for member in self._others(targets):
            self._send(member, commit, actions)

    def _on_commit(self, message: Commit, now_ms: int, actions: list[Action]) -> None:
        if message.sender not in self._followers():
            raise Suspicion(RejectReason.NOT_A_MEMBER, "COMMIT from a replica that is no follower")
        if not self._valid_vote(message.sender, message.vote, message.view, message.height,
                                message.block_hash):
            raise Suspicion(RejectReason.BAD_VOTE, "bad vote in COMMIT")
        final = self._app.final_height()
        if message.height <= final:
            self._send_final(message.sender, message.height, with_block=False,
                             actions=actions)
            return
        if message.height == final + 1:
            self._commits[message.sender] = message
            self._check_commits(now_ms, actions)

    def _check_commits(self, now_ms: int, actions: list[Action]) -> None:
        entry = self._pending_entry()
        if entry is None:
            return
        for member, commit in self._commits.items():
            if commit.height != entry.height:
                continue
            if commit.block_hash != entry.block_hash:
                raise Suspicion(RejectReason.CONFLICT, f"COMMIT of {member} is for another block")
            self._votes[member] = commit.vote
        if not set(self._group(self.view)) <= set(self._votes):
            return
        if self._t == 1:
            if not self._is_primary():
                return  # the follower learns finality from the primary's FINAL only
            # The follower held the certificate when it voted, the primary holds it now.
            self._holders = set(self._group(self.view))
        elif not entry.certificate:
            self._adopt_certificate(entry, self._certificate(self._votes), actions)
        self._check_final(now_ms, actions)

    def _certificate(self, votes: dict[int, bytes]) -> bytes:
        group = self._group(self.view)
        encoded: bytes = rlp.encode(CommitCertificate(self.view, [Vote(member, votes[member])
                                                                  for member in group], []))
        return encoded

    def _adopt_certificate(self, entry: Entry, certificate: bytes,
                           actions: list[Action]) -> None:
        """t >= 2: log the commit, then tell the members not known to hold it yet."""
        self._entry = entry.with_certificate(certificate)
        self._holders.add(self._index)
        self._finals[self._index] = self._final_signature(entry)
        self._persist(actions)
        self._send_committed(actions)

    def _send_committed(self, actions: list[Action]) -> None:
        entry = self._entry
        assert entry is not None and entry.certificate
        committed = self._sign(Committed(sender=self._index, view=entry.view,
                                         height=entry.height, block_hash=entry.block_hash,
                                         certificate=entry.certificate,
                                         holds=self._final_signature(entry)))
        for member in self._others(self._group(self.view)):
            if member not in self._holders:
                self._send(member, committed, actions)

    def _on_committed(self, message: Committed, now_ms: int, actions: list[Action]) -> None:
        if not self._is_member(self.view, message.sender) or self._t == 1:
            raise Suspicion(RejectReason.NOT_A_MEMBER, "COMMITTED from a non-member")
        certificate = self._checked_certificate(message.certificate, message.height,
                                                message.block_hash)
        if certificate.view != self.view:
            raise Suspicion(RejectReason.BAD_CERTIFICATE,
                            "COMMITTED with a certificate of another view")
        if not is_valid_signature(self._bookkeepers[message.sender], message.holds,
                                  final_message(self._chain_id, message.view, message.height,
                                                message.block_hash)):
            raise Suspicion(RejectReason.BAD_CERTIFICATE, "bad finality signature in COMMITTED")
        if message.height <= self._app.final_height():
            self._send_final(message.sender, message.height, with_block=False,
                             actions=actions)
            return
        entry = self._pending_entry()
        if entry is None or entry.block_hash != message.block_hash:
            return  # it holds our vote, so we logged this entry; a stale duplicate
        self._holders.add(message.sender)
        self._finals[message.sender] = message.holds
        if not entry.certificate:
            self._adopt_certificate(entry, message.certificate, actions)
        self._check_final(now_ms, actions)

    def _check_final(self, now_ms: int, actions: list[Action]) -> None:
        entry = self._pending_entry()
        if entry is None or not set(self._group(self.view)) <= self._holders:
            return
        certificate = decode(entry.certificate or self._certificate(self._votes),
                             CommitCertificate)
        self._finalize(entry.block, certificate.copy(finality=self._finality(entry)), actions)
        if self._is_primary():
            for replica in range(self._n):
                if replica == self._index:
                    continue
                # t = 1: the follower learns finality from this FINAL (no block inside);
                # passive replicas get the block itself (lazy replication).
                active = self._is_member(self.view, replica)
                if self._t == 1 or not active:
                    self._send_final(replica, entry.height, with_block=not active,
                                     actions=actions)
        # After the FINALs, so that the next PREPARE does not overtake them.
        self._observe_app(now_ms, actions)

    def _final_signature(self, entry: Entry) -> bytes:
        return self._key.sign(final_message(self._chain_id, entry.view, entry.height,
                                            entry.block_hash))

    def _finality(self, entry: Entry) -> list[Vote]:
        """The finality proof of the entry, every member holding its certificate."""
        if self._t == 1:
            assert self._is_primary(), "t = 1: a follower finalizes only on the primary's FINAL"
            return [Vote(self._index, self._final_signature(entry))]
        return [Vote(member, self._finals[member]) for member in self._group(entry.view)]

    def _send_final(self, to: int, height: int, *, with_block: bool,
                    actions: list[Action]) -> None:
        key = (height, with_block)
        if self._final_message is None or self._final_message[0] != key:
            # One signed FINAL per height and kind, whoever it goes to: re-encoding a big
            # block per passive replica cost a fifth of the primary's CPU under load.
            block = self._app.final_block(height)
            assert block is not None and block.certificate, "a final block has a certificate"
            bare = block.with_certificate(None).encoded() if with_block else b""
            final = self._sign(Final(sender=self._index, height=height, block_hash=block.hash,
                                     certificate=rlp.encode(block.certificate[0]), block=bare))
            self._final_message = (key, final)
        self._send(to, self._final_message[1], actions)

    def _on_final(self, message: Final, now_ms: int, actions: list[Action]) -> None:
        final = self._app.final_height()
        if message.height <= final:
            return
        try:
            certificate = self._checked_certificate(message.certificate, message.height,
                                                    message.block_hash, final=True)
        except Suspicion as exc:
            actions.append(Rejected(message.sender, exc.reason, exc.detail))
            return
        if message.height > final + 1:
            actions.append(CatchUp(message.sender, message.height))
            return
        block = self._final_block_of(message)
        if block is None:
            actions.append(CatchUp(message.sender, message.height))
            return
        try:
            self._app.check(block)
        except LedgerError as exc:
            actions.append(Rejected(message.sender, RejectReason.INVALID_BLOCK,
                                    f"certified block fails: {exc}"))
            return
        self._finalize(block, certificate, actions)
        self._observe_app(now_ms, actions)

    def _final_block_of(self, message: Final) -> Block | None:
        if message.block:
            try:
                block = _block_field(message, "block")
            except Suspicion:
                return None
            return block if block is not None and block.hash == message.block_hash else None
        entry = self._entry
        if entry is not None and entry.block_hash == message.block_hash:
            return entry.block
        return None

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
                  actions: list[Action]) -> None:
        final_block = block.with_certificate(certificate)
        self._app.finalize(final_block)
        actions.append(Finalized(final_block))

    def _observe_app(self, now_ms: int, actions: list[Action]) -> None:
        """React to the final head moving (our own finalize, or block sync's)."""
        final = self._app.final_height()
        if final == self._last_final:
            return
        self._last_final = final
        self._views_without_final = 0
        self._retransmits = 0
        if self._proposed_at_ms is not None:  # the primary's cycle includes building the block
            started: int | None = self._proposed_at_ms
        elif self._busy_since is not None:
            started = max(self._busy_since, self._last_final_ms or self._busy_since)
        else:
            started = None
        if started is not None:
            # Up at once, down slowly: one long cycle already says this machine is slow now.
            cycle = now_ms - started
            self._cycle_ms = max(cycle, (3 * self._cycle_ms + cycle) // 4)
        self._last_final_ms = now_ms
        self._join_certified_view(final, actions)
        if not self._current(self._entry):
            self._entry = None
        self._votes, self._commits, self._holders, self._outbox = {}, {}, set(), {}
        self._finals = {}
        self._proposed_at_ms, self._build_ms = None, None
        # The stall clock restarts at the next tick (its time is fresh; `now_ms` is from
        # before this block was executed and stored).
        self._busy_since = None
        # Transactions queued while the last block was in flight form the next batch. It is
        # proposed at a later tick, not here: building it takes up to block_build_ms_max,
        # and the FINALs of this block must leave first, or a follower waiting for one
        # while the primary builds takes it for stuck (seen under load, issue 10).
        self._schedule_proposal(now_ms)
        if self.state == VIEW_CHANGE:
            self._maybe_select(now_ms, actions)
        elif self._early:
            self._replay_early(now_ms, actions)

    def _join_certified_view(self, final: int, actions: list[Action]) -> None:
        """A final block certified in a later view proves that view's group is running; a
        replica that slept through its view change (restart, partition) joins it rather
        than report and act on a view the others have left."""
        head = self._app.final_block(final)
        certified = head.certificate[0].view if head is not None and head.certificate else 0
        if certified <= self.view or final < self._epoch:
            return  # (a view of the previous epoch is no view of this one)
        self.view = certified
        self.state = NORMAL
        self._reset_view_state()
        self._persist(actions)
        actions.append(ViewChanged(certified))

    # ------------------------------------------------------------------ view change

    def _suspect_member(self, member: int, reason: str, now_ms: int,
                        actions: list[Action]) -> None:
        if self._is_member(self.view, member):
            self._suspect(reason, now_ms, actions)

    def _suspect(self, reason: str, now_ms: int, actions: list[Action]) -> None:
        if not self._is_member(self.view):
            return
        self.last_suspect_reason = reason
        actions.append(Suspected(self.view, reason))
        suspect = self._sign(Suspect(sender=self._index, view=self.view))
        assert isinstance(suspect, Suspect)
        for replica in self._others(tuple(range(self._n))):
            self._send(replica, suspect, actions)
        self._enter_view(self.view + 1, now_ms, actions, suspect)

    def _on_suspect(self, sender: int, message: Suspect, now_ms: int,
                    actions: list[Action]) -> None:
        if not self._is_member(message.view, message.sender):
            actions.append(Rejected(sender, RejectReason.NOT_A_MEMBER,
                                    f"SUSPECT({message.view}) of {message.sender}"))
            return
        if message.view >= VIEW_MAX:
            # Its next view would not decode anywhere: a member could freeze the cluster.
            actions.append(Rejected(sender, RejectReason.OUT_OF_SEQUENCE,
                                    f"SUSPECT({message.view}) leads past VIEW_MAX"))
            return
        if message.view < self.view:
            return
        for replica in range(self._n):
            if replica not in (self._index, sender, message.sender):
                self._send(replica, message, actions)
        self._enter_view(message.view + 1, now_ms, actions, message)

    def _enter_view(self, view: int, now_ms: int, actions: list[Action],
                    suspect: Suspect | None = None, *, restarted: bool = False) -> None:
        last_suspect = self._last_suspect if restarted else suspect
        if not restarted:
            self.view = view
            self.view_changes += 1
            self._views_without_final += 1
            actions.append(ViewChanged(view))
        self._reset_view_state()
        self._last_suspect = last_suspect
        self.state = VIEW_CHANGE
        if not self._current(self._entry):
            self._entry = None
        my_vc = self._view_change_message()
        self._my_view_change = my_vc
        if self._is_member(view):
            self._view_changes[self._index] = my_vc
            self._vc_started_ms = now_ms
            self._vc_deadline_ms = now_ms + self._backed_off(self._config.view_change_timeout_ms)
        else:
            self.state = NORMAL  # a passive replica has nothing to wait for
        self._persist(actions)  # never act in an older view again, even after a restart
        for member in self._others(self._group(view)):
            self._send(member, my_vc, actions)
        self._retransmit_at = now_ms + self._config.retransmit_ms
        future = [m for m in self._future.values() if view_of(m) == view]
        self._future = {key: m for key, m in self._future.items()
                        if view_of(m) > view}
        for message in future:
            self._handle(message.sender, message, now_ms, actions)
        self._maybe_send_vc_final(now_ms, actions)

    def _view_change_message(self) -> ViewChange:
        final = self._app.final_height()
        committed = self._entry if self._entry is not None and self._entry.certificate \
            else None
        message = self._sign(ViewChange(
            sender=self._index, view=self.view, final_height=final,
            final_hash=self._app.final_hash(),
            final_certificate=self._final_certificate(final),
            entry_view=committed.view if committed else 0,
            entry_block=committed.block_raw if committed else b"",
            entry_certificate=committed.certificate if committed else b""))
        assert isinstance(message, ViewChange)
        return message

    def _final_certificate(self, height: int) -> bytes:
        if height == 0:
            return b""
        block = self._app.final_block(height)
        assert block is not None and block.certificate, "a final block has a certificate"
        encoded: bytes = rlp.encode(block.certificate[0])
        return encoded

    def _check_view_change(self, vc: ViewChange, view: int) -> None:
        # The sender is checked here too: the replica's API takes Message objects, and a
        # VIEW-CHANGE nested in a VC-FINAL naming sender 99 once took down every replica.
        if vc.view != view or vc.epoch != self._epoch or not 0 <= vc.sender < self._n or \
                not vc.verify_signature(self._bookkeepers[vc.sender]):
            raise Suspicion(RejectReason.BAD_VIEW_CHANGE, f"bad VIEW-CHANGE of {vc.sender}")
        if vc.final_height > 0:
            # A final head, not a certified block: a follower withholding its COMMIT holds
            # a certificate, and the selection would start from (and sync) its block.
            self._checked_certificate(vc.final_certificate, vc.final_height, vc.final_hash,
                                      final=True)
        block = _block_field(vc, "entry_block")
        if block is None:
            return
        entry = Entry.create(vc.entry_view, vc.entry_block, b"", vc.entry_certificate,
                             block=block)
        certificate = self._checked_certificate(vc.entry_certificate, entry.height,
                                                entry.block_hash)
        if certificate.view != vc.entry_view or vc.entry_view >= view or \
                entry.height != vc.final_height + 1:
            raise Suspicion(RejectReason.BAD_VIEW_CHANGE, f"log entry of {vc.sender} does not fit")

    def _on_view_change(self, message: ViewChange, now_ms: int,
                        actions: list[Action]) -> None:
        self._check_view_change(message, self.view)
        if not self._is_member(self.view):
            return
        if self.state == NORMAL:
            # A late replica: it may have missed our NEW-VIEW.
            if self._is_primary() and self._new_view is not None and \
                    message.sender in self._followers():
                self._send(message.sender, self._new_view, actions)
            return
        self._view_changes.setdefault(message.sender, message)
        self._maybe_send_vc_final(now_ms, actions)

    def _maybe_send_vc_final(self, now_ms: int, actions: list[Action]) -> None:
        if self.state != VIEW_CHANGE or not self._is_member(self.view) or \
                self._vc_final_sent is not None:
            return
        received = len(self._view_changes)
        waited = now_ms >= self._vc_started_ms + 2 * self._config.delta_ms
        if received < self._n and not (waited and received >= self._n - self._t):
            return
        vc_final = self._sign(VcFinal(sender=self._index, view=self.view,
                                      view_changes=tuple(self._view_changes[s] for s in
                                                         sorted(self._view_changes))))
        assert isinstance(vc_final, VcFinal)
        self._vc_final_sent = vc_final
        self._vc_finals[self._index] = vc_final
        for member in self._others(self._group(self.view)):
            self._send(member, vc_final, actions)
        self._maybe_select(now_ms, actions)

    def _on_vc_final(self, message: VcFinal, now_ms: int, actions: list[Action]) -> None:
        if not self._is_member(self.view, message.sender):
            raise Suspicion(RejectReason.NOT_A_MEMBER, "VC-FINAL from a non-member")
        if len(message.view_changes) < self._n - self._t or \
                len({vc.sender for vc in message.view_changes}) != len(message.view_changes):
            raise Suspicion(RejectReason.BAD_VC_FINAL,
                            "VC-FINAL with too few or repeated view changes")
        for vc in message.view_changes:
            self._check_view_change(vc, self.view)
        if self.state == NORMAL:
            # The sender is still waiting for our NEW-VIEW.
            if self._is_primary() and self._new_view is not None:
                self._send(message.sender, self._new_view, actions)
            return
        self._vc_finals.setdefault(message.sender, message)
        self._maybe_select(now_ms, actions)

    def _maybe_select(self, now_ms: int, actions: list[Action]) -> None:
        if self.state != VIEW_CHANGE or self._vc_final_sent is None or \
                not set(self._group(self.view)) <= set(self._vc_finals):
            return
        if self._start is None:
            self._start = select(merge(self._vc_finals[m] for m in sorted(self._vc_finals)))
        start = self._start
        final = self._app.final_height()
        if final < start.final_height:
            actions.append(CatchUp(start.source, start.final_height))
            return
        if final > start.final_height:
            # A late FINAL of the old view arrived after this replica's VIEW-CHANGE; the
            # next view's selection will include it.
            self._suspect("final head moved past the selection", now_ms, actions)
            return
        if start.pick is not None:
            try:
                self._check_block(start.pick.block)
            except LedgerError as exc:
                self._suspect(f"selected entry does not execute: {exc}", now_ms, actions)
                return
        if self._is_primary():
            self._send_new_view(start, now_ms, actions)
        elif self._new_view is not None:
            self._accept_new_view(self._new_view, now_ms, actions)

    def _send_new_view(self, start: Start, now_ms: int, actions: list[Action]) -> None:
        pick = self._new_view_pick(start)
        raw, vote = b"", b""
        self._entry = None  # an entry the selection did not pick is rolled back
        if pick is not None:
            vote = self._vote(self.view, pick.height, pick.block_hash)
            self._entry = Entry.create(self.view, pick.block_raw, vote, block=pick.block)
            self._votes = {self._index: vote}
        new_view = self._sign(NewView(sender=self._index, view=self.view,
                                      final_height=start.final_height,
                                      final_hash=start.final_hash,
                                      block=pick.block_raw if pick else raw, vote=vote))
        assert isinstance(new_view, NewView)
        self._new_view = new_view
        self._enter_normal(now_ms, actions)  # persists the re-prepared entry before NEW-VIEW leaves
        for follower in self._followers():
            self._outbox[follower] = new_view
            self._send(follower, new_view, actions)
        self._schedule_proposal(now_ms)

    def _enter_normal(self, now_ms: int, actions: list[Action]) -> None:
        self.state = NORMAL
        self._persist(actions)
        self._busy_since = None
        self._update_busy(now_ms)
        self._retransmit_at = now_ms + self._config.retransmit_ms

    def _on_new_view(self, message: NewView, now_ms: int, actions: list[Action]) -> None:
        if message.sender != self._group(self.view)[0] or self._is_primary():
            raise Suspicion(RejectReason.NOT_FROM_PRIMARY, "NEW-VIEW not from the new primary")
        if self.state == NORMAL:
            pending = self._pending_entry()
            if pending is not None and message.block == pending.block_raw:
                self._send_my_commit(pending, actions)
            return
        self._new_view = message
        self._maybe_select(now_ms, actions)

    def _accept_new_view(self, message: NewView, now_ms: int,
                         actions: list[Action]) -> None:
        start = self._start
        assert start is not None
        pick_raw = start.pick.block_raw if start.pick is not None else b""
        if (message.final_height, message.final_hash, message.block) != \
                (start.final_height, start.final_hash, pick_raw):
            self._suspect("NEW-VIEW does not match the selection", now_ms, actions)
            return
        self._entry = None  # an entry the selection did not pick is rolled back
        self._enter_normal(now_ms, actions)
        if message.block:
            self._accept_proposal(message.final_height + 1, message, now_ms, actions)
        self._replay_early(now_ms, actions)

    # ------------------------------------------------------------------ retransmission

    def _retransmit(self, now_ms: int, actions: list[Action]) -> None:
        # Each retransmission without progress waits twice as long as the last: a follower
        # still executing a large block gets one copy, not one per retransmit_ms.
        self._retransmit_at = now_ms + (self._config.retransmit_ms << min(self._retransmits,
                                                                          RETRANSMIT_DOUBLINGS_MAX))
        self._retransmits += 1
        if self._last_suspect is not None and self.state == VIEW_CHANGE:
            for replica in self._others(tuple(range(self._n))):
                self._send(replica, self._last_suspect, actions)
        if self.state == VIEW_CHANGE:
            self._retransmit_view_change(actions)
            return
        if not self._is_member(self.view):
            self._retransmit_passive(now_ms, actions)
            return
        if self._is_primary():
            for follower, message in self._outbox.items():
                if follower not in self._votes and self._current(self._entry) or \
                        isinstance(message, NewView) and follower not in self._heard:
                    self._send(follower, message, actions)
            return
        pending = self._pending_entry()
        if pending is None or not self._is_member(self.view):
            return
        self._send_my_commit(pending, actions)
        if pending.certificate and self._t >= 2:
            self._send_committed(actions)

    def _retransmit_passive(self, now_ms: int, actions: list[Action]) -> None:
        """A passive replica never suspects, but when pending work stalls it repeats the
        SUSPECT that brought it here and its VIEW-CHANGE: replicas that missed them (lost
        messages) would otherwise sit in older views, each passive, and nobody moves."""
        stalled = self._busy_since is not None and \
            now_ms - self._busy_since >= self._config.commit_timeout_ms
        if not stalled:
            return
        if self._last_suspect is not None:
            for replica in self._others(tuple(range(self._n))):
                self._send(replica, self._last_suspect, actions)
        # Rebuilt, not cached: after a restart there is none, and the head may have moved.
        my_vc = self._view_change_message()
        for member in self._others(self._group(self.view)):
            self._send(member, my_vc, actions)

    def _retransmit_view_change(self, actions: list[Action]) -> None:
        if self._my_view_change is not None:
            for member in self._others(self._group(self.view)):
                if member not in self._vc_finals:
                    self._send(member, self._my_view_change, actions)
        if self._vc_final_sent is not None:
            primary = self._group(self.view)[0]
            for member in self._others(self._group(self.view)):
                waiting = member == primary and self._start is not None
                if member not in self._vc_finals or waiting:
                    self._send(member, self._vc_final_sent, actions)
        start = self._start
        if start is not None and self._app.final_height() < start.final_height:
            actions.append(CatchUp(start.source, start.final_height))
