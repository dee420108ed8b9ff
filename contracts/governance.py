"""Bookkeeper set changes by on-chain vote (issue 16; docs/contracts.md "Governance").

A proposal changes the set of node keys that run consensus, keeping n = 2t+1:
  - "add": append `keys` (new t = `t`; n + len(keys) = 2t+1);
  - "remove": drop `keys` (new t = `t`; n - len(keys) = 2t+1, t >= 1);
  - "replace": `keys` = [old, new]: the new key takes the old one's index (t unchanged).
It is accepted once BOTH houses have voted for it (the proposer's vote counts):
  - `admin_quorum` distinct administrators (contracts/registry.py: the consortium decides
    who belongs), and
  - a majority, floor(n/2) + 1, of the current bookkeepers, each voting with its node key
    (the operators confirm they will run with the new set).
Accepted in block A, the change starts an epoch at A + `activation_distance`
(chain/epochs.py), identical on every replica; the replicas switch there. While an
accepted change waits for its height, no other proposal is accepted or voted on (each
change starts from the set in force), and accepting one drops the other pending proposals
(they were made against the set it replaces). Proposals expire after
`proposal_ttl_blocks`; at most `pending_max` wait at once.

The genesis set arrives as the `bookkeepers` and `t` parameters, filled in from the
genesis file's top level (chain.genesis.Genesis.contract_params), never written by hand.
"""

from __future__ import annotations

from typing import Any

from chain import Value
from chain.epochs import BOOKKEEPERS_MAX, EPOCHS_KEY, KEY_BYTES, Epoch, epoch_at
from contracts.addresses import GOVERNANCE, REGISTRY
from contracts.common import ensure_account, get_list, int_key, require
from contracts.params import ParamError, integer
from contracts.params import require as param_rule
from crypto import Address, address_of
from vm import CallContext, NativeContract, method, view

ADD, REMOVE, REPLACE = "add", "remove", "replace"
KINDS = (ADD, REMOVE, REPLACE)
LIMITS = {
    # blocks from acceptance to the first block of the new set: >= 2, so the accepting
    # block is final everywhere before anyone needs the new set (sync checks block h with
    # the schedule of block h - 1)
    "activation_distance": (10, 2),
    "proposal_ttl_blocks": (10_000, 1),
    "pending_max": (16, 1),
}
NEXT_KEY = b"next"
PENDING_KEY = b"pending"


def _proposal_key(proposal_id: int) -> bytes:
    return int_key(b"p:", proposal_id)


def limits(params: dict[str, Any]) -> dict[str, int]:
    return {name: integer(params, "governance", name, default, low=low) for name, (default, low) in LIMITS.items()}


def validate_params(params: dict[str, Any]) -> None:
    limits(params)
    if "bookkeepers" in params:
        keys = params["bookkeepers"]
        t = integer(params, "governance", "t", 1, low=1)
        param_rule(isinstance(keys, list) and len(keys) == 2 * t + 1, "governance", "bookkeepers",
                   "n = 2t+1 node keys", keys)
        for key in keys:
            if not isinstance(key, str) or len(bytes.fromhex(key)) != KEY_BYTES:
                raise ParamError("governance", "bookkeepers", "32-byte hex Ed25519 keys", key)


def new_set(current: Epoch, kind: str, keys: list[bytes], t: int) -> tuple[tuple[bytes, ...], str]:
    """The keys after the change and "" , or () and why it cannot apply to `current`."""
    if kind == REPLACE:
        if len(keys) != 2 or t != current.t:
            return (), "replace takes [old, new] and keeps t"
        old, new = keys
        if old not in current.keys or new in current.keys:
            return (), "old must be a bookkeeper, new must not"
        return tuple(new if key == old else key for key in current.keys), ""
    if not keys or len(set(keys)) != len(keys):
        return (), "at least one key, no key twice"
    if kind == ADD:
        if any(key in current.keys for key in keys):
            return (), "a key to add is a bookkeeper already"
        after = current.keys + tuple(keys)
    else:
        if any(key not in current.keys for key in keys):
            return (), "a key to remove is no bookkeeper"
        after = tuple(key for key in current.keys if key not in keys)
    if t < 1 or len(after) != 2 * t + 1 or len(after) > BOOKKEEPERS_MAX:
        return (), f"the new set has {len(after)} keys: need 2t+1 with t = {t} >= 1, at most {BOOKKEEPERS_MAX}"
    return after, ""


class Governance(NativeContract):
    name = "governance"
    address = GOVERNANCE

    def __init__(self, params: dict[str, Any]) -> None:
        validate_params(params)
        self.params = params
        named = limits(params)
        self.activation_distance = named["activation_distance"]
        self.proposal_ttl_blocks = named["proposal_ttl_blocks"]
        self.pending_max = named["pending_max"]

    def genesis(self, ctx: CallContext) -> None:
        keys = [bytes.fromhex(key) for key in self.params.get("bookkeepers", [])]
        if keys:
            ctx.set_value(EPOCHS_KEY, [Epoch(1, tuple(keys), int(self.params["t"])).to_value()])

    # methods ----------------------------------------------------------------------------
    @method
    def propose(self, ctx: CallContext, kind: str, keys: list[bytes], t: int) -> int:
        """Propose a set change (an administrator or a bookkeeper); returns its id. The
        proposer's vote counts at once, so a single-house quorum may accept it here."""
        require(kind in KINDS, "bad-kind", f"{kind!r} is one of {', '.join(KINDS)}")
        require(all(len(key) == KEY_BYTES for key in keys), "bad-key", "node keys are 32 bytes")
        self._require_voter(ctx)
        self._require_no_change_waiting(ctx)
        _, problem = new_set(self._current(ctx), kind, keys, t)
        require(not problem, "bad-change", problem)
        require(not any(self._is_admin(ctx, address_of(key)) for key in keys), "admin-key",
                "an administrator's key is not a node key")
        pending = self._prune(ctx)
        require(len(pending) < self.pending_max, "too-many-proposals",
                f"at most {self.pending_max} proposals wait at once")
        proposal_id = ctx.get_int(NEXT_KEY)
        ctx.set_value(NEXT_KEY, proposal_id + 1)
        ctx.set_value(_proposal_key(proposal_id), [kind, list(keys), t, ctx.sender, ctx.block.number, []])
        ctx.set_value(PENDING_KEY, [*pending, proposal_id])
        ctx.emit("Proposed", id=proposal_id, kind=kind, keys=list(keys), t=t, by=ctx.sender)
        self._record_vote(ctx, proposal_id)
        return proposal_id

    @method
    def vote(self, ctx: CallContext, proposal_id: int) -> None:
        """Vote for a pending proposal (an administrator or a current bookkeeper, once)."""
        self._require_voter(ctx)
        self._require_no_change_waiting(ctx)
        require(proposal_id in self._live_pending(ctx), "unknown-proposal", f"no pending proposal {proposal_id}")
        self._record_vote(ctx, proposal_id)

    # views ------------------------------------------------------------------------------
    @view
    def epochs(self, ctx: CallContext) -> Value:
        """The schedule: [[start, [keys], t], ...], the genesis set first (chain/epochs.py)."""
        return get_list(ctx, EPOCHS_KEY)

    @view
    def set_at(self, ctx: CallContext, height: int) -> Value:
        """[start, [keys], t] of the set that certifies `height` (as far as this state knows:
        heights up to this block + activation_distance)."""
        return epoch_at(self._epochs(ctx), height).to_value()

    @view
    def proposals(self, ctx: CallContext) -> Value:
        """Pending proposals: [[id, kind, keys, t, proposer, height, voters], ...]."""
        return [[proposal_id, *self._proposal(ctx, proposal_id)] for proposal_id in self._live_pending(ctx)]

    @view
    def parameters(self, ctx: CallContext) -> Value:
        """[activation_distance, proposal_ttl_blocks, pending_max]."""
        return [self.activation_distance, self.proposal_ttl_blocks, self.pending_max]

    # ------------------------------------------------------------------------------------
    def _epochs(self, ctx: CallContext) -> list[Epoch]:
        return [Epoch.from_value(item) for item in get_list(ctx, EPOCHS_KEY)]

    def _current(self, ctx: CallContext) -> Epoch:
        epochs = self._epochs(ctx)
        require(bool(epochs), "no-bookkeepers", "this chain has no bookkeeper set")
        return epochs[-1]

    def _require_no_change_waiting(self, ctx: CallContext) -> None:
        current = self._current(ctx)
        require(current.start <= ctx.block.number, "change-waiting",
                f"an accepted change starts at height {current.start}")

    def _is_admin(self, ctx: CallContext, who: Address) -> bool:
        return ctx.view(REGISTRY, "is_admin", [who]) is True

    def _is_bookkeeper(self, ctx: CallContext, who: Address) -> bool:
        return who in {address_of(key) for key in self._current(ctx).keys}

    def _require_voter(self, ctx: CallContext) -> None:
        require(self._is_admin(ctx, ctx.sender) or self._is_bookkeeper(ctx, ctx.sender), "not-a-voter",
                "administrators and current bookkeepers (their node keys) vote")

    def _live_pending(self, ctx: CallContext) -> list[int]:
        """Pending ids younger than proposal_ttl_blocks (older ones no longer count)."""
        pending = [p for p in get_list(ctx, PENDING_KEY) if isinstance(p, int)]
        return [p for p in pending if ctx.block.number - self._created(ctx, p) <= self.proposal_ttl_blocks]

    def _prune(self, ctx: CallContext) -> list[int]:
        """Forget expired proposals; the live ones."""
        live = self._live_pending(ctx)
        for expired in get_list(ctx, PENDING_KEY):
            if expired not in live:
                assert isinstance(expired, int)
                ctx.delete(_proposal_key(expired))
                ctx.emit("Expired", id=expired)
        ctx.set_value(PENDING_KEY, list(live))
        return live

    def _created(self, ctx: CallContext, proposal_id: int) -> int:
        created = self._proposal(ctx, proposal_id)[4]
        assert isinstance(created, int)
        return created

    def _proposal(self, ctx: CallContext, proposal_id: int) -> list[Value]:
        stored = ctx.get_value(_proposal_key(proposal_id))
        assert isinstance(stored, list), "a pending proposal is stored"
        return stored

    def _record_vote(self, ctx: CallContext, proposal_id: int) -> None:
        kind, keys, t, proposer, created, voters = self._proposal(ctx, proposal_id)
        assert isinstance(voters, list) and isinstance(keys, list) and isinstance(kind, str) and isinstance(t, int)
        require(ctx.sender not in voters, "already-voted", f"0x{ctx.sender.hex()} voted for {proposal_id}")
        voters = [*voters, ctx.sender]
        ctx.set_value(_proposal_key(proposal_id), [kind, keys, t, proposer, created, voters])
        current = self._current(ctx)
        admins = sum(1 for v in voters if isinstance(v, bytes) and self._is_admin(ctx, v))
        bookkeepers = sum(1 for v in voters if isinstance(v, bytes) and self._is_bookkeeper(ctx, v))
        quorum = ctx.view(REGISTRY, "admin_quorum", [])
        assert isinstance(quorum, int)
        ctx.emit("Voted", id=proposal_id, by=ctx.sender, admins=admins, bookkeepers=bookkeepers)
        if admins >= quorum and bookkeepers >= current.n // 2 + 1:
            self._accept(ctx, proposal_id, current, kind, [k for k in keys if isinstance(k, bytes)], t)

    def _accept(self, ctx: CallContext, proposal_id: int, current: Epoch, kind: str, keys: list[bytes],
                t: int) -> None:
        after, problem = new_set(current, kind, keys, t)
        assert not problem, "checked when proposed, against this set (an accepted change drops the others)"
        start = ctx.block.number + self.activation_distance
        ctx.set_value(EPOCHS_KEY, [*get_list(ctx, EPOCHS_KEY), Epoch(start, after, t).to_value()])
        # The others were made against the set this one replaces: they are dropped.
        for other in get_list(ctx, PENDING_KEY):
            assert isinstance(other, int)
            ctx.delete(_proposal_key(other))
            if other != proposal_id:
                ctx.emit("Dropped", id=other)
        ctx.set_value(PENDING_KEY, [])
        for key in after:
            ensure_account(ctx, address_of(key))  # a new bookkeeper votes with its node key
        ctx.emit("Accepted", id=proposal_id, start=start, keys=list(after), t=t)
