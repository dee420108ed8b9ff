"""One XPaxos (XFT) replica as a sans-IO state machine: no sockets, no clock, no threads.

The node feeds it messages, transactions and the time, carries out the returned actions
(consensus/actions.py) and calls `on_tick` at `next_deadline()`. Building and executing
blocks are the application's: the replica asks with `Propose` / `Check` and goes on from
`on_proposal` / `on_checked`, which the node (consensus/loop.py `settle`) calls before any
other input. Time comes in twice with
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
(a `Check` action: the node executes it on the final head and hands back the outcome,
`on_checked`; the header's roots make the hash cover the
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
Only final blocks are stored (a `Finalize` action, written by the node in one transaction
with the replica's record), so the ledger never rolls back. A committed but
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
selection.py). The new primary re-prepares the pick in NEW-VIEW; followers vote for it
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

from chain import Block, LedgerError
from consensus.actions import (
    Action,
    Rejected,
)
from consensus.common import CommonCase
from consensus.core import (  # SLOW_START_SHARE and the EARLY_ bounds are read here by tests
    EARLY_BYTES_MAX,
    EARLY_MESSAGES_MAX,
    NORMAL,
    SLOW_START_SHARE,
    VIEW_CHANGE,
    Building,
    CheckFor,
    Checking,
    Status,
    Suspicion,
)
from consensus.messages import (
    Commit,
    Committed,
    FaultNotice,
    Final,
    Message,
    NewView,
    Prepare,
    Suspect,
    VcConfirm,
    VcFinal,
    ViewChange,
    view_of,
)
from consensus.viewchange import ViewChanging

__all__ = ["EARLY_BYTES_MAX", "EARLY_MESSAGES_MAX", "SLOW_START_SHARE", "Replica", "Status",
           "Suspicion"]


class Replica(CommonCase, ViewChanging):
    """One XPaxos replica: the public API, and the routing of each message to its half."""

    # ------------------------------------------------------------------ public API

    def start(self, now_ms: int, clock_ms: int) -> list[Action]:
        self._clock_ms = clock_ms
        actions: list[Action] = []
        if self.state == VIEW_CHANGE:
            self._enter_view(self.view, now_ms, actions, restarted=True)
        else:
            self.vs.busy_since = None
            self._update_busy(now_ms)
            self.vs.retransmit_at = now_ms + self._config.retransmit_ms
            pending = self._pending_entry()
            if pending is not None and self._is_primary():
                # Restarted with a proposal in flight: resend that one, never another.
                self.vs.votes = {self._index: pending.prepare_vote}
                prepare = self._sign(Prepare(sender=self._index, view=self.view,
                                             height=pending.height, block=pending.block_raw,
                                             vote=pending.prepare_vote))
                self.vs.outbox = {follower: prepare for follower in self._followers()}
            self._schedule_proposal(now_ms)
        return self._asked(actions)

    def on_message(self, sender: int, message: Message, now_ms: int,
                   clock_ms: int) -> list[Action]:
        self._clock_ms = clock_ms
        self._no_outcome_due()
        actions: list[Action] = []
        self._observe_app(now_ms, actions)
        if self.vs.awaiting is not None:
            # Reacting to the head asked for a Check: this message waits for its outcome.
            self._hold_early(sender, message)
            self.vs.held_for_outcome = True
        else:
            self._handle(sender, message, now_ms, actions)
        self._update_busy(now_ms)
        return self._asked(actions)

    def on_transactions(self, now_ms: int, clock_ms: int) -> list[Action]:
        self._clock_ms = clock_ms
        self._no_outcome_due()
        actions: list[Action] = []
        self._observe_app(now_ms, actions)
        self._update_busy(now_ms)
        self._schedule_proposal(now_ms)
        return self._asked(actions)

    def on_tick(self, now_ms: int, clock_ms: int) -> list[Action]:
        self._clock_ms = clock_ms
        self._no_outcome_due()
        actions: list[Action] = []
        self._observe_app(now_ms, actions)
        self._update_busy(now_ms)
        if self.state == VIEW_CHANGE and self._is_member(self.view):
            if now_ms >= self.vs.vc_deadline_ms:
                self._suspect("view change timed out", now_ms, actions)
            else:
                self._maybe_send_vc_final(now_ms, actions)
        if self.vs.retransmit_at is not None and now_ms >= self.vs.retransmit_at:
            self._retransmit(now_ms, actions)
        if self.vs.propose_at is not None and now_ms >= self.vs.propose_at and \
                self.vs.awaiting is None:
            self.vs.propose_at = None
            self._propose(now_ms, actions)
        self._suspect_if_stalled(now_ms, actions)
        return self._asked(actions)

    def on_proposal(self, block: Block | None, now_ms: int, clock_ms: int) -> list[Action]:
        """The outcome of this replica's `Propose`: the block the application built, or None."""
        self._clock_ms = clock_ms
        actions: list[Action] = []
        building = self.vs.awaiting
        if isinstance(building, Building):
            self.vs.awaiting = None
            self._proposal_built(building, block, now_ms, actions)
            self._suspect_if_stalled(now_ms, actions)
        return self._asked(actions)

    def on_checked(self, block_hash: bytes, error: LedgerError | None, now_ms: int,
                   clock_ms: int) -> list[Action]:
        """The outcome of this replica's `Check` of the block `block_hash`: None when it
        executes on the final head, else the LedgerError that says why not."""
        self._clock_ms = clock_ms
        actions: list[Action] = []
        checking = self.vs.awaiting
        if isinstance(checking, Checking) and checking.block.hash == block_hash:
            self.vs.awaiting = None
            self._checked(checking, error, now_ms, actions)
            if self.vs.held_for_outcome and self.vs.awaiting is None:
                self._replay_early(now_ms, actions)
            self._update_busy(now_ms)
        return self._asked(actions)

    def abandon(self) -> None:
        """The application raised on the Propose or Check this replica asked for (a bug,
        not an invalid block): give it up, as a lost message, so that inputs go on."""
        self.vs.awaiting = None

    def _no_outcome_due(self) -> None:
        assert self.vs.awaiting is None, \
            "the outcome of a Propose or Check comes before any other input (consensus/loop.py)"

    def _suspect_if_stalled(self, now_ms: int, actions: list[Action]) -> None:
        stalled = self._stall_deadline()
        if stalled is not None and now_ms >= stalled:
            self._suspect("no progress on pending work", now_ms, actions)

    def _checked(self, checking: Checking, error: LedgerError | None, now_ms: int,
                 actions: list[Action]) -> None:
        """Go on from a Check's outcome, as the handler that asked it would have: with the
        input it came with, and a Suspicion handled as `_handle` handles one."""
        outer = self._input
        self._input = (checking.input[0], now_ms) if checking.input is not None else None
        try:
            if checking.purpose is CheckFor.FINAL:
                self._final_checked(checking, error, actions)
            elif checking.purpose is CheckFor.PROPOSAL:
                self._proposal_checked(checking, self._verdict(error), now_ms, actions)
            else:
                self._pick_checked(checking, self._verdict(error), now_ms, actions)
        except Suspicion as suspicion:
            blamed = checking.input[0] if checking.input is not None else checking.culprit
            assert blamed is not None and checking.culprit is not None
            actions.append(Rejected(blamed, suspicion.reason, suspicion.detail))
            self._suspect_member(checking.culprit, str(suspicion), now_ms, actions)
        finally:
            self._input = outer

    def next_deadline(self) -> int | None:
        deadlines = [self.vs.retransmit_at, self.vs.propose_at, self._stall_deadline()]
        if self._app.final_height() != self._last_final:
            deadlines.append(0)  # the node stored a Finalize (or block sync moved the head): react
        if self.vs.busy_since is None and self.state == NORMAL and self._is_member(self.view) and self._busy():
            deadlines.append(0)  # start the stall clock at once, with the caller's fresh time
        if self.state == VIEW_CHANGE and self._is_member(self.view):
            deadlines.append(self.vs.vc_deadline_ms)
            # The 2Δ wait matters only once n - t VIEW-CHANGEs are in; before, a message
            # (not the clock) is what can move the view change on.
            if self.vs.vc_final_sent is None and \
                    len(self.vs.view_changes) >= self._n - self._t:
                deadlines.append(self.vs.vc_started_ms + 2 * self._config.delta_ms)
        present = [deadline for deadline in deadlines if deadline is not None]
        return min(present) if present else None

    @property
    def status(self) -> Status:
        group = self._group(self.view)
        return Status(self.view, group[0], group, self._index in group,
                      self._app.final_height(), self.view_changes, self.state,
                      self.last_suspect_reason)

    def _dispatch(self, sender: int, message: Message, now_ms: int,
                  actions: list[Action]) -> None:
        if isinstance(message, Final):
            self._on_final(message, actions)
            return
        if isinstance(message, FaultNotice):
            self._on_fault(sender, message, actions)
            return
        if isinstance(message, Suspect):
            self._on_suspect(sender, message, now_ms, actions)
            return
        view = view_of(message)
        if view < self.view:
            # From a view this replica left: harmless, and it already acted on it; but it
            # may show a member that was taken for dead slow instead.
            self._late_message(message)
            return
        if view > self.view:
            self._stash_future(message)
            return
        self.vs.heard.add(message.sender)
        if isinstance(message, ViewChange):
            self._on_view_change(message, now_ms, actions)
        elif isinstance(message, VcFinal):
            self._on_vc_final(message, now_ms, actions)
        elif isinstance(message, VcConfirm):
            self._on_vc_confirm(message, now_ms, actions)
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

