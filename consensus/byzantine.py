"""Test-only Byzantine replicas (`[consensus] byzantine = MODE`), outside the core.

Each mode is a subclass of the honest `Replica` that overrides one of its hooks (the
points where an honest replica makes a choice: how it signs, what it builds, checks,
re-prepares, sends); the core never tests for a mode. The fault suite and the simulator
build replicas through `replica_class`, so the honest code path is the only one in
consensus/replica.py. docs/consensus.md "Test-only Byzantine modes" lists what each does and
how honest replicas detect it.
"""

from __future__ import annotations

import dataclasses

import rlp

from chain import Block, CommitCertificate, LedgerError, decode
from consensus.actions import Action, Send
from consensus.log import Entry
from consensus.messages import Message, Prepare, ViewChange
from consensus.replica import Replica
from consensus.selection import Start
from crypto import keccak256


class BadSignature(Replica):
    """Signs every protocol message with garbage (votes stay valid)."""

    def _sign(self, message: Message) -> Message:
        message = dataclasses.replace(message, epoch=self._epoch)
        return dataclasses.replace(message, signature=keccak256(message.signing_payload()) * 2)


class Silent(Replica):
    """Runs the protocol but sends nothing."""

    def _output(self, actions: list[Action]) -> list[Action]:
        return [action for action in actions if not isinstance(action, Send)]


class WrongRoots(Replica):
    """Proposes blocks with a wrong state root and checks nobody's blocks."""

    def _built(self, block: Block) -> Block:
        wrong: Block = block.copy(header=block.header.copy(state_root=keccak256(b"wrong")))
        return wrong

    def _verdict(self, error: LedgerError | None) -> LedgerError | None:
        return None


class Equivocate(Replica):
    """A primary that sends every second follower a different block for the same height,
    with its vote on it."""

    def _proposal_for(self, number: int, prepare: Message, block: Block) -> Message:
        if number % 2 == 0:
            return prepare
        # A twin that executes just as well (the timestamp is outside the roots here), so
        # only conflicting votes can reveal it.
        assert isinstance(prepare, Prepare)
        other = block.copy(header=block.header.copy(timestamp_ms=block.header.timestamp_ms + 1))
        vote = self._vote(self.view, prepare.height, other.hash)
        return self._sign(Prepare(sender=self._index, view=self.view, height=prepare.height,
                                  block=rlp.encode(other), vote=vote))


class OmitEntries(Replica):
    """A new primary that re-prepares nothing, dropping the selected entry."""

    def _new_view_pick(self, start: Start) -> Entry | None:
        return None


class WithholdCommit(Replica):
    """t = 1 follower (FORKING_MODES): logs a proposal with both votes, never sends its
    COMMIT, appends the block to its own chain and leaves the protocol (the observer-fork
    attacker; its node also lies about its head, runtime/node.py)."""

    _withheld = False

    def _certified_as_follower(self, entry: Entry, actions: list[Action]) -> bool:
        self._withheld = True
        self._finalize(entry.block, decode(entry.certificate, CommitCertificate), actions)
        return True

    def _output(self, actions: list[Action]) -> list[Action]:
        if self._withheld:
            return [action for action in actions if not isinstance(action, Send)]
        return actions


class DropLog(Replica):
    """Data loss (XFT §4.4 "state loss"): in every VIEW-CHANGE it reports a final head
    DROPPED_BLOCKS below its own and no log entry, as a replica that lost the end of its
    log would (its ledger is intact: it lies only in what it tells the new view)."""

    DROPPED_BLOCKS = 2

    def _view_change_message(self) -> ViewChange:
        final = self._app.final_height() - self.DROPPED_BLOCKS
        head = self._app.final_block(final)
        if final < max(self._epoch, 1) or head is None:
            return super()._view_change_message()  # nothing of this epoch to lose yet
        message = self._sign(ViewChange(
            sender=self._index, view=self.view, final_height=final, final_hash=head.hash,
            final_certificate=self._final_certificate(final), entry_view=0, entry_block=b"",
            entry_certificate=b""))
        assert isinstance(message, ViewChange)
        return message


MODES: dict[str, type[Replica]] = {
    "bad-signature": BadSignature,
    "silent": Silent,
    "wrong-roots": WrongRoots,
    "equivocate": Equivocate,
    "omit-entries": OmitEntries,
    "withhold-commit": WithholdCommit,
    "drop-log": DropLog,
}


def replica_class(mode: str | None) -> type[Replica]:
    """The replica to build for `[consensus] byzantine` (None: the honest one)."""
    return Replica if mode is None else MODES[mode]
