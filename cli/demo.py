"""`node.py demo`: the main job. Writes a consortium (diagnosis/demo.py `PLAN`) to a
directory, starts its 3-node cluster and one OS process per party, lets the devices fail
on their seeded schedules and the parties react, prints one line per step reached, writes
the JSON report, stops every process it started. Exit status 0 only when the report says
`"ok": true`. `--keep DIR` writes the consortium to DIR and, after the report, leaves it
running (printing the RPC and agent URLs) until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from cli.errors import UserError
from runtime.logs import configure_logging


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser("demo", help="Run the secure diagnosis demo: a consortium of agent processes.",
                              description=__doc__)
    parser.add_argument("--json", type=Path, help="write the report as JSON here")
    parser.add_argument("--nodes", type=int, default=3, help="bookkeepers of the local cluster (2t+1)")
    parser.add_argument("--base-port", type=int, default=0, help="RPC base port (default: a free range)")
    parser.add_argument("--keep", type=Path,
                        help="write the consortium here (replacing it) and leave it running after the report")
    parser.add_argument("--quiet", action="store_true", help="no progress report, only the JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from diagnosis.demo import DemoFailed, run_demo

    configure_logging("warning")
    if args.nodes < 3 or args.nodes % 2 == 0:
        raise UserError("--nodes is an odd number of bookkeepers, at least 3")
    directory = args.keep or Path(tempfile.mkdtemp(prefix="gridchain-demo-"))
    if args.keep and directory.exists():
        shutil.rmtree(directory)

    def say(text: str) -> None:
        if not args.quiet:
            print(text, flush=True)

    reported: list[dict[str, Any]] = []

    async def keep(report: dict[str, Any], endpoints: dict[str, Any]) -> None:
        reported.append(report)
        _write(report, args.json)
        await _kept(endpoints)

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        report = asyncio.run(run_demo(directory, nodes=args.nodes, base_port=args.base_port, say=say,
                                      keep=keep if args.keep else None))
    except DemoFailed as exc:
        raise UserError(f"demo failed: {exc} (agent logs in {directory / 'agents'})") from exc
    except KeyboardInterrupt:
        if not reported:
            raise
        report = reported[0]  # Ctrl-C ended --keep: every process is stopped
    finally:
        signal.signal(signal.SIGTERM, previous)
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    if not args.keep:
        _write(report, args.json)
    return 0 if report.get("ok") else 1


async def _kept(endpoints: dict[str, Any]) -> None:
    print("== the consortium keeps running (Ctrl-C stops every process)")
    print(f"  RPC: {' '.join(endpoints['rpc'])}   (node.py status --rpc URL; GRIDCHAIN_RPC=URL,...)")
    print(f"  explorer: {' '.join(endpoints['explorer'])}   (open in a browser: docs/explorer.md)")
    for name, agent in endpoints["agents"].items():
        print(f"  {name:<16} {agent['role']:<10} {agent['health']}  {agent['metrics']}  {agent['events']}")
    for name, agent in endpoints["agents"].items():
        if agent["app"]:
            print(f"  {name}'s phone app: {agent['app']}")
    await asyncio.Event().wait()


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _write(report: dict[str, Any], json_path: Path | None) -> None:
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"report written to {json_path}")
