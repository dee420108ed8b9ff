"""An acknowledged transaction survives a restart of every node (the mempool journal).

Two of three bookkeepers are stopped, so nothing can become final; the third acknowledges
transfers into its mempool and is then killed with SIGKILL. When all three start again,
every acknowledged transfer becomes final exactly once."""

from __future__ import annotations

import signal
from pathlib import Path

import lmdb
import pytest

from chain.journal import MempoolJournal
from client import GridClient
from tests.cluster_support import rpc_urls, running_cluster

pytestmark = pytest.mark.timeout(240)


def test_journal_records_forgets_and_compacts(tmp_path: Path) -> None:
    env = lmdb.open(str(tmp_path / "env"), max_dbs=4)
    journal = MempoolJournal(env)
    journal.record([(b"\x01" * 32, b"one"), (b"\x02" * 32, b"two"), (b"\x03" * 32, b"three")])
    assert len(journal) == 3
    journal.forget([b"\x01" * 32, b"\x09" * 32])
    assert sorted(raw for _, raw in journal.entries()) == [b"three", b"two"]
    assert journal.compact(lambda tx_hash: tx_hash == b"\x02" * 32) == 1
    assert journal.entries() == [(b"\x02" * 32, b"two")]
    assert len(MempoolJournal(env)) == 1  # reopened: what is held is read back from disk
    env.close()


async def test_acknowledged_transactions_survive_a_restart_of_every_node(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "cluster") as (processes, accounts):
        urls = rpc_urls(processes)
        processes.stop_node(1)
        processes.stop_node(2)
        recipient = accounts[7].address
        async with GridClient(urls[0]) as client:
            before = (await client.account(recipient))["balance"]
            hashes = [await client.send(accounts[i], "token", "transfer", [recipient, 100 + i]) for i in range(5)]
            assert [await client.receipt(h) for h in hashes] == [None] * 5, "final without a quorum"
        processes.stop_node(0, sig=signal.SIGKILL)
        for i in range(3):
            processes.start_node(i)
        processes.wait_healthy()
        async with GridClient(urls[1]) as client:
            receipts = [await client.wait_receipt(h, timeout_s=90) for h in hashes]
            assert [r.status for r in receipts] == [1] * 5
            assert (await client.account(recipient))["balance"] == before + sum(100 + i for i in range(5))
