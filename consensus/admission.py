"""What a peer's consensus message may cost this node before its blocks are decoded.

Decoding a block is the one expensive step of taking in a message: a frame-sized block of
~25,000 transactions costs 1-3 s of CPU on two shared cores, while every other field is a
few bytes. So blocks are never decoded on arrival (`message_from_wire` leaves them raw);
they are decoded when a handler needs one, after the cheap fields said the block is of use.
The rules of that order live here:

- `role_refusal`: who may send which message of a view to whom. A PREPARE or NEW-VIEW of
  view v comes from v's primary to one of its followers, COMMIT, COMMITTED, VC-FINAL and
  VC-CONFIRM from a member of v's group to a member, a VIEW-CHANGE of v goes to a member of
  v's group. A pure function of the raw fields (type, view, sender) and the receiver: the
  node applies it to the wire dict before decoding or checking a signature, and the replica
  to what it is handed (a future view's message is held only if it passes).
- The replica's handlers (consensus/common.py, consensus/viewchange.py) decode a block only
  once the height fits (a PREPARE: the next height, or the one after it, held undecoded),
  a copy of the block it already holds is recognised by its bytes, a FINAL's certificate
  and finality proof are checked before its block is decoded, and a VIEW-CHANGE or VC-FINAL
  is checked only by a member in a view change, once per sender and view.
- `DecodeBudget`: what is still decoded is charged to the peer that sent it, in bytes per
  second (a token bucket per peer, `[consensus] decode_bytes_per_s` and
  `decode_burst_bytes`), and given back when the block turns out to be of use (a proposal
  that executes, a final block, a certified log entry, blocks sync applies): those are the
  chain's own work, bounded by the protocol (one per height or view) and by execution,
  which costs more than decoding. So what the budget bounds is decoding for nothing: even
  the primary of a view, or a peer asked for blocks by block sync, cannot make this node
  spend more than that on blocks that are invalid, forged or not the next. A block decoded
  before (consensus/messages.py RECENT_BLOCKS) costs nothing. Over budget, the message is
  dropped and counted (`RejectReason.DECODE_BUDGET`), never a disconnect: a primary's
  retransmission gets through once its bucket refills, and a primary over budget for ever
  stalls its view, which its followers suspect as they would a slow one.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from chain.certificate import synchronous_group
from consensus.errors import RejectReason

# Peers whose buckets are kept (bookkeepers and the peers block sync asks, far fewer): the
# least recently charged goes first, with a full bucket, which is what it would refill to.
BUDGET_PEERS_MAX = 1024

# (from the primary, to a follower) / (from a member, to a member) / (to a member)
_FROM_PRIMARY = frozenset(("prepare", "new_view"))
_AMONG_MEMBERS = frozenset(("commit", "committed", "vc_final", "vc_confirm"))
_TO_MEMBERS = frozenset(("view_change",))


def role_refusal(kind: str, view: int, sender: int, receiver: int, n: int,
                 t: int) -> RejectReason | None:
    """Why `receiver` never takes a message `kind` of `view` from `sender` (None: it may).
    Messages of no view (FINAL, FAULT) and SUSPECT (forwarded for its author, who the
    replica checks) have no role rule here."""
    group = synchronous_group(view, n, t)
    if kind in _FROM_PRIMARY:
        if sender != group[0]:
            return RejectReason.NOT_FROM_PRIMARY
        if receiver not in group[1:]:
            return RejectReason.NOT_ADDRESSED
    elif kind in _AMONG_MEMBERS:
        if sender not in group:
            return RejectReason.NOT_A_MEMBER
        if receiver not in group:
            return RejectReason.NOT_ADDRESSED
    elif kind in _TO_MEMBERS and receiver not in group:
        return RejectReason.NOT_ADDRESSED
    return None


def wire_refusal(wire: dict[str, Any], receiver: int, n: int, t: int) -> RejectReason | None:
    """`role_refusal` on a message still in its wire form, before anything else is read:
    one whose type, view or sender is malformed is left to `message_from_wire` to refuse."""
    kind, view, sender = wire.get("type"), wire.get("view"), wire.get("sender")
    if not isinstance(kind, str) or type(view) is not int or type(sender) is not int or view < 0:
        return None
    return role_refusal(kind, view, sender, receiver, n, t)


class DecodeBudget:
    """A token bucket of bytes per peer: `rate_bytes_per_s` refill it, up to `burst_bytes`
    (at least the largest block, or an honest primary's biggest proposal would never fit).
    Time is the caller's (milliseconds, monotonic): no clock is read here."""

    def __init__(self, rate_bytes_per_s: int, burst_bytes: int) -> None:
        assert rate_bytes_per_s > 0 and burst_bytes > 0, "a budget must let something through"
        self.rate_bytes_per_s = rate_bytes_per_s
        self.burst_bytes = burst_bytes
        self._buckets: OrderedDict[bytes, tuple[int, int]] = OrderedDict()  # peer -> (bytes, at ms)

    def take(self, peer: bytes, size: int, now_ms: int) -> bool:
        """Charge `size` bytes to `peer`; False (and nothing charged) when its bucket holds
        less."""
        held, at = self._buckets.pop(peer, (self.burst_bytes, now_ms))
        held = min(self.burst_bytes, held + max(0, now_ms - at) * self.rate_bytes_per_s // 1000)
        allowed = size <= held
        self._buckets[peer] = (held - size if allowed else held, now_ms)
        while len(self._buckets) > BUDGET_PEERS_MAX:
            self._buckets.popitem(last=False)
        return allowed

    def give_back(self, peer: bytes, size: int) -> None:
        """Return `size` bytes taken from `peer`: what they paid for was of use."""
        if peer in self._buckets:
            held, at = self._buckets[peer]
            self._buckets[peer] = (min(self.burst_bytes, held + size), at)
