"""`node.py demo`: the main job. Starts a local 3-node cluster with the demo's genesis
parameters (or attaches to running nodes with --rpc), runs the diagnosis demonstration
(diagnosis/demo.py), prints a readable report, writes JSON, and stops every process it
started. Exit status 0 only when the report says `"ok": true`."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from cli.commands import configure_logging


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser("demo", help="Run the secure diagnosis demo on a fresh local cluster (or --rpc).",
                              description=__doc__)
    parser.add_argument("--json", type=Path, help="write the report as JSON here")
    parser.add_argument("--rpc", action="append", help="attach to this node (repeat); needs --accounts")
    parser.add_argument("--accounts", type=Path,
                        help="accounts.json of the attached cluster (genesis.toml is read beside it)")
    parser.add_argument("--nodes", type=int, default=3, help="bookkeepers of the local cluster (2t+1)")
    parser.add_argument("--base-port", type=int, default=0, help="RPC base port (default: a free range)")
    parser.add_argument("--keep", type=Path, help="keep the cluster directory here instead of a temporary one")
    parser.add_argument("--quiet", action="store_true", help="no progress report, only the JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from diagnosis.demo import run_demo

    configure_logging("warning")
    if args.rpc:
        if not args.accounts:
            raise SystemExit("--rpc needs --accounts PATH/accounts.json of that cluster")
        return _finish(asyncio.run(run_demo(args.rpc, args.accounts, quiet=args.quiet)), args.json)
    report = _with_local_cluster(args, run_demo)
    return _finish(report, args.json)


def _with_local_cluster(args: argparse.Namespace, run_demo: Any) -> dict[str, Any]:
    from diagnosis.demo import demo_contract_params
    from runtime.cluster import ClusterProcesses, free_base_port, init_cluster

    directory = args.keep or Path(tempfile.mkdtemp(prefix="gridchain-demo-"))
    if args.keep and directory.exists():
        shutil.rmtree(directory)
    base_port = args.base_port or free_base_port()
    if not args.quiet:
        print(f"starting a {args.nodes}-node cluster in {directory} (RPC from port {base_port}) ...", flush=True)
    layout = init_cluster(directory, args.nodes, base_port, contracts=demo_contract_params())
    processes = ClusterProcesses(layout)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        processes.start_all()
        processes.wait_healthy(progress=not args.quiet)
        processes.write_manifest()
        urls = [layout.rpc_url(i) for i in range(layout.nodes)]
        return asyncio.run(run_demo(urls, directory / "accounts.json", quiet=args.quiet))
    finally:
        processes.stop_all()
        signal.signal(signal.SIGTERM, previous)
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)




def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _finish(report: dict[str, Any], json_path: Path | None) -> int:
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"report written to {json_path}")
    return 0 if report.get("ok") else 1
