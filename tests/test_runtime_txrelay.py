"""TxRelay: work proportional to what is new. A transaction is pushed whole once per peer
that lacks it; afterwards only its hash travels, with a doubling interval, and never to a
peer that showed it holds it."""

from __future__ import annotations

from runtime.txrelay import INV_HASHES_MAX, TX_BATCH_MAX, TX_GET, TX_INV, TXS, RelayLimits, TxRelay

A, B, C = b"a" * 32, b"b" * 32, b"c" * 32


def _hash(i: int) -> bytes:
    return i.to_bytes(32, "big")


def _relay(**limits: int) -> TxRelay:
    relay = TxRelay(RelayLimits(**limits), pending_max=100_000)
    relay.peer_up(A)
    relay.peer_up(B)
    return relay


def _by_peer(outgoing: list) -> dict[bytes, list[dict]]:
    grouped: dict[bytes, list[dict]] = {}
    for peer, message in outgoing:
        grouped.setdefault(peer, []).append(message)
    return grouped


def test_a_new_transaction_is_pushed_once_to_every_peer_but_its_origin() -> None:
    relay = _relay()
    relay.admitted(_hash(1), b"raw1", now_ms=0, origin=A)
    relay.admitted(_hash(2), b"raw2", now_ms=0)
    sent = _by_peer(relay.flush())
    assert sent[A] == [{"type": TXS, "raw": [b"raw2"]}]
    assert sent[B] == [{"type": TXS, "raw": [b"raw1", b"raw2"]}]
    assert relay.flush() == []  # pushed once


def test_pushes_are_cut_into_bounded_frames() -> None:
    relay = _relay()
    for i in range(TX_BATCH_MAX + 5):
        relay.admitted(_hash(i), b"x" * 100, now_ms=0)
    frames = _by_peer(relay.flush())[A]
    assert [len(f["raw"]) for f in frames] == [TX_BATCH_MAX, 5]


def test_reannouncement_is_by_hash_with_a_doubling_interval_and_skips_holders() -> None:
    relay = _relay(reannounce_first_ms=1_000, reannounce_max_ms=4_000)
    relay.admitted(_hash(1), b"raw1", now_ms=0)
    relay.flush()
    always = lambda h: True  # noqa: E731 - still pending
    assert relay.due_announcements(999, 100, always) == []
    relay.mark_held(B, _hash(1))  # B sent it to us: it has it
    assert relay.due_announcements(1_000, 100, always) == [(A, {"type": TX_INV, "hashes": [_hash(1)]})]
    assert relay.due_announcements(2_999, 100, always) == []  # next at 1,000 + 2,000
    assert relay.due_announcements(3_000, 100, always) == [(A, {"type": TX_INV, "hashes": [_hash(1)]})]
    assert relay.due_announcements(6_999, 100, always) == []  # then 4,000 (capped)
    assert len(relay.due_announcements(7_000, 100, always)) == 1


def test_final_or_dropped_transactions_are_not_announced() -> None:
    relay = _relay(reannounce_first_ms=10)
    relay.admitted(_hash(1), b"r1", now_ms=0)
    relay.admitted(_hash(2), b"r2", now_ms=0)
    relay.left([_hash(1)])
    out = relay.due_announcements(100, 100, lambda h: h != _hash(2))
    assert out == [] and relay.pending_count() == 0


def test_inventory_asks_only_for_what_is_missing_and_only_once() -> None:
    relay = _relay()
    have = {_hash(1)}
    asks = relay.wanted(A, [_hash(1), _hash(2), _hash(3)], have.__contains__, now_ms=0)
    assert asks == [(A, {"type": TX_GET, "hashes": [_hash(2), _hash(3)]})]
    assert relay.wanted(B, [_hash(2)], have.__contains__, now_ms=100) == []  # already asked of A
    again = relay.wanted(B, [_hash(2)], have.__contains__, now_ms=100 + RelayLimits().request_timeout_ms + 1)
    assert again == [(B, {"type": TX_GET, "hashes": [_hash(2)]})]  # A never answered


def test_a_peer_that_announced_a_transaction_is_not_pushed_it() -> None:
    relay = _relay()
    relay.wanted(A, [_hash(7)], lambda h: False, now_ms=0)
    relay.admitted(_hash(7), b"raw7", now_ms=1, origin=B)
    assert relay.flush() == []  # A announced it, B sent it


def test_answers_carry_only_pending_transactions() -> None:
    relay = _relay()
    pending = {_hash(1): b"raw1"}
    assert relay.answer(A, [_hash(1), _hash(2)], pending.get, now_ms=0) == [(A, {"type": TXS, "raw": [b"raw1"]})]


def test_a_new_peer_gets_the_inventory_in_bounded_frames() -> None:
    relay = _relay()
    for i in range(INV_HASHES_MAX + 1):
        relay.admitted(_hash(i), b"r", now_ms=0)
    frames = relay.peer_up(C)
    assert [len(m["hashes"]) for _, m in frames] == [INV_HASHES_MAX, 1]
    assert {peer for peer, _ in frames} == {C}


def test_a_peer_repeating_requests_is_held_to_its_hash_budget() -> None:
    relay = _relay(peer_hashes_per_s_max=1_000, peer_hashes_burst_max=2_000)
    pending = {_hash(i): b"r" for i in range(1_000)}
    asked = list(pending)
    answered = sum(bool(relay.answer(A, asked, pending.get, now_ms=0)) for _ in range(10))
    assert answered == 2 and relay.over_rate == 8  # the burst holds two requests of 1,000
    assert relay.answer(B, asked, pending.get, now_ms=0) != []  # another peer has its own budget
    assert relay.answer(A, asked, pending.get, now_ms=999) == []  # 999 hashes refilled: short of 1,000
    assert relay.answer(A, asked, pending.get, now_ms=1_000) != []
    assert relay.wanted(A, asked, lambda h: False, now_ms=1_000) == []  # announcing draws on it too


def test_answers_stop_at_the_peers_byte_budget() -> None:
    relay = _relay(peer_answer_bytes_per_s_max=1_000, peer_answer_bytes_burst_max=2_500)
    pending = {_hash(i): bytes(1_000) for i in range(5)}
    first = relay.answer(A, list(pending), pending.get, now_ms=0)
    assert [len(m["raw"]) for _, m in first] == [2] and relay.over_rate == 1
    assert relay.answer(A, list(pending), pending.get, now_ms=1) == []  # 501 bytes: not one more
    later = relay.answer(A, list(pending), pending.get, now_ms=2_000)
    assert [len(m["raw"]) for _, m in later] == [2]


def test_a_reconnected_peer_starts_with_a_full_budget() -> None:
    relay = _relay(peer_hashes_per_s_max=1, peer_hashes_burst_max=10)
    assert relay.wanted(A, [_hash(i) for i in range(10)], lambda h: True, now_ms=0) == []
    assert relay.wanted(A, [_hash(11)], lambda h: False, now_ms=0) == [] and relay.over_rate == 1
    relay.peer_down(A)
    relay.peer_up(A)
    assert relay.wanted(A, [_hash(11)], lambda h: False, now_ms=0) == [(A, {"type": TX_GET, "hashes": [_hash(11)]})]


def test_a_leaving_bookkeeper_hands_every_pending_transaction_over_once() -> None:
    """Even to a peer seen to hold it (a mark is no delivery once the link ends at the
    switch); a transaction already handed over is not sent again, a new one is."""
    relay = _relay()
    relay.admitted(_hash(1), b"raw1", now_ms=0, origin=A)  # A sent it: marked as held there
    relay.flush()
    pending = [(_hash(1), b"raw1"), (_hash(2), b"raw2")]
    sent = _by_peer(relay.hand_over([A, C], pending))
    assert sent == {A: [{"type": TXS, "raw": [b"raw1", b"raw2"]}], C: [{"type": TXS, "raw": [b"raw1", b"raw2"]}]}
    assert relay.hand_over([A, C], pending) == []
    assert relay.hand_over([], [*pending, (_hash(3), b"raw3")]) == []  # nobody to hand to: kept for later
    assert _by_peer(relay.hand_over([C], [(_hash(2), b"raw2"), (_hash(3), b"raw3")])) == {
        C: [{"type": TXS, "raw": [b"raw3"]}]}
