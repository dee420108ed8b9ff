"""Ledger throughput in one process: blocks of signed token transfers among 1,000 accounts,
counting signature checks, execution, the trie flush and the LMDB commit (not signing,
which is the client's cost).

    python -m bench.ledger --json OUT [--txs 20000] [--block-txs 500] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

from chain import Block, ChainStore, Transaction
from chain.chain import Chain
from chain.genesis import Genesis
from contracts import build_contracts
from contracts.addresses import TOKEN
from crypto import KeyPair
from vm import Engine

ACCOUNTS = 1_000
CHAIN_ID = 1


def make_chain(directory: Path, keys: list[KeyPair]) -> Chain:
    bookkeepers = [KeyPair.from_seed(bytes([200 + i]) * 32) for i in range(3)]
    genesis = Genesis.from_dict({
        "chain_id": CHAIN_ID,
        "t": 1,
        "bookkeepers": [{"name": f"node{i}", "public_key": k.public_key.hex()}
                        for i, k in enumerate(bookkeepers)],
        "accounts": [{"public_key": k.public_key.hex(), "balance": 10**12} for k in keys],
    })
    return Chain(ChainStore(directory), genesis, Engine(build_contracts(genesis.contract_params)))


def signed_transfers(keys: list[KeyPair], count: int) -> list[Transaction]:
    nonces = [0] * len(keys)
    txs = []
    for i in range(count):
        sender = i % len(keys)
        recipient = (sender * 7 + 1 + i // len(keys)) % len(keys)
        txs.append(Transaction.create(keys[sender], chain_id=CHAIN_ID, nonce=nonces[sender], to=TOKEN,
                                      method="transfer", args=[keys[recipient].address, 1]))
        nonces[sender] += 1
    return txs


def run(tx_count: int, block_txs: int) -> dict[str, float]:
    keys = [KeyPair.from_seed(i.to_bytes(32, "big")) for i in range(1, ACCOUNTS + 1)]
    print(f"signing {tx_count} transfers...", file=sys.stderr)
    txs = signed_transfers(keys, tx_count)
    with tempfile.TemporaryDirectory() as producer_dir, tempfile.TemporaryDirectory() as replica_dir:
        producer = make_chain(Path(producer_dir), keys)
        print("building blocks (the proposer's work)...", file=sys.stderr)
        blocks: list[Block] = []
        for start in range(0, tx_count, block_txs):
            executed, rejected = producer.build(txs[start:start + block_txs], timestamp_ms=start,
                                                proposer=0, view=0)
            assert not rejected, rejected[:1]
            producer.append(executed.block)
            blocks.append(executed.block)
        # The measured part: a replica that never saw these transactions verifies and applies
        # every block: signatures, execution, roots, one LMDB write per block.
        replica = make_chain(Path(replica_dir), keys)
        started = time.perf_counter()
        for index, block in enumerate(blocks):
            replica.append(block)
            if index % 10 == 0:
                print(f"  block {block.number}/{len(blocks)}", file=sys.stderr)
        seconds = time.perf_counter() - started
        assert replica.head.hash == producer.head.hash
    return {"txs": tx_count, "seconds": round(seconds, 3), "tps": round(tx_count / seconds, 1),
            "block_txs": block_txs, "accounts": ACCOUNTS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--txs", type=int, default=20_000)
    parser.add_argument("--block-txs", type=int, default=500)
    parser.add_argument("--profile", action="store_true", help="print the top functions by time")
    args = parser.parse_args()
    if args.profile:
        profiler = cProfile.Profile()
        result = profiler.runcall(run, args.txs, args.block_txs)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    else:
        result = run(args.txs, args.block_txs)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
