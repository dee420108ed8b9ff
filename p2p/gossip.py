"""Gossip de-duplication: a bounded LRU of item ids with what has been done for each.

An item (a transaction, say) is known by an id its author computes from it, such as its
hash. Two facts are remembered per id, because they happen at different moments: the
item was *delivered* to the local node (so a copy arriving from a second peer is dropped),
and the item was *forwarded* to our peers (so the node's own validation-then-relay call
sends it on at most once). The oldest ids are forgotten first, past `gossip_seen_max`.
"""

from __future__ import annotations

from collections import OrderedDict

_DELIVERED = 1
_FORWARDED = 2


class GossipSeen:
    def __init__(self, capacity: int) -> None:
        assert capacity > 0
        self.capacity = capacity
        self._flags: OrderedDict[bytes, int] = OrderedDict()

    def _mark(self, item_id: bytes, flag: int, implied: int = 0) -> bool:
        """Set `flag` (and `implied`) on `item_id`, making it the newest; True if `flag`
        was not set before."""
        flags = self._flags.pop(item_id, 0)
        self._flags[item_id] = flags | flag | implied
        if len(self._flags) > self.capacity:
            self._flags.popitem(last=False)
        return not flags & flag

    def first_delivery(self, item_id: bytes) -> bool:
        """Mark `item_id` delivered; True only the first time."""
        return self._mark(item_id, _DELIVERED)

    def first_forward(self, item_id: bytes) -> bool:
        """Mark `item_id` forwarded; True only the first time. A node forwarding an item
        has it, so a copy that comes back later is not delivered to it again."""
        return self._mark(item_id, _FORWARDED, implied=_DELIVERED)

    def __len__(self) -> int:
        return len(self._flags)
