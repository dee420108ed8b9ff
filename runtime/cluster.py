"""Local clusters: `init_cluster` writes keys, genesis and per-node configuration;
`ClusterProcesses` starts every node as its own OS process, waits until each serves /health
for this cluster's chain, writes cluster.json, and stops them (`node.py cluster`, in
cli/cluster.py, supervises them). Started again on the same directory, the chain continues
where it was (each node's LMDB is under its own directory).

Layout of DIR:
    genesis.toml                 shared by all nodes
    passphrase                   the insecure development passphrase of every key below
    node{i}/node.toml, node.key  one per bookkeeper; data in node{i}/data
    accounts/account{j}.key      funded development accounts
    accounts.json                [{name, address, key_file}]
    node{i}/rpc.secret           the node's RPC token secret (0600; a node without one writes it at start)
    admins/admin{j}.key          the consortium's administrators (not node keys: issue 16)
    cluster.json                 written once the nodes are up: URLs (public and operator), pids, states
    control/node{i}.request      `node.py node ACTION` asks the supervisor (cli/cluster.py)

Keys are encrypted key files (crypto/keystore.py) under keystore.DEV_PASSPHRASE with the
cheapest scrypt: a development cluster needs no typing, and its keys are no secret.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crypto import KeyPair
from crypto.keystore import DEV_PASSPHRASE, DEV_SCRYPT, load_key, read_passphrase_file, save_key, write_private
from rpc.auth import create_secret
from rpc.config import LOOPBACK

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "config" / "genesis.toml"
DEV_ACCOUNTS = 10
DEV_BALANCE = 10**15
DEV_ADMINS = 3  # administrators of a development cluster; a decision needs a majority, 2
P2P_PORT_OFFSET = 100  # node i listens for peers on base_port + 100 + i
OPERATOR_PORT_OFFSET = 300  # and for operators on base_port + 300 + i (+400 up: the agents' inboxes)
HEALTH_TIMEOUT_S = 60
PASSPHRASE_FILE = "passphrase"



@dataclass(frozen=True)
class Endpoint:
    """Where one node is reached: `host` is the address its peers dial and its clients use;
    it listens there too, unless `listen` names the bind address (0.0.0.0 behind NAT)."""

    host: str
    p2p_port: int
    rpc_port: int
    operator_port: int
    listen: str | None = None

    @property
    def bind(self) -> str:
        return self.listen or self.host


@dataclass(frozen=True)
class ClusterLayout:
    directory: Path
    nodes: int  # every node process: bookkeepers first, then observers
    base_port: int
    bookkeepers: int = 0  # 0 means all nodes are bookkeepers
    # one per node on real hosts (node.py init --hosts / --topology); none: all on loopback, ports from base_port
    endpoints: tuple[Endpoint, ...] = ()

    @property
    def bookkeeper_count(self) -> int:
        return self.bookkeepers or self.nodes

    def role(self, i: int) -> str:
        return "bookkeeper" if i < self.bookkeeper_count else "observer"

    def node_dir(self, i: int) -> Path:
        return self.directory / f"node{i}"

    def endpoint(self, i: int) -> Endpoint:
        if self.endpoints:
            return self.endpoints[i]
        return Endpoint(LOOPBACK, self.base_port + P2P_PORT_OFFSET + i, self.base_port + i,
                        self.base_port + OPERATOR_PORT_OFFSET + i)

    def host(self, i: int) -> str:
        return self.endpoint(i).host

    def rpc_port(self, i: int) -> int:
        return self.endpoint(i).rpc_port

    def p2p_port(self, i: int) -> int:
        return self.endpoint(i).p2p_port

    def operator_port(self, i: int) -> int:
        return self.endpoint(i).operator_port

    def rpc_url(self, i: int) -> str:
        return http_url(self.host(i), self.rpc_port(i))

    def operator_url(self, i: int) -> str:
        """The operator listener is on loopback of the node's own host (tools run there)."""
        return http_url(LOOPBACK, self.operator_port(i))

    def ports(self, i: int) -> dict[str, int]:
        return {"RPC": self.rpc_port(i), "p2p": self.p2p_port(i), "operator": self.operator_port(i)}


def http_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def init_cluster(directory: Path, nodes: int, base_port: int, *, chain_id: int | None = None,
                 contracts: dict[str, Any] | None = None, consensus: dict[str, Any] | None = None,
                 accounts: int = DEV_ACCOUNTS, observers: int = 0,
                 funded: list[tuple[bytes, int]] | None = None,
                 endpoints: tuple[Endpoint, ...] = (), admins: int = DEV_ADMINS) -> ClusterLayout:
    """Write a fresh cluster into `directory` (which must hold no genesis yet): `nodes`
    bookkeepers and `observers` non-voting nodes that follow the chain by block sync;
    `funded` adds genesis accounts (Ed25519 public key, balance), e.g. a consortium's
    agents (diagnosis/agentconfig.py). `endpoints` place the nodes on real hosts (one per
    node, bookkeepers first); without them every node is on loopback, ports from base_port.
    `admins` administrator keys are written to DIR/admins/ and named in genesis unless
    `contracts` names the administrators."""
    if nodes < 3 or nodes % 2 == 0:
        raise ValueError("XPaxos needs n = 2t+1 bookkeepers: 3, 5, 7, ...")
    if endpoints and len(endpoints) != nodes + observers:
        raise ValueError(f"{len(endpoints)} endpoints for {nodes + observers} nodes")
    if (directory / "genesis.toml").exists():  # a real check: under python -O an assert would overwrite the keys
        raise FileExistsError(f"{directory} is already initialised (it holds genesis.toml)")
    layout = ClusterLayout(directory, nodes + observers, base_port, bookkeepers=nodes, endpoints=endpoints)
    directory.mkdir(parents=True, exist_ok=True)
    template = tomllib.loads(TEMPLATE.read_text())
    node_keys = [KeyPair.generate() for _ in range(layout.nodes)]
    account_keys = [KeyPair.generate() for _ in range(accounts)]
    write_private(directory / PASSPHRASE_FILE, DEV_PASSPHRASE.encode() + b"\n")
    admin_keys = [KeyPair.generate() for _ in range(admins)]
    for j, key in enumerate(admin_keys):
        save_key(key, directory / "admins" / f"admin{j}.key", DEV_PASSPHRASE, DEV_SCRYPT)
    for i, key in enumerate(node_keys):
        save_key(key, layout.node_dir(i) / "node.key", DEV_PASSPHRASE, DEV_SCRYPT)
        create_secret(layout.node_dir(i) / "rpc.secret")
    bookkeeper_keys = node_keys[:nodes]
    account_entries = []
    for j, key in enumerate(account_keys):
        key_file = directory / "accounts" / f"account{j}.key"
        save_key(key, key_file, DEV_PASSPHRASE, DEV_SCRYPT)
        account_entries.append({"name": f"account{j}", "address": "0x" + key.address.hex(),
                                "key_file": str(key_file.resolve())})
    (directory / "accounts.json").write_text(json.dumps(account_entries, indent=2) + "\n")
    genesis_lines = [f"chain_id = {chain_id if chain_id is not None else template['chain_id']}",
                     f"timestamp_ms = {int(time.time() * 1000)}", f"t = {(nodes - 1) // 2}", ""]
    for i, key in enumerate(bookkeeper_keys):
        genesis_lines += ["[[bookkeepers]]", f'name = "node{i}"', f'public_key = "{key.public_key.hex()}"', ""]
    for public_key, balance in [*((key.public_key, DEV_BALANCE) for key in account_keys), *(funded or [])]:
        genesis_lines += ["[[accounts]]", f'public_key = "{public_key.hex()}"', f"balance = {balance}", ""]
    genesis_lines += _toml_tables({"limits": template.get("limits", {})})
    contract_params = {**template.get("contracts", {}), **(contracts or {})}
    registry = contract_params.setdefault("registry", {})
    # Administration is separate from running a node: the administrators are accounts of
    # their own (unless the caller names others), never node keys.
    registry.setdefault("admins", ["0x" + key.address.hex() for key in admin_keys])
    genesis_lines += _toml_tables({"contracts": contract_params})
    (directory / "genesis.toml").write_text("\n".join(genesis_lines) + "\n")
    for i in range(layout.nodes):
        # Every node knows every other: observers are the bookkeepers' allowed, "registered"
        # peers, and an observer may become a bookkeeper by governance, when it must reach
        # every member of its groups (docs/consensus.md "Governance").
        known = range(layout.nodes)
        peers = [{"name": f"node{k}", "public_key": node_keys[k].public_key.hex(), "host": layout.host(k),
                  "port": layout.p2p_port(k)} for k in known if k != i]
        endpoint = layout.endpoint(i)
        lines = ["[node]", f'name = "node{i}"', 'data_dir = "data"', 'key_file = "node.key"',
                 f'key_passphrase_file = "../{PASSPHRASE_FILE}"',
                 'genesis = "../genesis.toml"', 'log_level = "info"', "",
                 "[p2p]", f"host = {toml_value(endpoint.bind)}", f"port = {endpoint.p2p_port}", ""]
        for peer in peers:
            lines += ["[[p2p.peers]]", *(f"{k} = {toml_value(v)}" for k, v in peer.items()), ""]
        # The public listener on the node's address; the operator one on this host's loopback only.
        lines += ["[rpc]", f"host = {toml_value(endpoint.bind)}", f"port = {endpoint.rpc_port}",
                  f"operator_host = {toml_value(LOOPBACK)}", f"operator_port = {endpoint.operator_port}", ""]
        # the explorer's proof page checks against a header of the next node (another one)
        lines += ["[explorer]", f"header_rpc = {toml_value(layout.rpc_url((i + 1) % layout.nodes))}", ""]
        if consensus:
            lines += ["[consensus]", *(f"{k} = {toml_value(v)}" for k, v in consensus.items()), ""]
        (layout.node_dir(i) / "node.toml").write_text("\n".join(lines) + "\n")
    return layout


def cluster_passphrase(directory: Path) -> str:
    return read_passphrase_file(directory / PASSPHRASE_FILE)


def node_key(layout: ClusterLayout, i: int) -> KeyPair:
    return load_key(layout.node_dir(i) / "node.key", cluster_passphrase(layout.directory))


def account_keys(directory: Path) -> list[KeyPair]:
    """The funded development accounts of the cluster in `directory`, in accounts.json order."""
    passphrase = cluster_passphrase(directory)
    return [load_key(Path(a["key_file"]), passphrase) for a in json.loads((directory / "accounts.json").read_text())]


def toml_value(value: Any) -> str:
    """A scalar, list or table as a TOML value (config files written by init, the fault
    harness and `consortium init`); a table inside a list is written inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_tables(tables: dict[str, Any], prefix: str = "") -> list[str]:
    """Nested dicts as [a.b] tables (scalars first, then sub-tables), deterministic order."""
    lines: list[str] = []
    for name in sorted(tables):
        value = tables[name]
        path = f"{prefix}.{name}" if prefix else name
        scalars = {k: v for k, v in value.items() if not isinstance(v, dict)}
        lines += [f"[{path}]", *(f"{k} = {toml_value(scalars[k])}" for k in sorted(scalars)), ""]
        lines += _toml_tables({k: v for k, v in value.items() if isinstance(v, dict)}, path)
    return lines


def discover(directory: Path) -> ClusterLayout:
    configs = sorted(directory.glob("node*/node.toml"))
    if not configs:
        raise FileNotFoundError(f"no node*/node.toml under {directory}")
    genesis = tomllib.loads((directory / "genesis.toml").read_text())
    endpoints = []
    for i in range(len(configs)):  # node0, node1, ... (sorted() would put node10 before node2)
        raw = tomllib.loads((directory / f"node{i}" / "node.toml").read_text())
        endpoints.append(Endpoint(raw["rpc"].get("host", LOOPBACK), int(raw["p2p"]["port"]), int(raw["rpc"]["port"]),
                                  int(raw["rpc"].get("operator_port", 0))))
    return ClusterLayout(directory, len(configs), endpoints[0].rpc_port, bookkeepers=len(genesis["bookkeepers"]),
                         endpoints=tuple(endpoints))


class ClusterProcesses:
    """The node processes of one cluster directory."""

    def __init__(self, layout: ClusterLayout, extra_args: list[str] | None = None,
                 prefix: Callable[[int], list[str]] | None = None) -> None:
        self.layout = layout
        self.extra_args = extra_args or []
        self.prefix = prefix  # node i's command runs behind prefix(i) (faults/netns.py: ip netns exec)
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def start_node(self, i: int) -> subprocess.Popen[bytes]:
        node_dir = self.layout.node_dir(i)
        with open(node_dir / "node.log", "ab") as log_file:  # the child holds its own descriptor
            process = subprocess.Popen(
                [*(self.prefix(i) if self.prefix else []), sys.executable, str(ROOT / "node.py"), "start",
                 "--config", str((node_dir / "node.toml").resolve()), *self.extra_args],
                stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.processes[i] = process
        return process

    def start_all(self) -> None:
        for i in range(self.layout.nodes):
            self.start_node(i)

    def wait_healthy(self, timeout_s: float = HEALTH_TIMEOUT_S, progress: bool = False) -> None:
        deadline = time.monotonic() + timeout_s
        pending = set(self.processes)
        while pending:
            for i in sorted(pending):
                if self.ready(i):
                    pending.discard(i)
                    if progress:
                        print(f"  node{i} up at {self.layout.rpc_url(i)}", flush=True)
            if pending and time.monotonic() > deadline:  # the last turn may have found them all up
                raise TimeoutError(f"nodes {sorted(pending)} did not answer /health in {timeout_s}s; "
                                   f"see {self.layout.directory}/node*/node.log")
            time.sleep(0.1)

    def ready(self, i: int) -> bool:
        """Node i's process runs and its RPC port answers /health for this cluster's chain.
        Raises RuntimeError when the process has exited or another chain answers the port."""
        process = self.processes[i]
        if process.poll() is not None:
            raise RuntimeError(f"node{i} exited with {describe_exit(process.returncode)}; "
                               f"see {self.layout.node_dir(i) / 'node.log'}")
        if rpc_health(self.layout.rpc_url(i))[0] is None:
            return False
        identity = node_identity(self.layout.rpc_url(i))
        if identity is None:
            return False
        expected = self.identity()
        if identity != expected:
            raise RuntimeError(f"{self.layout.host(i)} port {self.layout.rpc_port(i)} answers for another chain "
                               f"(chain id {identity[0]}, "
                               f"genesis 0x{identity[1][:16]}...), not node{i} of {self.layout.directory} "
                               f"(chain id {expected[0]}, genesis 0x{expected[1][:16]}...)")
        return True

    def identity(self) -> tuple[int, str]:
        """(chain id, genesis digest hex): what every node of this cluster reports for block 0."""
        from chain.genesis import Genesis

        genesis = Genesis.load(self.layout.directory / "genesis.toml")
        return genesis.chain_id, genesis.digest().hex()

    def stop_node(self, i: int, sig: int = signal.SIGTERM, timeout_s: float = 10) -> None:
        process = self.processes.get(i)
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_all(self) -> None:
        for i in list(self.processes):
            if self.processes[i].poll() is None:
                self.processes[i].send_signal(signal.SIGTERM)
        for i in list(self.processes):
            self.stop_node(i)

    def write_manifest(self, states: dict[int, str] | None = None, supervisor: int | None = None) -> Path:
        """cluster.json: the nodes' URLs and pids (and, under `node.py cluster`, each node's
        state and the supervisor's pid), replaced atomically: client verbs read it any time."""
        genesis = tomllib.loads((self.layout.directory / "genesis.toml").read_text())
        manifest: dict[str, Any] = {
            "chain_id": genesis["chain_id"],
            "t": genesis["t"],
            "nodes": [{"name": f"node{i}", "role": self.layout.role(i),
                       "rpc": self.layout.rpc_url(i),
                       "p2p": f"{self.layout.host(i)}:{self.layout.p2p_port(i)}",
                       "operator": self.layout.operator_url(i),
                       "rpc_secret": str((self.layout.node_dir(i) / "rpc.secret").resolve()),
                       "pid": self.processes[i].pid if i in self.processes else None,
                       **({"state": states[i]} if states and i in states else {}),
                       "data_dir": str((self.layout.node_dir(i) / "data").resolve())}
                      for i in range(self.layout.nodes)],
            "accounts": str((self.layout.directory / "accounts.json").resolve()),
        }
        if supervisor is not None:
            manifest["supervisor"] = supervisor
        path = self.layout.directory / "cluster.json"
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(manifest, indent=2) + "\n")
        partial.replace(path)
        return path


def describe_exit(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"status {returncode}"


def free_base_port() -> int:
    """A base port whose RPC (base+i), p2p (base+100+i) and operator (base+300+i) ports are free right now (tests,
    benchmarks, fault runs and the demo start clusters side by side, so pick at random). Below the
    kernel's ephemeral range: there any outgoing connection may take a port between this probe and
    the node's bind (the likely cause of a fault run's node exiting at start in CI)."""
    rng = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "big"))
    highest = min(_ephemeral_port_low(), 65_536) - PORT_SPAN
    for _ in range(200):
        base = rng.randrange(BASE_PORT_LOW, max(highest, BASE_PORT_LOW + 1_000))
        offsets = (0, P2P_PORT_OFFSET, OPERATOR_PORT_OFFSET)
        if all(port_free(base + offset + i) for offset in offsets for i in range(10)):
            return base
    raise RuntimeError("no free port range on loopback")


BASE_PORT_LOW = 10_000  # above the well-known and most registered service ports
PORT_SPAN = 1_000  # a cluster's ports and its agents' inboxes (diagnosis.agentconfig) fit in base .. base + 1000


def _ephemeral_port_low() -> int:
    """The first port the kernel hands to outgoing connections (Linux default 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def port_free(port: int, host: str = LOOPBACK) -> bool:
    """Nothing listens on host:port (SO_REUSEADDR as the node's own listeners: a port a
    stopped node left in TIME_WAIT counts as free). Any other bind error (an address not of
    this host) is not "in use": the node's own bind reports it."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno != errno.EADDRINUSE
    return True


def rpc_health(url: str) -> tuple[int | None, dict[str, Any] | None]:
    """(HTTP status, body) of GET /health at the node's RPC `url`, or (None, None) when
    nothing answers."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ValueError):
        return None, None  # HTTPException: something else answers on that port (not HTTP)


def node_identity(url: str) -> tuple[int, str] | None:
    """(chain id, block 0's extra = genesis digest, hex) of the node at this RPC URL, or None."""
    try:
        status = _rpc(url, "chain_status")
        block = _rpc(url, "chain_getBlock", 0, False)
        return int(status["chainId"]), str(block["extra"]).removeprefix("0x")
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError, KeyError, TypeError):
        return None


def _rpc(url: str, method: str, *params: Any) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
    request = urllib.request.Request(f"{url}/", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["result"]
