"""kill -9 in the middle of a loop of block commits: every reopen finds whole blocks only."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from chain.genesis import Genesis
from chain.verify import verify_chain
from tests.support import genesis_dict, key, open_chain

WRITER = """
import sys
from pathlib import Path
from chain.genesis import Genesis
from contracts.addresses import TOKEN
from chain.types import Transaction
from tests.support import genesis_dict, key, open_chain
keys = [key(i + 1) for i in range(20)]
chain = open_chain(Path(sys.argv[1]), Genesis.from_dict(genesis_dict(keys)))
print("ready", flush=True)
while True:
    height = chain.height
    txs = []
    for i in range(20):
        sender = keys[i]
        nonce = chain.account(sender.address).nonce
        txs.append(Transaction.create(sender, chain_id=chain.genesis.chain_id, nonce=nonce, to=TOKEN,
                                      method="transfer", args=[keys[(i + 1) % 20].address, 1]))
    executed, _ = chain.build(txs, timestamp_ms=1_700_000_000_000 + height, proposer=0, view=0)
    chain.append(executed.block)
"""


def test_kill_9_during_commits_never_leaves_a_half_block(tmp_path: Path) -> None:
    rng = random.Random(20261124)
    data = tmp_path / "chain"
    keys = [key(i + 1) for i in range(20)]
    genesis = Genesis.from_dict(genesis_dict(keys))
    root = Path(__file__).resolve().parent.parent
    last_height = 0
    for _ in range(20):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(data)], cwd=root,
                                  stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(root)})
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.4))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        chain = open_chain(data, genesis)
        assert chain.height >= last_height, "a restart lost final blocks"
        last_height = chain.height
        assert list(verify_chain(chain)) == []
        chain.store.close()
    assert last_height > 0
