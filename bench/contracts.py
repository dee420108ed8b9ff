"""DSC auction benchmark: a full out-of-warranty auction with 20 bidders (request, 20
commits, 20 reveals, close) through the real contracts and engine.

    python -m bench.contracts [--auctions N] [--bidders B] [--json OUT]

"execution" is the time the engine spends running the calls (nonce bump, dispatch,
contract code, sub-calls, metered storage on the state overlay), measured per operation
on the parent state; "block" is the whole block build around them (signature checks,
end-of-block hooks, trie flush, receipts) as a replica pays it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from chain import State, Transaction
from chain.execution import apply_transaction
from chain.state import NodeOverlay
from contracts.addresses import CREDIT, DSC
from contracts.dsc_records import bid_commitment
from contracts.testing import BID_DEPOSIT, P_MAX, REQUEST_DEPOSIT, Call, TestChain, address_of, consortium, events
from crypto import keccak256
from vm import BlockEnv

OPERATIONS = ("open_request", "commit", "reveal", "close")


class AuctionBench:
    def __init__(self, bidders: int) -> None:
        self.names = [f"bidder{i}" for i in range(bidders)]
        self.chain: TestChain = consortium(self.names, bidders_max=max(64, bidders))
        self.execution: dict[str, list[float]] = {op: [] for op in OPERATIONS}
        self.block_s: list[float] = []
        self.auction_exec_s: list[float] = []
        self._last_tx = b""

    def run(self, auctions: int) -> None:
        for _ in range(auctions):
            self._auction()

    def _auction(self) -> None:
        c = self.chain
        exec_before = sum(sum(v) for v in self.execution.values())
        block_time = 0.0
        block_time += self._phase("open_request", [Call("phone", DSC, "open_request", [address_of("dev")],
                                                          REQUEST_DEPOSIT + P_MAX)])
        request_id = events(c.chain.transaction(self._last_tx).receipt, "RequestOpened")[0]["request"]
        assert isinstance(request_id, int)
        prices = {n: 20 + 7 * i % 170 for i, n in enumerate(self.names)}
        salts = {n: keccak256(n.encode() + request_id.to_bytes(8, "big")) for n in self.names}
        credits = {n: c.view(CREDIT, "credit_of", [address_of(n)]) for n in self.names}
        block_time += self._phase("commit", [
            Call(n, DSC, "commit", [request_id, bid_commitment(request_id, address_of(n), prices[n],
                                                              credits[n], salts[n])], BID_DEPOSIT)  # type: ignore[arg-type]
            for n in self.names])
        c.advance(60_000)
        block_time += self._phase("reveal", [Call(n, DSC, "reveal", [request_id, prices[n], credits[n], salts[n]])
                                             for n in self.names])
        c.advance(60_000)
        block_time += self._phase("close", [Call("stranger", DSC, "close", [request_id])])
        # finish the service so the device can request again
        winner = c.view(DSC, "request", [request_id])[8]  # type: ignore[index]
        name = next(n for n in self.names if address_of(n) == winner)
        c.block([Call(name, DSC, "set_mode", [request_id, "remote"]),
                 Call("phone", DSC, "complete", [request_id, keccak256(b"fault")])])
        c.advance(1_000)
        self.block_s.append(block_time)
        self.auction_exec_s.append(sum(sum(v) for v in self.execution.values()) - exec_before)

    def _phase(self, operation: str, calls: list[Call]) -> float:
        """Time the engine on each call (parent state, this block's env), then build the
        block for real. Returns the block's seconds."""
        c = self.chain
        txs: list[Transaction] = [c.transaction(call) for call in calls]
        parent = c.chain.head.header
        state = State(NodeOverlay(c.chain.store), parent.state_root)
        env = BlockEnv(parent.number + 1, max(c.now_ms, parent.timestamp_ms), parent.hash, c.genesis.chain_id)
        for tx in txs:
            start = time.perf_counter()
            receipt = apply_transaction(state, tx, c.chain.engine, env, 10**12)
            elapsed = time.perf_counter() - start
            assert receipt.succeeded, receipt.error
            self.execution[operation].append(elapsed)
        start = time.perf_counter()
        executed, rejected = c.chain.build(txs, timestamp_ms=c.now_ms, proposer=0, view=0)
        c.chain.append(executed.block)
        block = time.perf_counter() - start
        assert not rejected and all(r.succeeded for r in executed.receipts)
        self._last_tx = txs[-1].hash
        return block


def report(bench: AuctionBench, bidders: int) -> dict[str, object]:
    ms = 1000.0
    return {
        "bidders": bidders,
        "auctions": len(bench.auction_exec_s),
        "execution_ms_per_auction": {"mean": statistics.fmean(bench.auction_exec_s) * ms,
                                     "median": statistics.median(bench.auction_exec_s) * ms,
                                     "max": max(bench.auction_exec_s) * ms},
        "blocks_ms_per_auction": {"mean": statistics.fmean(bench.block_s) * ms,
                                  "median": statistics.median(bench.block_s) * ms},
        "execution_ms_per_operation": {op: {"mean": statistics.fmean(v) * ms, "count": len(v)}
                                       for op, v in bench.execution.items()},
        "goal_ms_per_auction": 50,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.contracts", description=__doc__.split("\n")[0])
    parser.add_argument("--auctions", type=int, default=10)
    parser.add_argument("--bidders", type=int, default=20)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    bench = AuctionBench(args.bidders)
    try:
        bench.run(args.auctions)
    finally:
        bench.chain.close()
    result = report(bench, args.bidders)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
