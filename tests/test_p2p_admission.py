"""HandshakeSlots: silent connections are evicted oldest first; claimed ones and ones that
sent bytes are not; one claim per key."""

from __future__ import annotations

from typing import Any

from p2p.admission import HandshakeSlots


class FakeTransport:
    def abort(self) -> None:
        pass


def transport() -> Any:
    return FakeTransport()


def silent() -> bool:
    return False


def test_a_connection_that_spoke_is_not_evicted_for_a_newcomer() -> None:
    slots = HandshakeSlots(total_max=2, per_host_max=2)
    speaking, _ = slots.admit("h", transport(), lambda: True)
    squatter, _ = slots.admit("h", transport(), silent)
    newcomer, evicted = slots.admit("h", transport(), silent)
    assert newcomer is not None and evicted == [squatter] and speaking is not None and not speaking.evicted


def test_a_full_host_loses_its_oldest_anonymous_connection() -> None:
    slots = HandshakeSlots(total_max=10, per_host_max=2)
    first, _ = slots.admit("10.0.0.1", transport(), silent)
    second, _ = slots.admit("10.0.0.1", transport(), silent)
    other, _ = slots.admit("10.0.0.2", transport(), silent)
    third, evicted = slots.admit("10.0.0.1", transport(), silent)
    assert third is not None and evicted == [first] and first is not None and first.evicted
    assert second is not None and not second.evicted and other is not None and not other.evicted
    assert len(slots) == 3


def test_claimed_slots_are_not_evicted_for_strangers() -> None:
    slots = HandshakeSlots(total_max=2, per_host_max=2)
    peer, _ = slots.admit("h", transport(), silent)
    stranger, _ = slots.admit("h", transport(), silent)
    assert peer is not None and stranger is not None
    slots.claim(peer, b"k" * 32)
    newcomer, evicted = slots.admit("h", transport(), silent)
    assert newcomer is not None and evicted == [stranger]
    slots.claim(newcomer, b"j" * 32)
    refused, evicted = slots.admit("h", transport(), silent)
    assert refused is None and evicted == []  # every slot is claimed


def test_a_second_claim_of_a_key_evicts_the_first() -> None:
    slots = HandshakeSlots(total_max=4, per_host_max=4)
    older, _ = slots.admit("h", transport(), silent)
    newer, _ = slots.admit("h", transport(), silent)
    assert older is not None and newer is not None
    assert slots.claim(older, b"k" * 32) == []
    assert slots.claim(newer, b"k" * 32) == [older]
    slots.release(older)  # its serve task releases it again: harmless
    assert len(slots) == 1
