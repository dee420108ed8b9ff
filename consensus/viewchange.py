"""The view change of XPaxos: SUSPECT, VIEW-CHANGE, VC-FINAL, selection, NEW-VIEW
(consensus/replica.py explains the protocol; docs/consensus.md "View change"). The
selection itself is consensus/selection.py.
"""

from __future__ import annotations

from chain import LedgerError
from consensus.actions import (
    Action,
    CatchUp,
    Rejected,
    Suspected,
    ViewChanged,
)
from consensus.admission import role_refusal
from consensus.core import NORMAL, VIEW_CHANGE, CheckFor, Checking, ReplicaCore, Suspicion
from consensus.detection import confirm_digest, detect, evidence_in_chain, state_losses
from consensus.errors import RejectReason
from consensus.log import Entry
from consensus.messages import (
    FAULT_NOTICE_BYTES_MAX,
    VIEW_MAX,
    NewView,
    Suspect,
    VcConfirm,
    VcFinal,
    ViewChange,
    view_of,
)
from consensus.selection import Start, merge, select


class ViewChanging(ReplicaCore):
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
        last_suspect = self.vs.last_suspect if restarted else suspect
        if not restarted:
            self._leave_view()
            self.view = view
            self.view_changes += 1
            actions.append(ViewChanged(view))
        self._reset_view_state()
        self.vs.last_suspect = last_suspect
        self.state = VIEW_CHANGE
        if not self._current(self._entry):
            self._entry = None
        my_vc = self._view_change_message()
        self.vs.my_view_change = my_vc
        if self._is_member(view):
            self.vs.view_changes[self._index] = my_vc
            self.vs.vc_started_ms = now_ms
            self.vs.vc_deadline_ms = now_ms + self._backed_off(self._config.view_change_timeout_ms)
        else:
            self.state = NORMAL  # a passive replica has nothing to wait for
        self._persist(actions)  # never act in an older view again, even after a restart
        for member in self._others(self._group(view)):
            self._send(member, my_vc, actions)
        self.vs.retransmit_at = now_ms + self._config.retransmit_ms
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
        prepared = self._entry if self._current(self._entry) else None
        message = self._sign(ViewChange(
            sender=self._index, view=self.view, final_height=final,
            final_hash=self._app.final_hash(),
            final_certificate=self._final_certificate(final),
            entry_view=committed.view if committed else 0,
            entry_block=committed.block_raw if committed else b"",
            entry_certificate=committed.certificate if committed else b"",
            prepare_view=prepared.view if prepared else 0,
            prepare_hash=prepared.block_hash if prepared else b"",
            prepare_vote=prepared.prepare_vote if prepared else b""))
        assert isinstance(message, ViewChange)
        return message

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
        if vc.prepare_hash:
            # The prepare log: the primary's vote on the entry it accepted, of an earlier view
            # of this epoch (fault detection reads it as that primary's word).
            primary = self._group(vc.prepare_view)[0]
            if vc.prepare_view >= view or vc.final_height + 1 < self._epoch or \
                    not self._valid_vote(primary, vc.prepare_vote, vc.prepare_view,
                                         vc.final_height + 1, vc.prepare_hash):
                raise Suspicion(RejectReason.BAD_VIEW_CHANGE,
                                f"prepare log of {vc.sender} does not fit")
        block = self._block(vc, "entry_block")
        if block is None:
            return
        entry = Entry.create(vc.entry_view, vc.entry_block, b"", vc.entry_certificate,
                             block=block)
        certificate = self._checked_certificate(vc.entry_certificate, entry.height,
                                                entry.block_hash)
        if certificate.view != vc.entry_view or vc.entry_view >= view or \
                entry.height != vc.final_height + 1:
            raise Suspicion(RejectReason.BAD_VIEW_CHANGE, f"log entry of {vc.sender} does not fit")
        self._block_of_use(vc)

    def _on_view_change(self, message: ViewChange, now_ms: int,
                        actions: list[Action]) -> None:
        # Checked (its entry block decoded) only where it counts: by a member in the view
        # change, once per sender (consensus/admission.py).
        if not self._is_member(self.view):
            return
        self._share_faults(message.sender, actions)
        if self.state == NORMAL:
            # A late replica: it may have missed our NEW-VIEW.
            if self._is_primary() and self.vs.new_view is not None and \
                    message.sender in self._followers():
                self._send(message.sender, self.vs.new_view, actions)
            return
        if message.sender in self.vs.view_changes:
            return
        self._check_view_change(message, self.view)
        self.vs.view_changes[message.sender] = message
        self._maybe_send_vc_final(now_ms, actions)

    def _maybe_send_vc_final(self, now_ms: int, actions: list[Action]) -> None:
        if self.state != VIEW_CHANGE or not self._is_member(self.view) or \
                self.vs.vc_final_sent is not None:
            return
        received = len(self.vs.view_changes)
        waited = now_ms >= self.vs.vc_started_ms + 2 * self._config.delta_ms
        if received < self._n and not (waited and received >= self._n - self._t):
            return
        vc_final = self._sign(VcFinal(sender=self._index, view=self.view,
                                      view_changes=tuple(self.vs.view_changes[s] for s in
                                                         sorted(self.vs.view_changes))))
        assert isinstance(vc_final, VcFinal)
        self.vs.vc_final_sent = vc_final
        self.vs.vc_finals[self._index] = vc_final
        for member in self._others(self._group(self.view)):
            self._send(member, vc_final, actions)
        self._maybe_select(now_ms, actions)

    def _on_vc_final(self, message: VcFinal, now_ms: int, actions: list[Action]) -> None:
        if not self._is_member(self.view, message.sender):
            raise Suspicion(RejectReason.NOT_A_MEMBER, "VC-FINAL from a non-member")
        if self.state == NORMAL:
            # The sender is still waiting for our NEW-VIEW.
            if self._is_primary() and self.vs.new_view is not None:
                self._send(message.sender, self.vs.new_view, actions)
            return
        if message.sender in self.vs.vc_finals:
            return  # one per member and view: a copy is not checked (decoded) again
        if len(message.view_changes) < self._n - self._t or \
                len({vc.sender for vc in message.view_changes}) != len(message.view_changes):
            raise Suspicion(RejectReason.BAD_VC_FINAL,
                            "VC-FINAL with too few or repeated view changes")
        for vc in message.view_changes:
            self._check_view_change(vc, self.view)
        self.vs.vc_finals[message.sender] = message
        self._maybe_select(now_ms, actions)

    def _maybe_select(self, now_ms: int, actions: list[Action]) -> None:
        if self.state != VIEW_CHANGE or self.vs.vc_final_sent is None or \
                not set(self._group(self.view)) <= set(self.vs.vc_finals):
            return
        if self.vs.start is None:
            merged = merge(self.vs.vc_finals[m] for m in sorted(self.vs.vc_finals))
            if self._config.fault_detection:
                merged = self._detect_and_confirm(merged, actions)
            self.vs.start = select(merged)
        start = self.vs.start
        final = self._app.final_height()
        if final < start.final_height:
            actions.append(CatchUp(start.source, start.final_height))
            return
        if final > start.final_height:
            # A late FINAL of the old view arrived after this replica's VIEW-CHANGE; the
            # next view's selection will include it.
            self._suspect("final head moved past the selection", now_ms, actions)
            return
        if start.pick is not None and not self.vs.pick_checked:
            if self.vs.awaiting is None:
                culprit = self._input[0] if self._input is not None else self._group(self.view)[0]
                self._ask_check(Checking(CheckFor.PICK, start.pick.block, self.view, self._input,
                                         culprit=culprit), actions)
            return  # on from `_pick_checked`
        if self._config.fault_detection:
            assert self.vs.confirm_sent is not None
            differing = sorted(member for member, digest in self.vs.confirms.items()
                               if digest != self.vs.confirm_sent.digest)
            if differing:  # came in before this replica had selected
                actions.append(Rejected(differing[0], RejectReason.BAD_VC_CONFIRM,
                                        "VC-CONFIRM names another set"))
                self._suspect("VC-CONFIRM does not match the selection", now_ms, actions)
                return
            if not set(self._group(self.view)) <= set(self.vs.confirms):
                return
        if self._is_primary():
            self._send_new_view(start, now_ms, actions)
        elif self.vs.new_view is not None:
            self._accept_new_view(self.vs.new_view, now_ms, actions)

    # ------------------------------------------------------------------ fault detection (§4.4)

    def _share_faults(self, replica: int, actions: list[Action]) -> None:
        """The proofs this replica holds, once per view to each replica it hears a VIEW-CHANGE
        from: one that was down when a proof went round (or restarted, forgetting it) learns
        it at its next view change. At most 2n proofs; a replica that holds one drops the copy
        before checking it."""
        if replica in self.vs.faults_shared or not self.faults:
            return
        self.vs.faults_shared.add(replica)
        for key in sorted(self.faults):
            notice = self.faults[key]
            if notice.accused != replica and notice.payload_bytes() <= FAULT_NOTICE_BYTES_MAX:
                self._send(replica, notice, actions)

    def _detect_and_confirm(self, merged: dict[int, ViewChange],
                            actions: list[Action]) -> dict[int, ViewChange]:
        """Name the replicas the merged set proves faulty, leave their VIEW-CHANGEs out of
        the selection and send VC-CONFIRM; also name (not exclude) those this replica's own
        final blocks prove to have lost state (consensus/detection.py says why)."""
        keys = self._bookkeepers
        found = detect(merged, chain_id=self._chain_id, keys=keys, t=self._t, epoch=self._epoch)
        for notice in found:
            self._record_fault(notice, actions)
        chain = evidence_in_chain(merged.values(), self._app.final_height(), self._app.final_block)
        for notice in state_losses(merged, chain, chain_id=self._chain_id, keys=keys, t=self._t,
                                   epoch=self._epoch):
            self._record_fault(notice, actions)
        # Itself included: the set and the exclusions must be the same at every member (a
        # correct replica is never proven faulty; one that is still runs this code).
        accused = {notice.accused for notice in found}
        kept = {sender: vc for sender, vc in merged.items() if sender not in accused} or merged
        confirm = self._sign(VcConfirm(sender=self._index, view=self.view,
                                       digest=confirm_digest(merged, accused)))
        assert isinstance(confirm, VcConfirm)
        self.vs.confirm_sent = confirm
        self.vs.confirms[self._index] = confirm.digest
        for member in self._others(self._group(self.view)):
            self._send(member, confirm, actions)
        return kept

    def _on_vc_confirm(self, message: VcConfirm, now_ms: int, actions: list[Action]) -> None:
        if not self._is_member(self.view, message.sender) or message.sender == self._index:
            raise Suspicion(RejectReason.NOT_A_MEMBER, "VC-CONFIRM from a non-member")
        if self.state == NORMAL:
            # The sender is still waiting for our confirmation (and, from the primary, NEW-VIEW).
            if self.vs.confirm_sent is not None:
                self._send(message.sender, self.vs.confirm_sent, actions)
            if self._is_primary() and self.vs.new_view is not None:
                self._send(message.sender, self.vs.new_view, actions)
            return
        mine = self.vs.confirm_sent.digest if self.vs.confirm_sent is not None else None
        if mine is not None and message.digest != mine:
            raise Suspicion(RejectReason.BAD_VC_CONFIRM,
                            f"VC-CONFIRM of {message.sender} names another set")
        self.vs.confirms.setdefault(message.sender, message.digest)
        if mine is not None:
            self._maybe_select(now_ms, actions)

    def _pick_checked(self, checking: Checking, error: LedgerError | None, now_ms: int,
                      actions: list[Action]) -> None:
        if checking.view != self.view or self.state != VIEW_CHANGE:
            return  # left that view in the same turn: stale
        if error is not None:
            self._suspect(f"selected entry does not execute: {error}", now_ms, actions)
            return
        self.vs.pick_checked = True
        self._maybe_select(now_ms, actions)

    def _send_new_view(self, start: Start, now_ms: int, actions: list[Action]) -> None:
        pick = self._new_view_pick(start)
        raw, vote = b"", b""
        self._entry = None  # an entry the selection did not pick is rolled back
        if pick is not None:
            vote = self._vote(self.view, pick.height, pick.block_hash)
            self._entry = Entry.create(self.view, pick.block_raw, vote, block=pick.block)
            self.vs.votes = {self._index: vote}
        new_view = self._sign(NewView(sender=self._index, view=self.view,
                                      final_height=start.final_height,
                                      final_hash=start.final_hash,
                                      block=pick.block_raw if pick else raw, vote=vote))
        assert isinstance(new_view, NewView)
        self.vs.new_view = new_view
        self._enter_normal(now_ms, actions)  # persists the re-prepared entry before NEW-VIEW leaves
        for follower in self._followers():
            self.vs.outbox[follower] = new_view
            self._send(follower, new_view, actions)
        self._schedule_proposal(now_ms)

    def _enter_normal(self, now_ms: int, actions: list[Action]) -> None:
        self.state = NORMAL
        self._persist(actions)
        self.vs.busy_since = None
        self._update_busy(now_ms)
        self.vs.retransmit_at = now_ms + self._config.retransmit_ms

    def _on_new_view(self, message: NewView, now_ms: int, actions: list[Action]) -> None:
        refusal = role_refusal(message.TYPE, self.view, message.sender, self._index, self._n,
                               self._t)
        if refusal is not None:
            raise Suspicion(refusal, f"NEW-VIEW of {message.sender}, not from the new primary to a follower")
        if self.state == NORMAL:
            pending = self._pending_entry()
            if pending is not None and message.block == pending.block_raw:
                self._send_my_commit(pending, actions)
            return
        self.vs.new_view = message
        self._maybe_select(now_ms, actions)

    def _accept_new_view(self, message: NewView, now_ms: int,
                         actions: list[Action]) -> None:
        start = self.vs.start
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

    def _retransmit_view_change(self, actions: list[Action]) -> None:
        if self.vs.my_view_change is not None:
            for member in self._others(self._group(self.view)):
                if member not in self.vs.vc_finals:
                    self._send(member, self.vs.my_view_change, actions)
        if self.vs.vc_final_sent is not None:
            primary = self._group(self.view)[0]
            for member in self._others(self._group(self.view)):
                waiting = member == primary and self.vs.start is not None
                if member not in self.vs.vc_finals or waiting:
                    self._send(member, self.vs.vc_final_sent, actions)
        if self.vs.confirm_sent is not None:
            # To all: a member that has every confirmation still waits for ours or NEW-VIEW.
            for member in self._others(self._group(self.view)):
                self._send(member, self.vs.confirm_sent, actions)
        start = self.vs.start
        if start is not None and self._app.final_height() < start.final_height:
            actions.append(CatchUp(start.source, start.final_height))

