"""Run `node.py` and kill -9 it at a chosen point of its Finalize of one height (test only).

Usage, as a command prefix (runtime.cluster.ClusterProcesses(prefix=...)):
    python tests/crash_finalize.py HEIGHT POINT -- PYTHON node.py start --config ...
POINT is where the process kills itself while a replica's Finalize of block HEIGHT is
written (ChainStore.append with the replica's record):
    inside  in the write transaction, after the block and before the consensus record
            (nothing of it is committed: LMDB aborts an uncommitted transaction)
    after   once the transaction committed, before any action that follows (the FINALs)
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lmdb  # noqa: E402

from chain import Block  # noqa: E402
from chain.store import ChainStore  # noqa: E402


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(height: int, point: str) -> None:
    append = ChainStore.append

    def crashing(self: ChainStore, block: Block, nodes: dict[bytes, bytes],
                 also: Callable[[lmdb.Transaction], None] | None = None) -> None:
        if also is None or block.number != height:
            append(self, block, nodes, also)
            return
        if point == "inside":
            append(self, block, nodes, lambda txn: _die())
        append(self, block, nodes, also)
        _die()

    ChainStore.append = crashing  # type: ignore[method-assign]


def main() -> None:
    height, point, separator, _python, script, *args = sys.argv[1:]
    assert separator == "--" and point in ("inside", "after"), sys.argv
    install(int(height), point)
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
