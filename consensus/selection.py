"""Selection of the new view's starting point from merged VIEW-CHANGE messages.

Pure functions over already verified messages. Every new active replica merges the
VIEW-CHANGE sets of all VC-FINALs of its group and runs the same selection, so the
primary's NEW-VIEW can be checked by each follower against its own (docs/consensus.md,
"The protocol, condensed", view change steps 3-4).

The start F is the highest final head reported (its certificate was checked). A sender's
commit log holds at most its committed entry at its own final+1 (consensus/log.py), so a
pick exists only at F+1: among committed entries there that extend F's hash, the one
from the highest view wins. Why this is safe: a replica finalizes a block only once every
member of the view's group holds its full certificate, and the 2Δ wait puts a correct
synchronous replica's log in every selection outside anarchy; a full certificate of a
later view needs the vote of a correct member, which only votes for its own selection.
Two certificates of one view on different blocks need a member that voted twice (anarchy);
the smallest hash breaks such a tie so that all members still agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from consensus.log import Entry
from consensus.messages import VcFinal, ViewChange
from crypto import Hash32


@dataclass(frozen=True)
class Start:
    final_height: int
    final_hash: Hash32
    source: int  # a sender that holds the final head, to catch up from
    pick: Entry | None  # the committed entry to re-prepare at final_height+1


def merge(vc_finals: Iterable[VcFinal]) -> dict[int, ViewChange]:
    """One VIEW-CHANGE per sender; if a (Byzantine) sender signed several, every member
    keeps the same one: the most advanced."""
    merged: dict[int, ViewChange] = {}
    for vc_final in vc_finals:
        for vc in vc_final.view_changes:
            kept = merged.get(vc.sender)
            if kept is None or _rank(vc) > _rank(kept):
                merged[vc.sender] = vc
    return merged


def _rank(vc: ViewChange) -> tuple[int, int, bytes, bytes]:
    return (vc.final_height, vc.entry_view, vc.entry_block, vc.signature)


def select(view_changes: dict[int, ViewChange]) -> Start:
    assert view_changes, "a selection needs at least n - t view changes"
    best = max(view_changes.values(), key=lambda vc: (vc.final_height, -vc.sender))
    candidates = []
    for vc in view_changes.values():
        block = vc.decoded_block("entry_block")  # checked: _check_view_change decoded it
        if block is None:
            continue
        entry = Entry.create(vc.entry_view, vc.entry_block, b"", vc.entry_certificate,
                             block=block)
        parent = entry.block.header.parent_hash
        if entry.height == best.final_height + 1 and parent == best.final_hash:
            candidates.append(entry)
    pick = min(candidates, key=lambda entry: (-entry.view, entry.block_hash), default=None)
    return Start(best.final_height, best.final_hash, best.sender, pick)
