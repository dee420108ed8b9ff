"""Verbs of node.py. Node verbs run the node or its files; client verbs talk JSON-RPC to a
node through the SDK (which node: cli/target.py). Expected errors are raised as the typed
exceptions of cli/errors.py and become one line on stderr (node.py)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import json
import signal
from pathlib import Path
from typing import Any

from chain import ChainStore
from chain.chain import Chain, GenesisMismatch
from chain.state import account_key
from chain.verify import verify_chain
from cli import target
from cli.errors import EXIT_FAILED, UserError
from client import GridClient, NodeUnavailable
from client.signatures import check_call
from consensus import TIMING_PRESETS
from contracts import build_contracts, load_genesis
from crypto import KeyPair, keystore
from crypto.keystore import ENV_PASSPHRASE, ENV_PASSPHRASE_FILE
from runtime import topology
from runtime.cluster import DEV_ACCOUNTS, ClusterLayout, init_cluster, port_free
from runtime.config import SYNC_MODES, NodeConfig
from runtime.logs import configure_logging
from vm import Engine

DEFAULT_CLUSTER_DIR = Path("var/cluster")
CHAIN_DIR = "chain"  # a node's store, inside its data_dir


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def verb(name: str, run: Any, help_text: str) -> argparse.ArgumentParser:
        parser = verbs.add_parser(name, help=help_text, description=help_text)
        parser.set_defaults(run=run)
        return parser

    p = verb("init", cmd_init, "Write keys, genesis and per-node configs for N bookkeepers (n = 2t+1): all on "
             "this machine (--nodes, --base-port), or each on its own host (--hosts or --topology; "
             "docs/deployment.md).")
    p.add_argument("--nodes", type=int, default=3, help="bookkeepers, n = 2t+1")
    p.add_argument("--dir", type=Path, default=DEFAULT_CLUSTER_DIR, help="cluster directory (must not exist yet)")
    p.add_argument("--base-port", type=int, default=8545,
                   help="node i serves RPC on PORT+i, p2p on PORT+100+i, operator RPC on PORT+300+i")
    p.add_argument("--observers", type=int, default=0, help="extra non-voting nodes that follow by block sync")
    p.add_argument("--hosts", help="comma-separated addresses, one bookkeeper on each (ports: --p2p-port, "
                                   "--rpc-port, --operator-port)")
    p.add_argument("--observer-hosts", default="", help="with --hosts: comma-separated addresses of observers")
    p.add_argument("--topology", type=Path, help="a TOML file with each node's host and ports (runtime/topology.py)")
    p.add_argument("--p2p-port", type=int, default=topology.P2P_PORT, help="with --hosts: every node's p2p port")
    p.add_argument("--rpc-port", type=int, default=topology.RPC_PORT, help="with --hosts: every node's RPC port")
    p.add_argument("--operator-port", type=int, default=topology.OPERATOR_PORT,
                   help="with --hosts: every node's operator RPC port (on its loopback)")
    p.add_argument("--timing", choices=sorted(TIMING_PRESETS),
                   help="[consensus] Δ and timeouts (default: loopback on this machine, the topology file's or wan "
                        "on hosts)")
    p.add_argument("--accounts", type=int, default=DEV_ACCOUNTS, help="funded development accounts in genesis")

    p = verb("start", cmd_start, "Run one node in the foreground until SIGINT/SIGTERM.")
    p.add_argument("--config", type=Path, required=True, help="the node's node.toml")
    p.add_argument("--sync", choices=SYNC_MODES,
                   help="how a fresh node joins: replay the chain from genesis (blocks) or restore the newest "
                        "state snapshot its peers offer, then follow (snapshot); default: [sync] mode of the config")

    p = verb("verify", cmd_verify, "Re-check every stored block of a node: links, roots, certificates, indexes "
             "(from its base height when pruned or joined by snapshot: the state there is checked node by node).")
    p.add_argument("--data-dir", type=Path, required=True, help="the node's data_dir (holding chain/)")
    p.add_argument("--genesis", type=Path,
                   help="genesis.toml (default: the one two or one levels above DATA_DIR)")

    p = verb("status", cmd_status, "Show a node's chain status.")
    target.add_arguments(p)

    p = verb("consensus-faults", cmd_consensus_faults, "Bookkeepers a node holds proof of misbehaving (XFT "
             "fault detection: state loss, forks), with the proofs; exit 1 when there is any.")
    target.add_arguments(p)

    p = verb("snapshots", cmd_snapshots, "List the state snapshots a node serves, its base height, and the progress "
             "of its own restore when it joins by snapshot.")
    target.add_arguments(p)

    p = verb("keys", cmd_keys, "Encrypted key files (docs/security.md): create, show, import, export, re-encrypt. "
             f"Passphrases come from --passphrase-file, ${ENV_PASSPHRASE_FILE}, ${ENV_PASSPHRASE} or a prompt.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_text: str, *files: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text, description=help_text)
        for file in files:
            parser.add_argument(file, type=Path)
        if name != "show":
            parser.add_argument("--passphrase-file", type=Path, help="the key's (current) passphrase")
        if name in ("new", "import", "change-passphrase"):
            parser.add_argument("--dev", action="store_true",
                                help="cheap scrypt instead of strong: throwaway development keys only")
        return parser

    action("new", "write a new key, encrypted, to FILE (refuses to overwrite one)", "file")
    action("show", "print the public key and address of FILE (no passphrase needed)", "file")
    action("import", "encrypt the hex seed in SEED_FILE into the new key file FILE", "seed_file", "file")
    action("export", "write FILE's key as a hex seed to the new owner-only SEED_FILE", "file", "seed_file")
    a = action("change-passphrase", "re-encrypt FILE under a new passphrase (and strong scrypt, unless --dev)",
               "file")
    a.add_argument("--new-passphrase-file", type=Path, help="the new passphrase (default: asked twice)")

    p = verb("contracts", cmd_contracts, "List every contract with its methods and views and their parameter types.")
    target.add_arguments(p)
    p.add_argument("--json", action="store_true", help="print the node's contract_list reply as JSON")

    p = verb("send", cmd_send, "Sign and send a contract call (a token transfer by default); wait for its receipt. "
             "The method and arguments are checked against the contract's signature first.")
    target.add_arguments(p)
    p.add_argument("--key", type=Path, required=True, help="sender key file")
    p.add_argument("--passphrase-file", type=Path, help=f"its passphrase (or ${ENV_PASSPHRASE_FILE}, "
                   f"${ENV_PASSPHRASE}, a prompt)")
    p.add_argument("--to", default="token", help="contract name or 0x address")
    p.add_argument("--method", default="transfer", help="a method of the contract (node.py contracts lists them)")
    p.add_argument("--args", default="[]", help='JSON list of arguments; "0x.." strings are bytes')
    p.add_argument("--value", type=int, default=0, help="tokens sent with the call")
    p.add_argument("--no-wait", action="store_true", help="print the hash and return without waiting for the receipt")

    p = verb("call", cmd_call, "Read-only contract view (checked against the contract's signature first).")
    target.add_arguments(p)
    p.add_argument("contract", help="contract name or 0x address")
    p.add_argument("method", help="a view of the contract (node.py contracts lists them)")
    p.add_argument("--args", default="[]", help='JSON list of arguments; "0x.." strings are bytes')

    p = verb("receipt", cmd_receipt, "Final receipt of a transaction (waits up to --wait-ms).")
    target.add_arguments(p)
    p.add_argument("hash", help="0x transaction hash")
    p.add_argument("--wait-ms", type=int, default=0, help="wait this long for the transaction to be final")

    p = verb("block", cmd_block, "A block by number, hash or 'latest'.")
    target.add_arguments(p)
    p.add_argument("block", nargs="?", default="latest", help="number, 0x hash or latest")
    p.add_argument("--full", action="store_true", help="include the raw transactions")

    p = verb("proof", cmd_proof, "Fetch a Merkle proof and verify it locally against the block header.")
    target.add_arguments(p)
    p.add_argument("kind", choices=["transaction", "receipt", "state", "account"], help="what to prove")
    p.add_argument("subject", help="tx hash, 0x state key, or 0x account address for 'account'")
    p.add_argument("--header-rpc", type=target.rpc_url, metavar="URL",
                   help="fetch the header from this other node (default: the same node)")

    for extra in ("admin", "cluster", "demo", "bench", "faults", "agent", "explorer", "governance"):
        _register_optional(verbs, extra)


def _register_optional(verbs: argparse._SubParsersAction[argparse.ArgumentParser], name: str) -> None:
    """Jobs live in their own modules (cli/<name>.py) and register themselves when present."""
    try:
        module = __import__(f"cli.{name}", fromlist=["register"])
    except ModuleNotFoundError:
        return
    module.register(verbs)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


# node verbs -------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    if args.accounts < 0:
        raise UserError(f"--accounts {args.accounts}: must be 0 or more")
    placed = _topology(args)
    if placed is None:
        initialise(args.dir, args.nodes, args.base_port, args.observers, timing=args.timing or "loopback",
                   accounts=args.accounts)
        return 0
    timing = args.timing or placed.timing or "wan"
    _refuse_initialised(args.dir)
    layout = init_cluster(args.dir, len(placed.bookkeepers), 0, observers=len(placed.observers),
                          endpoints=placed.endpoints, consensus=TIMING_PRESETS[timing], accounts=args.accounts)
    print(f"initialised {len(placed.bookkeepers)} bookkeepers (t = {(len(placed.bookkeepers) - 1) // 2}) and "
          f"{len(placed.observers)} observers in {args.dir}, timing {timing}")
    for i in range(layout.nodes):
        print(f"  node{i} ({layout.role(i)}) on {layout.host(i)}: p2p {layout.p2p_port(i)}, RPC {layout.rpc_url(i)}, "
              f"operator {layout.operator_url(i)} there; copy {layout.node_dir(i)}/ and "
              f"{args.dir / 'genesis.toml'} to it")
    print(f"  every key is sealed under the published development passphrase ({args.dir / 'passphrase'}): give "
          "each node.key a real one on its host (docs/deployment.md, \"Key handling\")")
    return 0


def _topology(args: argparse.Namespace) -> topology.Topology | None:
    """The hosts the nodes go on, or None for a cluster on this machine."""
    if args.hosts and args.topology:
        raise UserError("give --hosts or --topology, not both")
    try:
        if args.topology is not None:
            return topology.load(args.topology)
        if args.hosts:
            ports = {"p2p_port": args.p2p_port, "rpc_port": args.rpc_port, "operator_port": args.operator_port}
            return topology.from_hosts(_hosts(args.hosts), _hosts(args.observer_hosts), ports)
    except topology.TopologyError as exc:
        raise UserError(str(exc)) from None
    if args.observer_hosts:
        raise UserError("--observer-hosts goes with --hosts")
    return None


def _hosts(text: str) -> list[str]:
    return [h.strip() for h in text.split(",") if h.strip()]


def _refuse_initialised(directory: Path) -> None:
    if (directory / "genesis.toml").exists():
        raise UserError(f"{directory} is already initialised (it holds genesis.toml); use another --dir, "
                        f"or delete {directory} to start a new chain")


def initialise(directory: Path, nodes: int, base_port: int, observers: int, timing: str = "loopback",
               accounts: int = DEV_ACCOUNTS) -> ClusterLayout:
    _refuse_initialised(directory)
    planned_layout(directory, nodes, base_port, observers)
    layout = init_cluster(directory, nodes, base_port, observers=observers, consensus=TIMING_PRESETS[timing],
                          accounts=accounts)
    print(f"initialised {nodes} bookkeepers (t = {(nodes - 1) // 2}) and {observers} observers in {directory}")
    print(f"  genesis: {directory / 'genesis.toml'}\n  accounts: {directory / 'accounts.json'}")
    return layout


def planned_layout(directory: Path, nodes: int, base_port: int, observers: int) -> ClusterLayout:
    """The layout of a new cluster, or UserError when its shape cannot work."""
    if nodes < 3 or nodes % 2 == 0:
        raise UserError(f"--nodes {nodes}: XPaxos needs n = 2t+1 bookkeepers: 3, 5, 7, ...")
    if observers < 0:
        raise UserError(f"--observers {observers}: must be 0 or more")
    layout = ClusterLayout(directory, nodes + observers, base_port, bookkeepers=nodes)
    top = max(layout.ports(layout.nodes - 1).values())
    if base_port < 1 or top > 65535:
        raise UserError(f"--base-port {base_port}: the cluster needs ports {base_port}..{top}, within 1..65535")
    return layout


def cmd_start(args: argparse.Namespace) -> int:
    from explorer import serve_in
    from runtime.node import Node

    config = NodeConfig.load(args.config)
    if args.sync is not None:
        config = dataclasses.replace(config, sync_mode=args.sync)
    listeners = (("[rpc]", config.rpc.host, config.rpc.port), ("[p2p]", config.p2p_host, config.p2p_port),
                 ("[rpc] operator", config.rpc.operator_host, config.rpc.operator_port))
    for what, host, port in listeners:
        if not port_free(port, host):
            raise _address_in_use(args.config, what, host, port)
    configure_logging(config.log_level, config.log_format)
    try:
        node = Node(config)
    except GenesisMismatch as exc:
        raise UserError(f"data_dir {config.data_dir} holds a chain from another genesis than {config.genesis} "
                        f"({exc}); point [node] data_dir at a fresh directory or genesis at that chain's file",
                        EXIT_FAILED) from None
    serve_in(node)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, node.stop)
        await node.run()

    try:
        asyncio.run(run())
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise UserError(f"{args.config}: cannot listen: {exc.strerror} ({exc}); another process holds a port "
                        f"of [rpc] or [p2p]", EXIT_FAILED) from None
    return 0


def _address_in_use(config: Path, what: str, host: str, port: int) -> UserError:
    return UserError(f"{config}: {what} port {host}:{port} is in use by another process; stop it or change "
                     f"{what} port", EXIT_FAILED)


def cmd_verify(args: argparse.Namespace) -> int:
    store_dir = args.data_dir / CHAIN_DIR
    if not (store_dir / "data.mdb").is_file():
        raise UserError(f"--data-dir {args.data_dir}: no chain store there (expected {store_dir}/data.mdb); "
                        "give a node's data_dir, e.g. var/cluster/node0/data", EXIT_FAILED)
    genesis_path = args.genesis or _genesis_beside(args.data_dir)
    genesis = load_genesis(genesis_path)
    store = ChainStore(store_dir)
    try:
        try:
            chain = Chain(store, genesis, Engine(build_contracts(genesis.contract_params)))
        except GenesisMismatch as exc:
            raise UserError(f"--data-dir {args.data_dir} holds a chain from another genesis than {genesis_path} "
                            f"({exc}); give its own with --genesis", EXIT_FAILED) from None
        findings = list(verify_chain(chain))
        base = store.base_height()
    finally:
        store.close()
    for finding in findings:
        print(f"block {finding.height}: {finding.problem}")
    if base:
        print(f"the store starts at height {base} (pruned, or joined by snapshot): block {base} and its whole "
              f"state checked, blocks {base + 1}..{chain.height} re-executed")
    print(f"{chain.height - base + 1} blocks checked, {len(findings)} problems (heights {base}..{chain.height})")
    return 1 if findings else 0


def _genesis_beside(data_dir: Path) -> Path:
    for candidate in (data_dir.parent.parent / "genesis.toml", data_dir.parent / "genesis.toml"):
        if candidate.exists():
            return candidate
    raise UserError(f"no genesis.toml found above {data_dir}; give it with --genesis FILE")


# client verbs -----------------------------------------------------------------------------
def run_client(args: argparse.Namespace, work: Any) -> int:
    where = target.resolve(args)

    async def run() -> int:
        async with GridClient(where.urls, token=args.token, ca_file=args.ca_file) as client:
            return int(await work(client))

    try:
        return asyncio.run(run())
    except NodeUnavailable as exc:
        hint = "" if where.origin == "--rpc" else f"; point elsewhere: --rpc URL, --cluster DIR or ${target.ENV_RPC}"
        raise UserError(f"{exc} (node list from {where.origin}{hint})", EXIT_FAILED) from None


def cmd_status(args: argparse.Namespace) -> int:
    async def work(client: GridClient) -> int:
        print_json(await client.status())
        return 0
    return run_client(args, work)


def cmd_consensus_faults(args: argparse.Namespace) -> int:
    async def work(client: GridClient) -> int:
        faults = await client.rpc.call("consensus_faults")
        print_json(faults)
        return 1 if faults else 0
    return run_client(args, work)


def cmd_snapshots(args: argparse.Namespace) -> int:
    async def work(client: GridClient) -> int:
        print_json(await client.snapshots())
        return 0
    return run_client(args, work)


def cmd_keys(args: argparse.Namespace) -> int:
    path: Path = args.file
    if args.action in ("new", "import"):
        if path.exists():
            raise UserError(f"{path}: the file exists; a key is never overwritten")
        key = KeyPair.generate() if args.action == "new" else keystore.read_plain_seed(args.seed_file)
        passphrase = keystore.resolve_passphrase(str(path), args.passphrase_file, confirm=True)
        keystore.save_key(key, path, passphrase, _scrypt(args))
        print(f"wrote {path}")
    elif args.action == "show":
        _check_exists(path, "keys show")
        document = keystore.read_document(path)
        public = document.get("public") if isinstance(document, dict) else None
        if not isinstance(public, dict):
            raise UserError(f"{path}: not a gridchain key file")
        print(json.dumps({"publicKey": "0x" + str(public.get("public_key")), "address": public.get("address")}))
        return 0
    elif args.action == "export":
        key = load_key(path, "keys export", args.passphrase_file)
        keystore.write_private(args.seed_file, key.seed().hex().encode() + b"\n")
        print(f"wrote the unencrypted seed of {path} to {args.seed_file}: delete it when done")
    else:
        key = load_key(path, "keys change-passphrase", args.passphrase_file)
        new = keystore.resolve_passphrase(f"{path} (new)", args.new_passphrase_file, env={}, confirm=True)
        keystore.save_key(key, path, new, _scrypt(args), replace=True)
        print(f"re-encrypted {path}")
    print(json.dumps({"publicKey": "0x" + key.public_key.hex(), "address": "0x" + key.address.hex()}))
    return 0


def _scrypt(args: argparse.Namespace) -> keystore.ScryptParams:
    return keystore.DEV_SCRYPT if args.dev else keystore.STRONG_SCRYPT


def _check_exists(path: Path, option: str) -> None:
    if not path.is_file():
        raise UserError(f"{option} {path}: no such key file (create one with `node.py keys new {path}`; "
                        "the cluster's funded keys are in DIR/accounts/, their passphrase in DIR/passphrase)")


def load_key(path: Path, option: str, passphrase_file: Path | None) -> KeyPair:
    _check_exists(path, option)
    return keystore.load_key(path, keystore.resolve_passphrase(str(path), passphrase_file))


def cmd_contracts(args: argparse.Namespace) -> int:
    async def work(client: GridClient) -> int:
        listing = await client.contracts()
        if args.json:
            print_json(listing)
            return 0
        for contract in listing:
            print(f"{contract['name']}  {contract['address']}")
            for m in contract["methods"]:
                params = ", ".join(f"{name}: {kind}" for name, kind in m["params"])
                print(f"  {m['kind']:6} {m['name']}({params})")
        return 0
    return run_client(args, work)


def _json_args(text: str) -> list[Any]:
    from rpc.encoding import value_from_json
    from rpc.errors import RpcError

    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--args {text!r} is not JSON ({exc.msg} at column {exc.colno}); write a JSON list, "
                        "e.g. --args '[\"0x2d0a...\", 12345]'") from None
    if not isinstance(parsed, list):
        raise UserError(f"--args {text!r} must be a JSON list, e.g. '[{text}]'")
    try:
        return [value_from_json(value) for value in parsed]
    except RpcError as exc:
        raise UserError(f"--args {text!r}: {exc.message}") from None


def cmd_send(args: argparse.Namespace) -> int:
    key = load_key(args.key, "--key", args.passphrase_file)
    call_args = _json_args(args.args)

    async def work(client: GridClient) -> int:
        check_call(await client.contracts(), args.to, args.method, call_args, "method")
        tx_hash = await client.send(key, args.to, args.method, call_args, args.value)
        print(f"sent {tx_hash}")
        if args.no_wait:
            return 0
        receipt = await client.wait_receipt(tx_hash)
        print_json(receipt.to_json())
        return 0 if receipt.ok else 1
    return run_client(args, work)


def cmd_call(args: argparse.Namespace) -> int:
    call_args = _json_args(args.args)

    async def work(client: GridClient) -> int:
        check_call(await client.contracts(), args.contract, args.method, call_args, "view")
        print_json(await client.view(args.contract, args.method, call_args))
        return 0
    return run_client(args, work)


def cmd_receipt(args: argparse.Namespace) -> int:
    _hex_arg(args.hash, "hash", 32)

    async def work(client: GridClient) -> int:
        receipt = await client.receipt(args.hash, args.wait_ms)
        print_json(receipt)
        return 0 if receipt is not None else 1
    return run_client(args, work)


def cmd_block(args: argparse.Namespace) -> int:
    block: int | str = int(args.block) if args.block.isdigit() else args.block
    if isinstance(block, str) and block != "latest":
        _hex_arg(block, "block", 32)

    async def work(client: GridClient) -> int:
        found = await client.block(block, args.full)
        print_json(found)
        return 0 if found is not None else 1
    return run_client(args, work)


def _hex_arg(text: str, name: str, length: int) -> bytes:
    try:
        value = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        value = b""
    if len(value) != length:
        raise UserError(f"{name} {text!r} is not {length} bytes of 0x-hex ({2 * length} hex digits)")
    return value


def cmd_proof(args: argparse.Namespace) -> int:
    kind, subject = args.kind, args.subject
    if kind == "account":
        kind, subject = "state", "0x" + account_key(_hex_arg(subject, "account address", 20)).hex()
    elif kind in ("transaction", "receipt"):
        _hex_arg(subject, "transaction hash", 32)
    else:
        try:
            bytes.fromhex(subject.removeprefix("0x"))
        except ValueError:
            raise UserError(f"state key {subject!r} is not 0x-hex") from None

    async def work(client: GridClient) -> int:
        header_source = GridClient(args.header_rpc, token=args.token, ca_file=args.ca_file) if args.header_rpc else None
        try:
            value = await client.verified_proof(kind, subject, header_source)
        finally:
            if header_source is not None:
                await header_source.close()
        print(json.dumps({"verified": True, "kind": kind, "value": "0x" + value.hex()}))
        return 0
    return run_client(args, work)

