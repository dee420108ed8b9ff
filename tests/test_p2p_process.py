"""Two Networks in two OS processes over loopback TCP: an echo peer in a child process."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from crypto import KeyPair
from p2p import Network, P2PConfig

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parent.parent
CHAIN = 7
PARENT = KeyPair.from_seed(b"\x0a" * 32)
CHILD = KeyPair.from_seed(b"\x0b" * 32)

# The child listens on an OS-chosen port, prints it, and echoes every message it receives
# back to its sender with "echo" set, until its stdin closes.
CHILD_SCRIPT = f"""
import asyncio, sys
from crypto.keys import KeyPair
from p2p import Network, P2PConfig

async def main():
    key = KeyPair.from_seed(bytes.fromhex("{CHILD.seed().hex()}"))
    allowed = [key.public_key, bytes.fromhex("{PARENT.public_key.hex()}")]
    network = Network(P2PConfig(), key, {CHAIN}, allowed, "127.0.0.1", 0, {{}})
    await network.start()
    print(network.listen_port, flush=True)

    async def echo():
        while True:
            peer, message = await network.inbound.get()
            network.send(peer, {{**message, "echo": True}})

    task = asyncio.create_task(echo())
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    task.cancel()
    await network.stop()

asyncio.run(main())
"""


async def test_messages_cross_a_process_boundary_and_come_back() -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD_SCRIPT, cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    network: Network | None = None
    try:
        port = int(await asyncio.wait_for(child.stdout.readline(), 10))
        network = Network(
            P2PConfig(), PARENT, CHAIN, [PARENT.public_key, CHILD.public_key],
            "127.0.0.1", 0, {CHILD.public_key: ("127.0.0.1", port)},
        )
        await network.start()
        await asyncio.wait_for(network.wait_connected([CHILD.public_key]), 5)
        for i in range(100):
            assert network.send(CHILD.public_key, {"type": "q", "i": i, "blob": bytes([i]) * i})
        echoed = [await asyncio.wait_for(network.inbound.get(), 5) for _ in range(100)]
        assert echoed == [
            (CHILD.public_key, {"type": "q", "i": i, "blob": bytes([i]) * i, "echo": True})
            for i in range(100)
        ]
    finally:
        if network is not None:
            await network.stop()
        child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), 10)
        except TimeoutError:
            child.kill()
            await child.wait()
    assert child.returncode == 0
