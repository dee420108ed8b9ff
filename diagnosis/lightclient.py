"""Chain state read the light-client way (architecture decision 2, paper V.A step 3 "inquires
the state tree"): a storage slot of a contract is fetched with a Merkle proof, the proof
is checked against a block header, and the header is accepted only with a valid commit
certificate of the bookkeepers who certify its height and its finality proof
(chain.certificate.verify_finality: a certified block may be one the group never
finalized). The set of a height is learnt, never told: the genesis set (the trust anchor)
certifies heights 1..activation_distance, and the governance schedule proven against a
header at height h (chain/epochs.py) gives every set up to h + activation_distance, so the
client walks forward in steps of at most activation_distance, each step proven by the set
the last one established; a finality proof signed by a bookkeeper after its removal is
refused like any other wrong signer's. No answer of the serving node is believed on its word, nor a stale one: the
client keeps the highest certified height it has seen and refuses state proven against an
older head (`StaleState`), so a node reporting an old head cannot show a revoked member
as still active.

It is the proof checking of `diagnosis.ledger.RpcLedger`; `diagnosis.directory` reads
the records agents rely on through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rlp

from chain import BlockHeader, CommitCertificate, InvalidCertificate, Receipt, Value, Vote, decode
from chain.certificate import verify_finality
from chain.epochs import Epoch
from chain.epochwalk import SCHEDULE_KEY, BadWalk, ScheduleWalk
from chain.genesis import Genesis
from chain.proofs import InvalidProof, verify_proof
from chain.state import storage_key, trie_key
from chain.values import value_from_bytes
from client import GridClient, from_hex
from contracts.governance import limits as governance_limits
from crypto import Address, keccak256
from diagnosis.errors import DiagnosisError
from vm import fixedpoint

CREDIT_INITIAL_DEFAULT = 60  # contracts/credit.py's default for `credit_initial`
CERTIFIED_HEIGHT_TRIES_MAX = 3  # the head may not carry its certificate yet: step back
STORAGE_SLOTS_PER_READ_MAX = 16  # one batch of proofs, well under a node's [rpc] batch_max (100)
WALK_STEPS_PER_BATCH_MAX = 40  # two calls a step: 80, under batch_max (100); ~40 headers of a few kB each


class UnprovenState(DiagnosisError):
    """A proof, header or certificate that does not check out."""


class StaleState(UnprovenState):
    """A state read proven against a head below the highest certified height seen."""

    def __init__(self, height: int, highest: int) -> None:
        super().__init__(f"the node answers from height {height}, this client has seen {highest}")
        self.height = height
        self.highest = highest


@dataclass(frozen=True)
class TrustAnchor:
    """What a light client knows beforehand: the chain id and the bookkeepers' keys."""

    chain_id: int
    t: int
    bookkeepers: tuple[bytes, ...]
    # Genesis parameter needed to read a proven absent credit slot (contracts/credit.py).
    credit_initial: int
    # How far ahead of a proven state the bookkeeper schedule is complete (governance).
    activation_distance: int

    @classmethod
    def from_genesis(cls, path: Path) -> TrustAnchor:
        return cls.of(Genesis.load(path))

    @classmethod
    def of(cls, genesis: Genesis) -> TrustAnchor:
        credit = genesis.contracts.get("credit", {})
        return cls(genesis.chain_id, genesis.t, tuple(genesis.bookkeeper_keys),
                   fixedpoint.from_int(int(credit.get("credit_initial", CREDIT_INITIAL_DEFAULT))),
                   governance_limits(genesis.contracts.get("governance", {}))["activation_distance"])


@dataclass(frozen=True)
class ProvenValue:
    value: Value | None  # None: the slot is absent (proof of absence)
    header: BlockHeader


@dataclass
class LightClientStats:
    proofs: int = 0
    certificates: int = 0
    rejected: int = 0
    stale: int = 0


class LightClient:
    """Verified reads of contract storage through `proof_state`."""

    def __init__(self, client: GridClient, anchor: TrustAnchor) -> None:
        self.client = client
        self.anchor = anchor
        self.stats = LightClientStats()
        self._certified: dict[int, BlockHeader] = {}  # height -> certified header
        self.highest_certified = 0  # never goes down: answers from below it are stale
        # The bookkeeper schedule as proven so far (chain/epochwalk.py)
        self._walk = ScheduleWalk(anchor.chain_id, Epoch(1, anchor.bookkeepers, anchor.t), anchor.activation_distance)
        # One walker at a time: concurrent reads (an agent proves several slots at once)
        # would each take the same step, and all but the first be refused as out of order.
        self._walking = asyncio.Lock()

    async def storage(self, contract: Address, key: bytes) -> ProvenValue:
        return (await self.storage_many([(contract, key)]))[0]

    async def storage_many(self, slots: Sequence[tuple[Address, bytes]]) -> list[ProvenValue]:
        """Several slots proven against one certified head: one status call, the header
        (cached per height) and one JSON-RPC batch of proofs, whatever their number. A
        receiver's facts about one message are then one consistent state, read in about
        the time of one read (three reads one after the other took three times as long,
        longer than a sender waited on a loaded machine: docs/diagnosis.md)."""
        assert 0 < len(slots) <= STORAGE_SLOTS_PER_READ_MAX, len(slots)
        logicals = [storage_key(contract, key) for contract, key in slots]
        # the freshest head known when this read began: concurrent reads of one agent may
        # see their heads certified in any order, none of them is stale for that
        floor = self.highest_certified
        for _ in range(CERTIFIED_HEIGHT_TRIES_MAX):
            status = await self.client.status()
            height = int(status["height"])
            header = await self._certified_header(height) or await self._certified_header(height - 1)
            if header is not None:
                break
            await asyncio.sleep(0.05)
        else:
            raise UnprovenState("no certified header near the head")
        if header.number < floor:
            self.stats.stale += 1
            raise StaleState(header.number, floor)
        if len(logicals) == 1:
            return [await self._proven(logicals[0], header)]
        replies = await self.client.rpc.batch([("proof_state", ["0x" + logical.hex(), header.number])
                                               for logical in logicals])
        proofs = [reply.value() for reply in replies]  # a call's error raises as it would alone
        return [self._checked(logical, header, proof) for logical, proof in zip(logicals, proofs, strict=True)]

    async def _proven(self, logical: bytes, header: BlockHeader) -> ProvenValue:
        """State slot `logical` proven against the certified `header`."""
        proof = await self.client.rpc.call("proof_state", "0x" + logical.hex(), header.number)
        return self._checked(logical, header, proof)

    def _checked(self, logical: bytes, header: BlockHeader, proof: Any) -> ProvenValue:
        try:
            if from_hex(proof["key"]) != trie_key(logical):
                raise UnprovenState("the node proved another key")
            if from_hex(proof["blockHash"]) != header.hash:
                raise UnprovenState("proof for another block")
            nodes = [rlp.decode(from_hex(node)) for node in proof["proof"]]
            raw = verify_proof(header, "state", trie_key(logical), nodes)
        except (InvalidProof, UnprovenState) as exc:
            self.stats.rejected += 1
            raise UnprovenState(str(exc)) from exc
        self.stats.proofs += 1
        return ProvenValue(value_from_bytes(raw) if raw else None, header)

    async def _certifiers(self, height: int) -> Epoch:
        """The set that certifies `height`, learnt by walking the proven schedule forward."""
        if self._walk.covers(height):
            return self._walk.certifiers(height)
        async with self._walking:
            while not self._walk.covers(height):  # another reader may have walked past it meanwhile
                await self._walk_towards(height)
        return self._walk.certifiers(height)

    async def _walk_towards(self, height: int) -> None:
        """The next steps of the walk towards `height` (at most WALK_STEPS_PER_BATCH_MAX):
        their blocks and schedule proofs fetched in one JSON-RPC batch, then checked one
        after the other, each by the set the steps before it established. Fetched one step
        at a time, two round trips each, a client idle for 1,000 blocks (a smartphone with
        no open request) took 100 steps to read again: over a minute on the loaded box, and
        its sender's messages waited that long (docs/benchmarks.md, the 100-device run)."""
        first = self._walk.known_until
        heights = list(range(first, height, self._walk.activation_distance))[:WALK_STEPS_PER_BATCH_MAX]
        calls: list[tuple[str, list[Any]]] = []
        for step in heights:
            calls += [("chain_getBlock", [step, False]), ("proof_state", ["0x" + SCHEDULE_KEY.hex(), step])]
        replies = await self.client.rpc.batch(calls)
        for k, step in enumerate(heights):
            block, proof = replies[2 * k].value(), replies[2 * k + 1].value()
            header = self._certify(step, block) if block is not None and block.get("commit") else None
            if header is None:
                raise UnprovenState(f"no certified block {step} to learn the bookkeeper set from")
            try:
                self._walk.advance(header, self._checked(SCHEDULE_KEY, header, proof).value)
            except BadWalk as exc:
                self.stats.rejected += 1
                raise UnprovenState(str(exc)) from exc

    async def transaction_outcome(self, tx_hash: bytes) -> tuple[int, BlockHeader]:
        """(receipt status, certified header) of a transaction, proven: the transaction
        trie holds a transaction hashing to `tx_hash` at index i and the receipt trie holds
        the receipt at the same i (the smartphone's check of V.A step 7)."""
        tx_proof = await self.client.rpc.call("proof_tx", "0x" + tx_hash.hex())
        receipt_proof = await self.client.rpc.call("proof_receipt", "0x" + tx_hash.hex())
        height = int(tx_proof["blockNumber"])
        header = None
        for _ in range(CERTIFIED_HEIGHT_TRIES_MAX * 10):
            header = await self._certified_header(height)
            if header is not None:
                break
            await asyncio.sleep(0.05)
        if header is None:
            raise UnprovenState(f"block {height} has no certificate yet")
        key = from_hex(tx_proof["key"])
        try:
            if from_hex(receipt_proof["key"]) != key or int(receipt_proof["blockNumber"]) != height:
                raise UnprovenState("transaction and receipt proofs disagree on the location")
            raw_tx = verify_proof(header, "transaction", key, [rlp.decode(from_hex(n)) for n in tx_proof["proof"]])
            if keccak256(raw_tx) != tx_hash:
                raise UnprovenState("the proven transaction has another hash")
            raw_receipt = verify_proof(header, "receipt", key,
                                       [rlp.decode(from_hex(n)) for n in receipt_proof["proof"]])
        except (InvalidProof, UnprovenState) as exc:
            self.stats.rejected += 1
            raise UnprovenState(str(exc)) from exc
        self.stats.proofs += 2
        return decode(raw_receipt, Receipt).status, header

    async def _certified_header(self, height: int) -> BlockHeader | None:
        if height < 1:
            return None
        if height in self._certified:
            return self._certified[height]
        block = await self.client.block(height)
        if block is None or not block.get("commit"):
            return None
        await self._certifiers(height)
        return self._certify(height, block)

    def _certify(self, height: int, block: dict[str, Any]) -> BlockHeader:
        """The header of `block` (chain_getBlock's answer), checked: it hashes to the block
        hash and its certificate and finality proof verify under the set of `height`, which
        the walk must cover already."""
        raw = from_hex(block["rawHeader"])
        header = decode(raw, BlockHeader)
        if keccak256(raw) != from_hex(block["hash"]) or header.number != height:
            self.stats.rejected += 1
            raise UnprovenState(f"header {height} does not hash to its block hash")
        commit = block["commit"]
        certifiers = self._walk.certifiers(height)
        try:
            certificate = CommitCertificate(commit["view"], _votes(commit["votes"]),
                                            _votes(commit.get("finality") or []))
            verify_finality(certificate, chain_id=self.anchor.chain_id, height=height, block_hash=header.hash,
                            bookkeepers=list(certifiers.keys), t=certifiers.t)
        except (InvalidCertificate, KeyError, TypeError, ValueError) as exc:
            self.stats.rejected += 1
            raise UnprovenState(f"block {height}: {exc}") from exc
        self.stats.certificates += 1
        self.highest_certified = max(self.highest_certified, height)
        if len(self._certified) > 64:
            self._certified.clear()
        self._certified[height] = header
        return header


def _votes(items: list[dict[str, Any]]) -> list[Vote]:
    return [Vote(item["replica"], from_hex(item["signature"])) for item in items]
