"""The cost of encrypted peer links (issue 15): the same 3-node cluster load with
`[p2p] encryption` on and off, in one run, so both sets of figures come from the same
machine at the same time; and, in process, what sealing and opening one frame costs.

- frames: FrameSealer.seal + FrameOpener.open per frame (a 300-byte consensus message and
  a 64 KiB block-sync frame), and one full handshake over loopback, encrypted and plain;
- closed: a closed loop of `--txs` transfers (window 4,000): throughput, commit latency;
- open: an open loop at `--rate` tx/s for `--open-txs` transfers: commit latency when the
  cluster is not saturated.

Runs alternate plain, encrypted (then encrypted, plain for the open loop) so a drift of
the machine's load does not favour one side.

    python -m bench.encryption --json bench/results/encryption.json [--txs 6000 --rate 150]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import load_average, machine
from bench.load import LoadOptions, run_load, say
from crypto import KeyPair
from p2p import P2PConfig
from p2p.framing import FrameDecoder, encode_frame
from p2p.handshake import handshake
from p2p.secure import Ephemeral

RUN_TIMEOUT_S = 600
FRAME_ROUNDS = 2_000
HANDSHAKES = 20
WINDOW = 4_000
SETTINGS = {"plain": {"encryption": False}, "encrypted": {"encryption": True}}


def frame_costs() -> dict[str, Any]:
    """Microseconds per frame to seal and open, by frame size."""
    session_a, session_b = (lambda a, b: (a.agree(b.public_key), b.agree(a.public_key)))(Ephemeral(), Ephemeral())
    costs: dict[str, Any] = {}
    for label, body_bytes in (("300B", 300), ("64KiB", 64 << 10)):
        frame = encode_frame({"type": "x", "blob": b"\x00" * (body_bytes - 12)}, 1 << 20)
        started = time.perf_counter()
        for _ in range(FRAME_ROUNDS):
            sealed = memoryview(session_a.sealer.seal(frame))
            session_b.opener.open(sealed[:4], sealed[4:])
        costs[label] = round((time.perf_counter() - started) / FRAME_ROUNDS * 1e6, 1)
    return costs


async def _handshakes(config: P2PConfig) -> float:
    a, b = KeyPair.generate(), KeyPair.generate()
    allowed = {a.public_key, b.public_key}.__contains__

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder(config.handshake_frame_bytes_max, config.frame_container_len_max)
        await handshake(reader, writer, decoder, b, 1, 0, allowed, config)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    started = time.perf_counter()
    for _ in range(HANDSHAKES):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        decoder = FrameDecoder(config.handshake_frame_bytes_max, config.frame_container_len_max)
        await handshake(reader, writer, decoder, a, 1, 0, allowed, config)
        writer.close()
    elapsed = (time.perf_counter() - started) / HANDSHAKES * 1000
    server.close()
    await server.wait_closed()
    return round(elapsed, 2)


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    return {"tps": result["tps"], "latency_ms": result["latency_ms"], "committed": result["committed"],
            "seconds": result["seconds"], "views": [result["view_at_start"], result["view_at_end"]],
            "load_1m_at_start": result["machine"]["load_1m_at_start"]}


def run(txs: int, rate: float, open_txs: int) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": machine()}
    report["frame_us"] = frame_costs()
    report["handshake_ms"] = {name: asyncio.run(_handshakes(P2PConfig(**setting)))
                              for name, setting in SETTINGS.items()}
    say(f"[encryption] per frame {report['frame_us']} us, handshake {report['handshake_ms']} ms")
    for loop, order in (("closed", ("plain", "encrypted")), ("open", ("encrypted", "plain"))):
        report[loop] = {}
        for name in order:
            options = LoadOptions(nodes=3, txs=txs if loop == "closed" else open_txs, window=WINDOW,
                                  rate=None if loop == "closed" else rate, p2p=SETTINGS[name],
                                  timeout_s=RUN_TIMEOUT_S, progress=False)
            say(f"[encryption] {loop} loop, {name}: {options.txs} transfers ...")
            result, _ = run_load(options)
            report[loop][name] = _summary(result)
            say(f"[encryption] {loop} loop, {name}: {result['tps']} tx/s, latency {result['latency_ms']}")
    closed = report["closed"]
    report["cost"] = {
        "closed_tps_encrypted_vs_plain": round(closed["encrypted"]["tps"] / closed["plain"]["tps"], 3),
        "open_p50_ms_added": round(report["open"]["encrypted"]["latency_ms"]["p50"]
                                   - report["open"]["plain"]["latency_ms"]["p50"], 1),
    }
    report["load_1m_at_end"] = round(load_average(), 2)
    say(f"[encryption] cost {report['cost']}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.encryption", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--txs", type=int, default=6_000, help="closed loop transfers per setting")
    parser.add_argument("--rate", type=float, default=150, help="open loop offered tx/s")
    parser.add_argument("--open-txs", type=int, default=2_000, help="open loop transfers per setting")
    args = parser.parse_args(argv)
    report = run(args.txs, args.rate, args.open_txs)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
