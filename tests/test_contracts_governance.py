"""Governance: bookkeeper set changes need a quorum of administrators and a majority of the
current bookkeepers, keep n = 2t+1, and take effect at acceptance + activation_distance."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chain.epochs import GOVERNANCE, Epoch, epoch_at
from contracts.testing import BOOKKEEPERS, TestChain, address_of, events, key_of, reason

ADMINS = ("admin", "admin2", "admin3")
NODES = [f"bookkeeper-{i}" for i in range(BOOKKEEPERS)]  # TestChain's genesis set, t = 1
NEW = [key_of(f"new-{i}").public_key for i in range(2)]


def key(name: str) -> bytes:
    return key_of(name).public_key


@pytest.fixture
def chain() -> Iterator[TestChain]:
    c = TestChain({"registry": {"admins": [address_of(a).hex() for a in ADMINS]},
                   "governance": {"activation_distance": 5}}, {name: 10**6 for name in (*ADMINS, "stranger")})
    yield c
    c.close()


def schedule(chain: TestChain) -> list[Epoch]:
    value = chain.view(GOVERNANCE, "epochs", [])
    assert isinstance(value, list)
    return [Epoch.from_value(item) for item in value]


def test_genesis_set_is_the_first_epoch(chain: TestChain) -> None:
    assert schedule(chain) == [Epoch(1, tuple(key(n) for n in NODES), 1)]
    assert chain.view(GOVERNANCE, "set_at", [10**6]) == [1, [key(n) for n in NODES], 1]


def test_both_houses_accept_and_the_change_starts_at_a_fixed_distance(chain: TestChain) -> None:
    """2 of 3 admins and 2 of 3 bookkeepers: 3 -> 5 at acceptance + 5; then 5 -> 3."""
    proposed = chain.send("admin", GOVERNANCE, "propose", ["add", NEW, 2])
    assert proposed.succeeded
    proposal_id = events(proposed, "Proposed")[0]["id"]
    for voter in ("bookkeeper-0", "admin2"):  # one bookkeeper and a quorum of admins: not yet
        assert chain.send(voter, GOVERNANCE, "vote", [proposal_id]).succeeded
    assert len(schedule(chain)) == 1
    assert reason(chain.send("admin2", GOVERNANCE, "vote", [proposal_id])) == "already-voted"
    accepted = chain.send("bookkeeper-2", GOVERNANCE, "vote", [proposal_id])
    height = chain.chain.height
    start = events(accepted, "Accepted")[0]["start"]
    assert start == height + 5
    epochs = schedule(chain)
    assert epochs[-1] == Epoch(start, tuple(key(n) for n in NODES) + tuple(NEW), 2)
    assert epoch_at(epochs, start - 1).n == 3 and epoch_at(epochs, start).n == 5
    assert chain.view(GOVERNANCE, "proposals", []) == []
    # nothing else is proposed while the change waits for its height
    assert reason(chain.send("admin", GOVERNANCE, "propose", ["remove", NEW, 1])) == "change-waiting"
    while chain.chain.height < start:
        chain.block([])
    # 5 -> 3: now three of the five bookkeepers are a majority, and new ones vote too
    proposed = chain.send("admin3", GOVERNANCE, "propose", ["remove", [key("bookkeeper-1"), NEW[0]], 1])
    proposal_id = events(proposed, "Proposed")[0]["id"]
    for voter in ("admin", "bookkeeper-0", "bookkeeper-2"):
        assert chain.send(voter, GOVERNANCE, "vote", [proposal_id]).succeeded
    assert len(schedule(chain)) == 2  # two of five bookkeepers so far
    accepted = chain.send("new-0", GOVERNANCE, "vote", [proposal_id])  # its account came with the change
    assert events(accepted, "Accepted")[0]["keys"] == [key("bookkeeper-0"), key("bookkeeper-2"), NEW[1]]


def test_a_proposal_without_a_majority_does_nothing_and_expires() -> None:
    chain = TestChain({"registry": {"admins": [address_of(a).hex() for a in ADMINS]},
                       "governance": {"proposal_ttl_blocks": 3}}, {name: 10**6 for name in ADMINS})
    try:
        proposal_id = events(chain.send("bookkeeper-0", GOVERNANCE, "propose", ["replace", [key("bookkeeper-1"),
                                                                                          NEW[0]], 1]),
                             "Proposed")[0]["id"]
        # every administrator, but one bookkeeper of three: no change
        for voter in ADMINS:
            assert chain.send(voter, GOVERNANCE, "vote", [proposal_id]).succeeded
        assert len(schedule(chain)) == 1
        for _ in range(3):
            chain.block([])
        assert reason(chain.send("bookkeeper-1", GOVERNANCE, "vote", [proposal_id])) == "unknown-proposal"
        assert chain.view(GOVERNANCE, "proposals", []) == []
        assert len(schedule(chain)) == 1
    finally:
        chain.close()


def test_replace_keeps_the_index_and_bookkeepers_alone_cannot_change_the_set(chain: TestChain) -> None:
    proposed = chain.send("bookkeeper-1", GOVERNANCE, "propose", ["replace", [key("bookkeeper-1"), NEW[0]], 1])
    proposal_id = events(proposed, "Proposed")[0]["id"]
    for voter in ("bookkeeper-0", "bookkeeper-2"):  # every bookkeeper, no administrator
        assert chain.send(voter, GOVERNANCE, "vote", [proposal_id]).succeeded
    assert len(schedule(chain)) == 1
    assert chain.send("admin", GOVERNANCE, "vote", [proposal_id]).succeeded
    assert len(schedule(chain)) == 1  # one administrator of three
    assert chain.send("admin2", GOVERNANCE, "vote", [proposal_id]).succeeded
    assert schedule(chain)[-1].keys == (key("bookkeeper-0"), NEW[0], key("bookkeeper-2"))


@pytest.mark.parametrize(("sender", "args", "why"), [
    ("stranger", ["add", NEW, 2], "not-a-voter"),
    ("admin", ["add", NEW[:1], 1], "bad-change"),  # n = 4: not 2t+1
    ("admin", ["add", NEW, 1], "bad-change"),  # n = 5 with t = 1
    ("admin", ["add", [NEW[0], NEW[0]], 2], "bad-change"),
    ("admin", ["add", [key("bookkeeper-0"), NEW[0]], 2], "bad-change"),
    ("admin", ["remove", [key("bookkeeper-0"), key("bookkeeper-1")], 0], "bad-change"),  # t >= 1
    ("admin", ["remove", [NEW[0]], 1], "bad-change"),
    ("admin", ["replace", [key("bookkeeper-0"), NEW[0]], 2], "bad-change"),  # t unchanged
    ("admin", ["replace", [NEW[0], NEW[1]], 1], "bad-change"),
    ("admin", ["add", [key("admin"), NEW[0]], 2], "admin-key"),
    ("admin", ["rotate", NEW, 2], "bad-kind"),
    ("admin", ["add", [b"\x01" * 31, NEW[0]], 2], "bad-key"),
])
def test_refused_proposals(chain: TestChain, sender: str, args: list, why: str) -> None:
    assert reason(chain.send(sender, GOVERNANCE, "propose", args)) == why
    assert len(schedule(chain)) == 1
