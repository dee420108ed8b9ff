"""The harness's own parts without nodes: the link proxies over loopback (frames pass,
blackhole, one-way cut, drop, delay, partition) and the checker on hand-made histories
(fork, lost acknowledgement, committed refusal, duplicate, height regression, stranded)."""

from __future__ import annotations

import asyncio
import time

import pytest

from faults.checker import NodeChain, check
from faults.history import ADMITTED_NO_RECEIPT, FAIL, INFO, OK, History, Sample
from faults.proxy import LinkFault, LinkProxies

pytestmark = pytest.mark.timeout(60)


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


async def _echo_pair(proxies: LinkProxies) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, list[bytes]]:
    """Node 0 dials node 1 through the proxy; node 1's side records what it receives and
    answers each frame with the same frame."""
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(4)
                body = await reader.readexactly(int.from_bytes(header, "big"))
                received.append(body)
                writer.write(header + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    await asyncio.to_thread(proxies.start, [1, port])  # node 0's own port is never dialled here
    reader, writer = await asyncio.open_connection("127.0.0.1", proxies.port(0, 1))
    return reader, writer, received


async def _read_frames(reader: asyncio.StreamReader, count: int, timeout_s: float) -> list[bytes]:
    out: list[bytes] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(out) < count:
                header = await reader.readexactly(4)
                out.append(await reader.readexactly(int.from_bytes(header, "big")))
    except TimeoutError:
        pass
    return out


async def test_proxy_passes_cuts_one_way_drops_and_delays() -> None:
    proxies = LinkProxies(2, seed=3)
    reader, writer, received = await _echo_pair(proxies)
    try:
        writer.write(frame(b"a") + frame(b"b" * 70_000))
        assert await _read_frames(reader, 2, 5) == [b"a", b"b" * 70_000]

        proxies.set(1, 0, LinkFault(blackhole=True))  # replies cut, requests still arrive
        writer.write(frame(b"c"))
        assert await _read_frames(reader, 1, 0.5) == []
        async with asyncio.timeout(10):  # the request side still delivers, however loaded the machine
            while not received or received[-1] != b"c":
                await asyncio.sleep(0.01)

        proxies.heal()
        proxies.set(0, 1, LinkFault(drop_p=0.5))
        before = len(received)
        writer.write(b"".join(frame(bytes([i])) for i in range(200)))
        echoed = await _read_frames(reader, 200, 3.0)  # waits it out: some frames are dropped
        assert 40 < len(echoed) < 160 and echoed == sorted(echoed)  # whole frames dropped, order kept
        assert len(received) - before == len(echoed)

        proxies.heal()
        proxies.set(0, 1, LinkFault(delay_ms=300))
        started = time.monotonic()
        writer.write(frame(b"slow"))
        assert await _read_frames(reader, 1, 3) == [b"slow"]
        assert time.monotonic() - started >= 0.29

        proxies.heal()
        proxies.partition([[0], [1]])
        writer.write(frame(b"lost"))
        assert await _read_frames(reader, 1, 0.4) == []
        proxies.heal()
        writer.write(frame(b"after"))
        assert await _read_frames(reader, 1, 3) == [b"after"]
        counters = proxies.counters[(0, 1)]
        assert counters.dropped > 40 and counters.delayed == 1 and counters.connections == 1
    finally:
        writer.close()
        await asyncio.to_thread(proxies.stop)


def _history_with(*ops: tuple[str, str, int | None, str | None]) -> History:
    history = History()
    for k, (tx, outcome, block, block_hash) in enumerate(ops):
        op = history.invoke(0, 0, tx, "0xsender", k)
        detail = ADMITTED_NO_RECEIPT if outcome == INFO else ""
        history.complete(op, outcome, detail, block, block_hash)
    return history


T0_MS = 1_700_000_000_000


def _chain(node: int, blocks: dict[int, tuple[str, list[str]]], step_ms: int = 1_000) -> NodeChain:
    height = max(blocks)
    chain = NodeChain(node, height, blocks[height][0])
    chain.blocks = {n: {"hash": h, "stateRoot": "r" + h, "parentHash": "", "txs": txs, "time": T0_MS + n * step_ms}
                    for n, (h, txs) in blocks.items()}
    return chain


def test_checker_passes_a_clean_run() -> None:
    history = _history_with(("t1", OK, 1, "h1"), ("t2", OK, 2, "h2"), ("t3", FAIL, None, None))
    chains = {i: _chain(i, {1: ("h1", ["t1"]), 2: ("h2", ["t2"])}) for i in range(3)}
    verdict = check(history, chains, [0, 1, 2], [0, 1, 2], probe_final=True)
    assert all(v["passed"] for v in verdict["invariants"].values()), verdict["invariants"]
    assert verdict["figures"]["acknowledged"] == {"found_final": 2, "of": 2}


def test_checker_names_every_violation() -> None:
    history = _history_with(("t1", OK, 1, "h1"), ("t2", OK, 2, "h2"), ("t3", FAIL, None, None),
                            ("t4", INFO, None, None))
    history.samples += [Sample(1.0, 1, 5, "x", 0, "node0"), Sample(2.0, 1, 3, "y", 0, "node0")]
    chains = {0: _chain(0, {1: ("h1", ["t1", "t3"]), 2: ("h2", ["t1"])}),
              1: _chain(1, {1: ("h1", ["t1", "t3"]), 2: ("FORK", ["t2"])}, step_ms=0)}  # time stopped
    inv = check(history, chains, [0, 1], [0, 1], probe_final=False)["invariants"]
    failed = {name for name, v in inv.items() if not v["passed"]}
    assert failed == {"no_fork", "state_roots_agree", "no_duplicates", "acknowledged_final", "failed_not_committed",
                      "heights_monotonic", "converged", "live_after_heal", "admitted_not_stranded", "chain_time_sane"}


def test_checker_refuses_a_chain_dated_in_the_future() -> None:
    history = _history_with(("t1", OK, 1, "h1"))
    chains = {i: _chain(i, {1: ("h1", ["t1"])}, step_ms=10 * 365 * 24 * 3600 * 1000 + 10**12) for i in range(2)}
    inv = check(history, chains, [0, 1], [0, 1], probe_final=True, clock_drift_ms_max=1_000)["invariants"]
    assert not inv["chain_time_sane"]["passed"] and "ahead" in inv["chain_time_sane"]["detail"]


def test_checker_no_progress_while_down_and_byzantine_excluded() -> None:
    history = _history_with(("t1", OK, 1, "h1"))
    history.samples += [Sample(1.0, 0, 1, "h1", 0, "node0"), Sample(3.0, 0, 2, "h2", 0, "node0")]
    chains = {0: _chain(0, {1: ("h1", ["t1"])}), 1: _chain(1, {1: ("h1", ["t1"])}),
              2: _chain(2, {1: ("EVIL", [])})}
    verdict = check(history, chains, [0, 1], [0, 1, 2], probe_final=True, down_windows=[(0.5, 3.5)])
    assert not verdict["invariants"]["no_progress_while_down"]["passed"]
    assert verdict["invariants"]["no_fork"]["passed"] and verdict["figures"]["byzantine_node_forks"] == 1
