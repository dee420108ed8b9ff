"""The common case of XPaxos: propose, vote, commit, finalize (consensus/replica.py
explains the protocol; docs/consensus.md "Common case and finality").

Handlers append actions and never do I/O: a `Persist` precedes the vote it guards. Building
a block and executing one are the application's: the primary asks with `Propose` and sends
its PREPARE from `_proposal_built`; a follower asks with `Check` and votes from
`_proposal_checked` (consensus/replica.py routes the outcomes).
"""

from __future__ import annotations

import rlp

from chain import Block, CommitCertificate, LedgerError, Vote, decode
from chain.certificate import (
    final_message,
)
from consensus.actions import (
    Action,
    CatchUp,
    Rejected,
    ViewChanged,
)
from consensus.admission import role_refusal
from consensus.core import (
    NORMAL,
    RETRANSMIT_DOUBLINGS_MAX,
    SLOW_START_SHARE,
    VIEW_CHANGE,
    Building,
    CheckFor,
    Checking,
    ReplicaCore,
    Suspicion,
)
from consensus.errors import RejectReason
from consensus.log import Entry
from consensus.messages import (
    Commit,
    Committed,
    Final,
    NewView,
    Prepare,
)
from crypto import is_valid_signature


class CommonCase(ReplicaCore):
    # ------------------------------------------------------------------ common case

    def _schedule_proposal(self, now_ms: int, *, batched: bool = False) -> None:
        """`batched`: the pending transactions queued while a block was in flight, so they
        are a batch already and go out at once; the batch timer is for work that reaches an
        idle primary, so that a burst lands in one block."""
        if self.state != NORMAL or not self._is_primary() or self._current(self._entry):
            return
        if self.vs.propose_at is not None:
            return
        if self._app.pending_transactions() > 0:
            self.vs.propose_at = now_ms + (0 if batched else self._config.batch_timeout_ms)
        elif self._config.empty_blocks:
            self.vs.propose_at = now_ms + self._config.empty_block_interval_ms

    def _propose(self, now_ms: int, actions: list[Action]) -> None:
        if self.state != NORMAL or not self._is_primary() or self._current(self._entry):
            return
        height = self._app.final_height() + 1
        # Slow start: until one block cycle has been measured here (a fresh start), a small
        # block, so that a machine much slower than the timeouts assume shows it on a block
        # that fits them; the timeouts then stretch with the cycle (_backed_off).
        budget_ms = None if self._cycle_ms else self._config.commit_timeout_ms // SLOW_START_SHARE
        self._ask_proposal(height, budget_ms, now_ms, actions)

    def _proposal_built(self, building: Building, block: Block | None, now_ms: int,
                        actions: list[Action]) -> None:
        """The application's answer to `Propose`: the block to prepare, or None (idle)."""
        height = building.height
        if block is None or building.view != self.view or self.state != NORMAL or \
                height != self._app.final_height() + 1 or self._current(self._entry):
            self._schedule_proposal(now_ms)
            return
        block = self._built(block)
        raw = block.encoded()
        vote = self._vote(self.view, height, block.hash)
        self._entry = Entry.create(self.view, raw, vote, block=block)
        self.vs.votes = {self._index: vote}
        self.vs.holders, self.vs.finals = set(), {}
        # Proposing is progress: the stall clock restarts at the next tick, after this
        # build (which may have taken seconds on a starved machine).
        self.vs.busy_since = None
        self.vs.proposed_at_ms, self.vs.build_ms = building.started_ms, None
        self._persist(actions)  # the PREPARE carries a vote: log before sending it
        prepare = self._sign(Prepare(sender=self._index, view=self.view, height=height,
                                     block=raw, vote=vote))
        for number, follower in enumerate(self._followers()):
            proposal = self._proposal_for(number, prepare, block)
            self.vs.outbox[follower] = proposal
            self._send(follower, proposal, actions)
        self.vs.retransmit_at = now_ms + self._config.retransmit_ms

    def _on_prepare(self, sender: int, message: Prepare, now_ms: int,
                    actions: list[Action]) -> None:
        refusal = role_refusal(message.TYPE, self.view, message.sender, self._index, self._n,
                               self._t)
        if refusal is not None:
            raise Suspicion(refusal, f"PREPARE of {message.sender}, not from the primary to a follower")
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
        block = self._block(proposal, "block")
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
        self._ask_check(Checking(CheckFor.PROPOSAL, entry.block, self.view, self._input,
                                 culprit=proposal.sender, entry=entry,
                                 charge=self._charge_of(proposal)), actions)

    def _proposal_checked(self, checking: Checking, error: LedgerError | None, now_ms: int,
                          actions: list[Action]) -> None:
        """The proposal's block executed (or not): log it and vote."""
        if error is not None:
            raise Suspicion(RejectReason.INVALID_BLOCK, f"invalid block: {error}")
        entry = checking.entry
        assert entry is not None
        height = entry.height
        if checking.view != self.view or self.state != NORMAL or \
                height != self._app.final_height() + 1:
            return  # the replica left that view or height in the same turn: stale
        self._give_back(checking.charge)
        primary = self._group(self.view)[0]
        vote = entry.prepare_vote
        my_vote = self._vote(self.view, height, entry.block_hash)
        self.vs.votes = {primary: vote, self._index: my_vote}
        if self._t == 1:
            # Both votes are here: the follower has committed (holds the certificate).
            entry = entry.with_certificate(self._certificate(self.vs.votes))
            self.vs.holders = {self._index}
            if self._certified_as_follower(entry, actions):
                return
        if self._entry is None or self._entry.block_hash != entry.block_hash:
            # A new valid proposal is progress: the stall clock restarts at the next tick,
            # whose time comes after this replica executed the block (`now_ms` is from
            # before), so its own slowness under load is not counted against the primary.
            self.vs.busy_since = None
        self._entry = entry
        self._persist(actions)  # log before the COMMIT leaves
        self._send_my_commit(entry, actions)
        self.vs.retransmit_at = now_ms + self._config.retransmit_ms
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
            self._answer_final(message.sender, message.height, actions)
            return
        if message.height == final + 1:
            self.vs.commits[message.sender] = message
            self._check_commits(now_ms, actions)

    def _check_commits(self, now_ms: int, actions: list[Action]) -> None:
        entry = self._pending_entry()
        if entry is None:
            return
        for member, commit in self.vs.commits.items():
            if commit.height != entry.height:
                continue
            if commit.block_hash != entry.block_hash:
                raise Suspicion(RejectReason.CONFLICT, f"COMMIT of {member} is for another block")
            self.vs.votes[member] = commit.vote
        if not set(self._group(self.view)) <= set(self.vs.votes):
            return
        if self._t == 1:
            if not self._is_primary():
                return  # the follower learns finality from the primary's FINAL only
            # The follower held the certificate when it voted, the primary holds it now.
            self.vs.holders = set(self._group(self.view))
        elif not entry.certificate:
            self._adopt_certificate(entry, self._certificate(self.vs.votes), actions)
        self._check_final(actions)

    def _certificate(self, votes: dict[int, bytes]) -> bytes:
        group = self._group(self.view)
        encoded: bytes = rlp.encode(CommitCertificate(self.view, [Vote(member, votes[member])
                                                                  for member in group], []))
        return encoded

    def _adopt_certificate(self, entry: Entry, certificate: bytes,
                           actions: list[Action]) -> None:
        """t >= 2: log the commit, then tell the members not known to hold it yet."""
        self._entry = entry.with_certificate(certificate)
        self.vs.holders.add(self._index)
        self.vs.finals[self._index] = self._final_signature(entry)
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
            if member not in self.vs.holders:
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
            self._answer_final(message.sender, message.height, actions)
            return
        entry = self._pending_entry()
        if entry is None or entry.block_hash != message.block_hash:
            return  # it holds our vote, so we logged this entry; a stale duplicate
        self.vs.holders.add(message.sender)
        self.vs.finals[message.sender] = message.holds
        if not entry.certificate:
            self._adopt_certificate(entry, message.certificate, actions)
        self._check_final(actions)

    def _check_final(self, actions: list[Action]) -> None:
        entry = self._pending_entry()
        if entry is None or not set(self._group(self.view)) <= self.vs.holders:
            return
        certificate = decode(entry.certificate or self._certificate(self.vs.votes),
                             CommitCertificate)
        final_block = self._finalize(entry.block, certificate.copy(finality=self._finality(entry)),
                                     actions)
        if self._is_primary():
            for replica in range(self._n):
                if replica == self._index:
                    continue
                # t = 1: the follower learns finality from this FINAL (no block inside);
                # passive replicas get the block itself (lazy replication).
                active = self._is_member(self.view, replica)
                if self._t == 1 or not active:
                    self._send_final(replica, final_block, with_block=not active,
                                     actions=actions)
        # The next proposal waits for the node to have stored this block (_observe_app at
        # the next input), so it never overtakes these FINALs.

    def _final_signature(self, entry: Entry) -> bytes:
        return self._key.sign(final_message(self._chain_id, entry.view, entry.height,
                                            entry.block_hash))

    def _finality(self, entry: Entry) -> list[Vote]:
        """The finality proof of the entry, every member holding its certificate."""
        if self._t == 1:
            assert self._is_primary(), "t = 1: a follower finalizes only on the primary's FINAL"
            return [Vote(self._index, self._final_signature(entry))]
        return [Vote(member, self.vs.finals[member]) for member in self._group(entry.view)]

    def _answer_final(self, to: int, height: int, actions: list[Action]) -> None:
        """A vote for a height that is final here: the FINAL that says so."""
        block = self._app.final_block(height)
        assert block is not None, "a final height within the store's base"
        self._send_final(to, block, with_block=False, actions=actions)

    def _send_final(self, to: int, block: Block, *, with_block: bool,
                    actions: list[Action]) -> None:
        key = (block.number, with_block)
        if self._final_message is None or self._final_message[0] != key:
            # One signed FINAL per height and kind, whoever it goes to: re-encoding a big
            # block per passive replica cost a fifth of the primary's CPU under load.
            assert block.certificate, "a final block has a certificate"
            bare = block.with_certificate(None).encoded() if with_block else b""
            final = self._sign(Final(sender=self._index, height=block.number, block_hash=block.hash,
                                     certificate=rlp.encode(block.certificate[0]), block=bare))
            self._final_message = (key, final)
        self._send(to, self._final_message[1], actions)

    def _on_final(self, message: Final, actions: list[Action]) -> None:
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
        self._ask_check(Checking(CheckFor.FINAL, block, self.view, self._input, final=message,
                                 certificate=certificate, charge=self._charge_of(message)),
                        actions)

    def _final_checked(self, checking: Checking, error: LedgerError | None,
                       actions: list[Action]) -> None:
        """A FINAL's block executed (or not): finalize it."""
        message, certificate, block = checking.final, checking.certificate, checking.block
        assert message is not None and certificate is not None
        if error is not None:
            actions.append(Rejected(message.sender, RejectReason.INVALID_BLOCK,
                                    f"certified block fails: {error}"))
            return
        if block.number != self._app.final_height() + 1:
            return
        self._give_back(checking.charge)
        self._finalize(block, certificate, actions)

    def _final_block_of(self, message: Final) -> Block | None:
        if message.block:
            try:
                block = self._block(message, "block")
            except Suspicion:
                return None
            return block if block is not None and block.hash == message.block_hash else None
        entry = self._entry
        if entry is not None and entry.block_hash == message.block_hash:
            return entry.block
        return None

    def _observe_app(self, now_ms: int, actions: list[Action]) -> None:
        """React to the final head moving (our own finalize, or block sync's)."""
        final = self._app.final_height()
        if final == self._last_final:
            return
        self._last_final = final
        self._slow_views, self._silent_members = 0, {}
        self.vs.retransmits = 0
        if self.vs.proposed_at_ms is not None:  # the primary's cycle includes building the block
            started: int | None = self.vs.proposed_at_ms
        elif self.vs.busy_since is not None:
            started = max(self.vs.busy_since, self._last_final_ms or self.vs.busy_since)
        else:
            started = None
        if started is not None:
            # Up at once, down slowly: one long cycle already says this machine is slow now.
            cycle = now_ms - started
            self._cycle_ms = max(cycle, (3 * self._cycle_ms + cycle) // 4)
        self._last_final_ms = now_ms
        head = self._app.final_block(final)
        if head is not None and self._join_view_of(head):  # block sync brought it
            self._persist(actions)
            actions.append(ViewChanged(self.view))
        if not self._current(self._entry):
            self._entry = None
        self.vs.votes, self.vs.commits, self.vs.holders, self.vs.outbox = {}, {}, set(), {}
        self.vs.finals = {}
        self.vs.proposed_at_ms, self.vs.build_ms = None, None
        # The stall clock restarts at the next tick (its time is fresh; `now_ms` is from
        # before this block was executed and stored).
        self.vs.busy_since = None
        # Transactions queued while the last block was in flight form the next batch, due
        # now: the FINALs of this block left with its Finalize, before the node stored it
        # and this input came (a follower waiting for one while the primary builds took it
        # for stuck, issue 10). The batch timer here was 5 ms on every block cycle.
        self._schedule_proposal(now_ms, batched=True)
        if self.state == VIEW_CHANGE:
            self._maybe_select(now_ms, actions)
        elif self.vs.early:
            self._replay_early(now_ms, actions)

    # ------------------------------------------------------------------ retransmission

    def _retransmit(self, now_ms: int, actions: list[Action]) -> None:
        # Each retransmission without progress waits twice as long as the last: a follower
        # still executing a large block gets one copy, not one per retransmit_ms.
        self.vs.retransmit_at = now_ms + (self._config.retransmit_ms << min(self.vs.retransmits,
                                                                          RETRANSMIT_DOUBLINGS_MAX))
        self.vs.retransmits += 1
        if self.vs.last_suspect is not None and self.state == VIEW_CHANGE:
            for replica in self._others(tuple(range(self._n))):
                self._send(replica, self.vs.last_suspect, actions)
        if self.state == VIEW_CHANGE:
            self._retransmit_view_change(actions)
            return
        if not self._is_member(self.view):
            self._retransmit_passive(now_ms, actions)
            return
        if self._is_primary():
            for follower, message in self.vs.outbox.items():
                if follower not in self.vs.votes and self._current(self._entry) or \
                        isinstance(message, NewView) and follower not in self.vs.heard:
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
        stalled = self.vs.busy_since is not None and \
            now_ms - self.vs.busy_since >= self._config.commit_timeout_ms
        if not stalled:
            return
        if self.vs.last_suspect is not None:
            for replica in self._others(tuple(range(self._n))):
                self._send(replica, self.vs.last_suspect, actions)
        # Rebuilt, not cached: after a restart there is none, and the head may have moved.
        my_vc = self._view_change_message()
        for member in self._others(self._group(self.view)):
            self._send(member, my_vc, actions)

