"""Commit certificates: which bookkeepers vote in a view, what they sign, and the check.

XPaxos (XFT.md) rotates views over the C(n, t+1) synchronous groups in a fixed order; a
block is final once all t+1 members of the view's group signed COMMIT for it. The ledger
checks certificates itself (block sync, `node.py verify`), so the group rule lives here
and consensus/ imports it.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations

import rlp

from chain.errors import InvalidCertificate
from chain.types import CommitCertificate
from crypto.hashing import Hash32
from crypto.keys import is_valid_signature


@lru_cache(maxsize=64)
def _groups(n: int, t: int) -> tuple[tuple[int, ...], ...]:
    # Lexicographic combinations: for n=3, t=1 this is (0,1), (0,2), (1,2) as in XFT.md;
    # the first member of a group is its primary.
    return tuple(combinations(range(n), t + 1))


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
    message = commit_message(chain_id, certificate.view, height, block_hash)
    for vote in certificate.votes:
        if not is_valid_signature(bookkeepers[vote.replica], vote.signature, message):
            raise InvalidCertificate(f"bad signature from bookkeeper {vote.replica}")
