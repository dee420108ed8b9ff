"""Where the nodes of a deployment run: one endpoint (host, ports) per node, from
`node.py init --hosts A,B,C` or a TOML file (`--topology FILE`):

    timing = "wan"                  # optional: loopback, lan or wan (consensus.TIMING_PRESETS)

    [defaults]                      # optional; these are the defaults
    p2p_port = 26656
    rpc_port = 8545
    operator_port = 8551

    [[bookkeepers]]                 # n = 2t+1 of them, in genesis order
    host = "10.0.1.11"              # the address peers dial and clients use
    listen = "0.0.0.0"              # optional: bind here instead (behind NAT)
    p2p_port = 26656                # optional, per node

    [[observers]]                   # optional: non-voting nodes that follow by block sync
    host = "10.0.3.31"

Two nodes may share a host if their ports differ; every listener of a host must have
its own port.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus import TIMING_PRESETS
from rpc.config import PORT_MAX
from runtime.cluster import Endpoint

P2P_PORT = 26656  # CometBFT's, so firewalls written for a BFT chain fit
RPC_PORT = 8545
OPERATOR_PORT = 8551  # reached on the host's loopback only (by default)
NODE_KEYS = ("host", "listen", "p2p_port", "rpc_port", "operator_port")
PORT_KEYS = ("p2p_port", "rpc_port", "operator_port")
WILDCARDS = ("0.0.0.0", "::")


class TopologyError(Exception):
    """The topology names an unusable host, port or shape; the message says where."""


@dataclass(frozen=True)
class Topology:
    bookkeepers: tuple[Endpoint, ...]
    observers: tuple[Endpoint, ...]
    timing: str | None = None  # a TIMING_PRESETS key, when the file names one

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self.bookkeepers + self.observers


def from_hosts(bookkeepers: list[str], observers: list[str], ports: dict[str, int]) -> Topology:
    """`--hosts` (and `--observer-hosts`): each node on its host with the same ports."""
    return _checked(Topology(tuple(_endpoint({"host": h}, ports, f"--hosts {h}") for h in bookkeepers),
                             tuple(_endpoint({"host": h}, ports, f"--observer-hosts {h}") for h in observers)))


def load(path: Path) -> Topology:
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TopologyError(f"cannot read {path}: {exc}") from exc
    unknown = set(raw) - {"timing", "defaults", "bookkeepers", "observers"}
    if unknown:
        raise TopologyError(f"{path}: unknown keys {', '.join(sorted(unknown))} (timing, defaults, bookkeepers, "
                            "observers)")
    timing = raw.get("timing")
    if timing is not None and timing not in TIMING_PRESETS:
        raise TopologyError(f"{path}: timing {timing!r} is not one of {', '.join(TIMING_PRESETS)}")
    defaults = raw.get("defaults", {})
    if not isinstance(defaults, dict) or set(defaults) - set(PORT_KEYS):
        raise TopologyError(f"{path}: [defaults] takes {', '.join(PORT_KEYS)}")
    ports = {"p2p_port": P2P_PORT, "rpc_port": RPC_PORT, "operator_port": OPERATOR_PORT}
    ports.update({k: _port(v, f"{path}: [defaults] {k}") for k, v in defaults.items()})
    tables = {}
    for kind in ("bookkeepers", "observers"):
        rows = raw.get(kind, [])
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise TopologyError(f"{path}: {kind} must be [[{kind}]] tables")
        tables[kind] = tuple(_endpoint(row, ports, f"{path}: {kind}[{i}]") for i, row in enumerate(rows))
    return _checked(Topology(tables["bookkeepers"], tables["observers"], timing))


def _endpoint(row: dict[str, Any], defaults: dict[str, int], where: str) -> Endpoint:
    unknown = set(row) - set(NODE_KEYS)
    if unknown:
        raise TopologyError(f"{where}: unknown keys {', '.join(sorted(unknown))} ({', '.join(NODE_KEYS)})")
    host = row.get("host")
    if not isinstance(host, str) or not host.strip():
        raise TopologyError(f"{where}: host must be the address peers dial (an IP address or a DNS name)")
    if host in WILDCARDS:
        raise TopologyError(f"{where}: host {host} is a bind address, not one to dial; give the host's address "
                            f"and, to bind everywhere, listen = {host!r}")
    listen = row.get("listen")
    if listen is not None and not _is_address(listen):
        raise TopologyError(f"{where}: listen {listen!r} is not an IP address")
    ports = {k: _port(row.get(k, defaults[k]), f"{where}: {k}") for k in PORT_KEYS}
    return Endpoint(host, ports["p2p_port"], ports["rpc_port"], ports["operator_port"], listen)


def _port(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= PORT_MAX:
        raise TopologyError(f"{where}: {value!r} is not a port 1..{PORT_MAX}")
    return value


def _is_address(text: Any) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _checked(topology: Topology) -> Topology:
    n = len(topology.bookkeepers)
    if n < 3 or n % 2 == 0:
        raise TopologyError(f"{n} bookkeepers: XPaxos needs n = 2t+1 of them: 3, 5, 7, ...")
    # The operator listener binds the host's loopback, the others its address: all on one host.
    taken = Counter((e.host, port) for e in topology.endpoints for port in (e.p2p_port, e.rpc_port, e.operator_port))
    clashes = sorted(f"{host}:{port}" for (host, port), count in taken.items() if count > 1)
    if clashes:
        raise TopologyError(f"two listeners on {', '.join(clashes)}: nodes sharing a host need their own ports "
                            "(p2p_port, rpc_port, operator_port)")
    return topology
