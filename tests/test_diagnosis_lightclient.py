"""The light client trusts finality, not a certificate, and refuses stale answers (issue 10).

A node is faked over a real chain (tests/support.DevChain): it answers chain_status,
chain_getBlock (rpc.encoding.block_json) and proof_state from that chain, up to the height
it pretends to have, with certificates signed by the genesis bookkeepers' keys.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
import rlp

from chain.proofs import prove_state
from client import Reply
from contracts.addresses import TOKEN
from contracts.token import _escrow_key
from diagnosis.lightclient import LightClient, StaleState, TrustAnchor, UnprovenState
from rpc.encoding import block_json, hex_bytes
from tests.support import DevChain, certify

ESCROW_ID = b"\x05" * 32


@dataclass
class FakeRpc:
    node: FakeNode
    batches: int = 0
    forge_key: bool = False  # answer every call of a batch with the proof of its first key

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Reply]:
        self.batches += 1
        first = calls[0][1]
        return [Reply(result=await self.call(method, *(first if self.forge_key else params)))
                for method, params in calls]

    async def call(self, method: str, *params: Any) -> Any:
        if method == "chain_getBlock":
            return await self.node.block(params[0])
        assert method == "proof_state"
        logical, height = bytes.fromhex(params[0][2:]), params[1]
        assert height <= self.node.height
        proof = prove_state(self.node.dev.chain, logical, height)
        return {"blockNumber": proof.header.number, "blockHash": hex_bytes(proof.header.hash),
                "key": hex_bytes(proof.key), "value": hex_bytes(proof.value),
                "proof": [hex_bytes(rlp.encode(node)) for node in proof.nodes]}


class FakeNode:
    """Stands in for client.GridClient: a node whose final head is `height`."""

    def __init__(self, dev: DevChain, height: int, *, finality: bool = True) -> None:
        self.dev = dev
        self.height = height
        self.finality = finality
        self.rpc = FakeRpc(self)

    async def status(self) -> dict[str, Any]:
        return {"height": self.height}

    async def block(self, number: int) -> dict[str, Any] | None:
        await asyncio.sleep(0)  # a round trip: concurrent reads interleave here, as on a socket
        if number > self.height:
            return None
        return block_json(certify(self.dev, self.dev.chain.block(number), finality=self.finality), False)


@pytest.fixture
def escrow_chain(devchain: DevChain) -> DevChain:
    """Block 1 locks 100 in an escrow, block 2 releases it (the record is deleted): a record
    that changed, like a member revoked in the registry."""
    owner = devchain.accounts[0]
    devchain.commit([devchain.tx(owner, TOKEN, "escrow_lock", [ESCROW_ID, owner.address], value=100)])
    devchain.commit([devchain.tx(owner, TOKEN, "escrow_release", [ESCROW_ID])])
    return devchain


def _escrow(light: LightClient, dev: DevChain) -> Any:
    slot = _escrow_key(dev.accounts[0].address, ESCROW_ID)
    return asyncio.run(light.storage(TOKEN, slot)).value


def _light(dev: DevChain, node: FakeNode) -> LightClient:
    genesis = dev.chain.genesis
    return LightClient(node, TrustAnchor.of(genesis))  # type: ignore[arg-type]


def test_light_client_refuses_a_node_answering_from_an_older_head(escrow_chain: DevChain) -> None:
    dev = escrow_chain
    light = _light(dev, FakeNode(dev, 2))
    assert _escrow(light, dev) is None
    assert light.highest_certified == 2
    light.client = FakeNode(dev, 1)  # type: ignore[assignment]  # a lagging (or lying) node
    with pytest.raises(StaleState) as refused:
        _escrow(light, dev)  # it would prove the escrow still holding 100
    assert (refused.value.height, refused.value.highest) == (1, 2)
    assert light.stats.stale == 1
    light.client = FakeNode(dev, 2)  # type: ignore[assignment]
    assert _escrow(light, dev) is None


def test_light_client_refuses_a_certified_header_without_finality_proof(escrow_chain: DevChain) -> None:
    light = _light(escrow_chain, FakeNode(escrow_chain, 2, finality=False))
    with pytest.raises(UnprovenState, match="finality signed by"):
        _escrow(light, escrow_chain)
    assert light.stats.rejected == 1 and light.highest_certified == 0


def test_a_fresh_light_client_reads_the_old_value_from_an_old_head(escrow_chain: DevChain) -> None:
    """What staleness protection can and cannot do: without a higher certified height seen,
    an old head is all the client knows (docs/diagnosis.md)."""
    light = _light(escrow_chain, FakeNode(escrow_chain, 1))
    assert _escrow(light, escrow_chain) == [escrow_chain.accounts[0].address, 100]


def test_concurrent_reads_past_the_genesis_sets_reach_walk_the_schedule_together(escrow_chain: DevChain) -> None:
    """The phone app reads a device's history values concurrently: every read needing the
    same step of the bookkeeper schedule walk must share it (each took it again, and all
    but the first failed with "a step at height 10, the walk is at 20")."""
    dev = escrow_chain
    light = _light(dev, FakeNode(dev, 0))
    while dev.chain.height <= 2 * light.anchor.activation_distance:
        dev.commit([dev.tx(dev.accounts[1], TOKEN, "transfer", [dev.accounts[2].address, 1])])
    light.client = FakeNode(dev, dev.chain.height)  # type: ignore[assignment]
    slot = _escrow_key(dev.accounts[0].address, ESCROW_ID)

    async def reads() -> list[Any]:
        return await asyncio.gather(*(light.storage(TOKEN, slot) for _ in range(4)))

    assert [proven.value for proven in asyncio.run(reads())] == [None] * 4
    assert light.stats.rejected == 0


def test_several_slots_are_proven_against_one_header_in_one_batch(escrow_chain: DevChain) -> None:
    """A receiver's facts in one read: the escrow as it was at block 1 and the owner's
    account slot, both against the same certified header, their proofs in one batch; a
    batch answering one slot's proof for another is refused."""
    dev = escrow_chain
    node = FakeNode(dev, 1)
    light = _light(dev, node)
    escrow = (TOKEN, _escrow_key(dev.accounts[0].address, ESCROW_ID))
    absent = (TOKEN, _escrow_key(dev.accounts[0].address, b"\x06" * 32))
    held, missing = asyncio.run(light.storage_many([escrow, absent]))
    assert held.value == [dev.accounts[0].address, 100] and missing.value is None
    assert held.header.number == missing.header.number == 1 and node.rpc.batches == 1
    node.rpc.forge_key = True
    with pytest.raises(UnprovenState, match="another key"):
        asyncio.run(light.storage_many([escrow, absent]))


def test_a_client_far_behind_walks_the_schedule_in_one_batch(escrow_chain: DevChain) -> None:
    """A client that last read near genesis and reads again five steps of the walk later
    fetches those steps' blocks and schedule proofs in one batch (one at a time, a phone
    idle for 1,000 blocks spent over a minute walking), and checks each as before."""
    dev = escrow_chain
    node = FakeNode(dev, 2)
    light = _light(dev, node)
    assert _escrow(light, dev) is None
    distance = light.anchor.activation_distance
    while dev.chain.height <= 5 * distance:
        dev.commit([dev.tx(dev.accounts[1], TOKEN, "transfer", [dev.accounts[2].address, 1])])
    node.height = dev.chain.height
    assert _escrow(light, dev) is None
    assert node.rpc.batches == 1 and light.stats.rejected == 0
    assert light._walk.covers(node.height)
