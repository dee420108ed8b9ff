"""Verbs of node.py. Node verbs run the node or its files; client verbs talk JSON-RPC to a
node through the SDK (default http://127.0.0.1:8545, or --rpc URL, repeatable)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from chain.chain import Chain
from chain.genesis import Genesis
from chain.state import account_key
from chain.store import ChainStore
from chain.verify import verify_chain
from client import GridClient, RpcCallError
from contracts import build_contracts
from crypto.keys import KeyPair
from runtime.cluster import ClusterProcesses, discover, init_cluster
from runtime.config import NodeConfig
from vm import Engine

DEFAULT_CLUSTER_DIR = Path("var/cluster")
DEFAULT_RPC = "http://127.0.0.1:8545"


def register(verbs: argparse._SubParsersAction) -> None:
    def verb(name: str, run: Any, help_text: str) -> argparse.ArgumentParser:
        parser = verbs.add_parser(name, help=help_text, description=help_text)
        parser.set_defaults(run=run)
        return parser

    p = verb("init", cmd_init, "Write keys, genesis and per-node configs for N bookkeepers (n = 2t+1).")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--dir", type=Path, default=DEFAULT_CLUSTER_DIR)
    p.add_argument("--base-port", type=int, default=8545, help="node i serves RPC on PORT+i, p2p on PORT+100+i")
    p.add_argument("--observers", type=int, default=0, help="extra non-voting nodes that follow by block sync")

    p = verb("start", cmd_start, "Run one node in the foreground until SIGINT/SIGTERM.")
    p.add_argument("--config", type=Path, required=True)

    p = verb("cluster", cmd_cluster, "Run a local cluster, one OS process per node, until SIGINT/SIGTERM.")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--dir", type=Path, default=DEFAULT_CLUSTER_DIR)
    p.add_argument("--base-port", type=int, default=8545)
    p.add_argument("--observers", type=int, default=0, help="extra non-voting nodes (with a fresh DIR)")

    p = verb("verify", cmd_verify, "Re-check every stored block of a node: links, roots, certificates, indexes.")
    p.add_argument("--data-dir", type=Path, required=True, help="the node's data_dir (holding chain/)")
    p.add_argument("--genesis", type=Path, help="genesis.toml (default: ../genesis.toml next to the node)")

    p = verb("status", cmd_status, "Show a node's chain status.")
    _rpc_args(p)

    p = verb("keys", cmd_keys, "Create a key file, or show the address of one.")
    p.add_argument("--new", type=Path, help="write a new key to this file")
    p.add_argument("--show", type=Path, help="print the public key and address of this key file")

    p = verb("send", cmd_send, "Sign and send a contract call (a token transfer by default); wait for its receipt.")
    _rpc_args(p)
    p.add_argument("--key", type=Path, required=True, help="sender key file")
    p.add_argument("--to", default="token", help="contract name or 0x address")
    p.add_argument("--method", default="transfer")
    p.add_argument("--args", default="[]", help='JSON list; "0x.." strings are bytes')
    p.add_argument("--value", type=int, default=0)
    p.add_argument("--no-wait", action="store_true")

    p = verb("call", cmd_call, "Read-only contract view.")
    _rpc_args(p)
    p.add_argument("contract")
    p.add_argument("method")
    p.add_argument("--args", default="[]")

    p = verb("receipt", cmd_receipt, "Final receipt of a transaction (waits up to --wait-ms).")
    _rpc_args(p)
    p.add_argument("hash")
    p.add_argument("--wait-ms", type=int, default=0)

    p = verb("block", cmd_block, "A block by number, hash or 'latest'.")
    _rpc_args(p)
    p.add_argument("block", nargs="?", default="latest")
    p.add_argument("--full", action="store_true")

    p = verb("proof", cmd_proof, "Fetch a Merkle proof and verify it locally against the block header.")
    _rpc_args(p)
    p.add_argument("kind", choices=["transaction", "receipt", "state", "account"])
    p.add_argument("subject", help="tx hash, 0x state key, or 0x account address for 'account'")
    p.add_argument("--header-rpc", help="fetch the header from this other node")

    for extra in ("demo", "bench", "faults"):
        _register_optional(verbs, extra)


def _register_optional(verbs: argparse._SubParsersAction, name: str) -> None:
    """Jobs live in their own modules (cli/<name>.py) and register themselves when present."""
    try:
        module = __import__(f"cli.{name}", fromlist=["register"])
    except ModuleNotFoundError:
        return
    module.register(verbs)


def _rpc_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpc", action="append", help=f"node URL (repeatable; default {DEFAULT_RPC})")


def _client(args: argparse.Namespace) -> GridClient:
    return GridClient(args.rpc or [DEFAULT_RPC])


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def configure_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)


# node verbs -------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    init_cluster(args.dir, args.nodes, args.base_port, observers=args.observers)
    print(f"initialised {args.nodes} bookkeepers (t = {(args.nodes - 1) // 2}) and {args.observers} observers"
          f" in {args.dir}")
    print(f"  genesis: {args.dir / 'genesis.toml'}\n  accounts: {args.dir / 'accounts.json'}")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from runtime.node import Node

    config = NodeConfig.load(args.config)
    configure_logging(config.log_level)

    async def run() -> None:
        node = Node(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, node.stop)
        await node.run()

    asyncio.run(run())
    logging.getLogger("gridchain.node").info("stopped cleanly")
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    if not (args.dir / "genesis.toml").exists():
        cmd_init(args)
    layout = discover(args.dir)
    processes = ClusterProcesses(layout)
    stopping = False

    def request_stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    print(f"starting {layout.nodes} nodes from {args.dir} ...", flush=True)
    processes.start_all()
    try:
        processes.wait_healthy(progress=True)
        manifest = processes.write_manifest()
        print(f"cluster up: {manifest}  (Ctrl-C stops every node)", flush=True)
        while not stopping:
            for i, process in processes.processes.items():
                if process.poll() is not None:
                    print(f"node{i} exited with {process.returncode}; see {layout.node_dir(i) / 'node.log'}",
                          flush=True)
                    stopping = True
            time.sleep(0.2)
    finally:
        print("stopping nodes ...", flush=True)
        processes.stop_all()
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    genesis_path = args.genesis or (args.data_dir.parent.parent / "genesis.toml"
                                    if (args.data_dir.parent.parent / "genesis.toml").exists()
                                    else args.data_dir.parent / "genesis.toml")
    genesis = Genesis.load(genesis_path)
    store = ChainStore(args.data_dir / "chain")
    chain = Chain(store, genesis, Engine(build_contracts(genesis.contracts)))
    findings = list(verify_chain(chain))
    for finding in findings:
        print(f"block {finding.height}: {finding.problem}")
    print(f"{chain.height + 1} blocks checked, {len(findings)} problems")
    store.close()
    return 1 if findings else 0


# client verbs -----------------------------------------------------------------------------
def _run_client(args: argparse.Namespace, work: Any) -> int:
    async def run() -> int:
        async with _client(args) as client:
            try:
                return await work(client)
            except RpcCallError as exc:
                print(f"error {exc.code}: {exc.message} {json.dumps(exc.data) if exc.data else ''}",
                      file=sys.stderr)
                return 1
    return asyncio.run(run())


def cmd_status(args: argparse.Namespace) -> int:
    async def work(client: GridClient) -> int:
        _print(await client.status())
        return 0
    return _run_client(args, work)


def cmd_keys(args: argparse.Namespace) -> int:
    if args.new:
        key = KeyPair.generate()
        key.save(args.new)
        print(f"wrote {args.new}")
    else:
        if not args.show:
            print("give --new FILE or --show FILE", file=sys.stderr)
            return 2
        key = KeyPair.load(args.show)
    print(json.dumps({"publicKey": "0x" + key.public_key.hex(), "address": "0x" + key.address.hex()}))
    return 0


def _json_args(text: str) -> list[Any]:
    from rpc.encoding import value_from_json

    values = value_from_json(json.loads(text))
    if not isinstance(values, list):
        raise SystemExit("--args must be a JSON list")
    return values


def cmd_send(args: argparse.Namespace) -> int:
    key = KeyPair.load(args.key)

    async def work(client: GridClient) -> int:
        tx_hash = await client.send(key, args.to, args.method, _json_args(args.args), args.value)
        print(f"sent {tx_hash}")
        if args.no_wait:
            return 0
        receipt = await client.wait_receipt(tx_hash)
        _print(receipt)
        return 0 if receipt["status"] == 1 else 1
    return _run_client(args, work)


def cmd_call(args: argparse.Namespace) -> int:
    async def work(client: GridClient) -> int:
        _print(await client.view(args.contract, args.method, _json_args(args.args)))
        return 0
    return _run_client(args, work)


def cmd_receipt(args: argparse.Namespace) -> int:
    async def work(client: GridClient) -> int:
        receipt = await client.receipt(args.hash, args.wait_ms)
        _print(receipt)
        return 0 if receipt is not None else 1
    return _run_client(args, work)


def cmd_block(args: argparse.Namespace) -> int:
    block: int | str = int(args.block) if args.block.isdigit() else args.block

    async def work(client: GridClient) -> int:
        found = await client.block(block, args.full)
        _print(found)
        return 0 if found is not None else 1
    return _run_client(args, work)


def cmd_proof(args: argparse.Namespace) -> int:
    kind, subject = args.kind, args.subject
    if kind == "account":
        kind, subject = "state", "0x" + account_key(bytes.fromhex(subject.removeprefix("0x"))).hex()

    async def work(client: GridClient) -> int:
        header_source = GridClient(args.header_rpc) if args.header_rpc else None
        try:
            value = await client.verified_proof(kind, subject, header_source)
        finally:
            if header_source is not None:
                await header_source.close()
        print(json.dumps({"verified": True, "kind": kind, "value": "0x" + value.hex()}))
        return 0
    return _run_client(args, work)
