"""Commit certificates and finality proofs: which bookkeepers vote in a view, what they
sign, and the checks.

XPaxos (docs/consensus.md) rotates views over the C(n, t+1) synchronous groups in a fixed order (a
view's primary is never in the next view's group); a
block is *committed* once all t+1 members of the view's group signed COMMIT for it (the
certificate), and *final* once every member holds that certificate (consensus/replica.py).
A certificate alone proves only the first: with t = 1 a follower holds one the moment it
votes, so a Byzantine follower can withhold its COMMIT and show a certified block the group
never finalized. The finality proof closes that gap (docs/consensus.md says why it is
sound): signatures on `final_message` by
  - t = 1: the primary of the view, which signs once the follower's COMMIT arrived; the
    follower held the certificate before it voted, so both members hold it;
  - t >= 2: every member of the group, each signing once it logged the certificate
    (COMMITTED); no member can vouch for another.
The ledger checks both itself (block sync, `node.py verify`, light clients), so the rules
live here and consensus/ imports them.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations

import rlp

from chain.errors import InvalidCertificate
from chain.types import CommitCertificate, Vote
from crypto import Hash32, is_valid_signature


@lru_cache(maxsize=64)
def _groups(n: int, t: int) -> tuple[tuple[int, ...], ...]:
    """Every one of the C(n, t+1) groups once, in an order where the primary of each view is
    outside the next view's group (docs/consensus.md "Group order"): the view change after a
    primary's crash then reaches a group without it at once. First the n cyclic windows
    (i, i+1, ..., i+t mod n), primary i: for t = 1 that is all of them, (0,1), (1,2), (2,0).
    Then the other groups in lexicographic order. The primary of a group is its lowest
    member not in the next group (there is one: the groups differ and have one size), the
    other members follow in ascending order."""
    size = t + 1
    windows = [frozenset((i + k) % n for k in range(size)) for i in range(n)]
    rest = [frozenset(g) for g in combinations(range(n), size) if frozenset(g) not in windows]
    order = windows + rest
    groups = []
    for view, members in enumerate(order):
        primary = min(members - order[(view + 1) % len(order)])
        groups.append((primary, *sorted(members - {primary})))
    return tuple(groups)


def synchronous_group(view: int, n: int, t: int) -> tuple[int, ...]:
    """Members of sg_view, primary first."""
    assert n == 2 * t + 1, "XPaxos runs n = 2t+1 bookkeepers"
    groups = _groups(n, t)
    return groups[view % len(groups)]


def primary_of(view: int, n: int, t: int) -> int:
    return synchronous_group(view, n, t)[0]


def commit_message(chain_id: int, view: int, height: int, block_hash: Hash32) -> bytes:
    """The bytes every vote of a certificate signs (domain-separated)."""
    return b"gridchain/commit\x00" + rlp.encode([chain_id, view, height, block_hash])


def final_message(chain_id: int, view: int, height: int, block_hash: Hash32) -> bytes:
    """The bytes a finality signature signs: "I hold the full certificate of this block"
    (t >= 2, each member), or "every member holds it" (t = 1, the primary)."""
    return b"gridchain/final\x00" + rlp.encode([chain_id, view, height, block_hash])


def finality_signers(view: int, n: int, t: int) -> tuple[int, ...]:
    """Whose finality signatures make a certified block of `view` final, in group order."""
    group = synchronous_group(view, n, t)
    return group[:1] if t == 1 else group


def verify_certificate(
    certificate: CommitCertificate,
    *,
    chain_id: int,
    height: int,
    block_hash: Hash32,
    bookkeepers: list[bytes],
    t: int,
) -> None:
    """Raise InvalidCertificate unless every member of sg_view signed this block."""
    group = synchronous_group(certificate.view, len(bookkeepers), t)
    voters = [vote.replica for vote in certificate.votes]
    if sorted(voters) != sorted(group) or len(set(voters)) != len(voters):
        raise InvalidCertificate(
            f"votes from {sorted(voters)}, view {certificate.view} needs {list(group)}"
        )
    _check_signatures(certificate.votes, commit_message(chain_id, certificate.view, height, block_hash),
                      bookkeepers, "signature")


def verify_finality(
    certificate: CommitCertificate,
    *,
    chain_id: int,
    height: int,
    block_hash: Hash32,
    bookkeepers: list[bytes],
    t: int,
) -> None:
    """Raise InvalidCertificate unless the certificate verifies and its finality proof
    holds exactly the signatures `finality_signers` names, each on this block."""
    verify_certificate(certificate, chain_id=chain_id, height=height, block_hash=block_hash,
                       bookkeepers=bookkeepers, t=t)
    signers = finality_signers(certificate.view, len(bookkeepers), t)
    named = [vote.replica for vote in certificate.finality]
    if named != list(signers):
        raise InvalidCertificate(
            f"finality signed by {named}, view {certificate.view} needs {list(signers)}"
        )
    _check_signatures(certificate.finality, final_message(chain_id, certificate.view, height, block_hash),
                      bookkeepers, "finality signature")


def _check_signatures(votes: list[Vote], message: bytes, bookkeepers: list[bytes], what: str) -> None:
    for vote in votes:
        if not is_valid_signature(bookkeepers[vote.replica], vote.signature, message):
            raise InvalidCertificate(f"bad {what} from bookkeeper {vote.replica}")
