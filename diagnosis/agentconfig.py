"""Configuration of one agent process (`node.py agent ROLE --config FILE`) and
`node.py consortium init`, which writes a cluster and one config per party.

An agent config is TOML:

    role = "vendor"                   # device | vendor | supplier | smartphone | crew
    name = "vendor-A"
    rpc = ["http://127.0.0.1:8545", ...]   # its nodes, in failover order
    genesis = ".../genesis.toml"     # the light client's trust anchor
    keys = ".../vendor-A.keys.json"  # Ed25519 seed, BLS and Paillier private keys, encrypted (0600)
    passphrase_file = ".../passphrase"  # optional; else $GRIDCHAIN_PASSPHRASE_FILE, $GRIDCHAIN_PASSPHRASE, a prompt
    state = ".../vendor-A.sqlite"    # its own store (diagnosis/store.py)
    inbox_host = "127.0.1.7"          # a loopback address (127.0.0.0/8 or ::1); an IPv4 one is also
                                      # the source of its connections (see consortium init)
    inbox_port = 9101                 # sealed messages, /health, /metrics (and /fail for a device)
    poll_ms = 1000
    [policy]                          # vendor, supplier: when and what to bid
    prices = { meter = 120 }
    requester_credit_min = 0
    [[devices]]                       # vendor: the devices it sold, registered on first start
    [[phones]]                        # vendor: the owners' smartphones it admits on first start
    [crew]                            # vendor, supplier: its crew Rep, registered on first start
    [faults]                          # device: simulated sensor feed
    seed = 7
    mean_interval_s = 0               # 0: no spontaneous faults, only `fail`
    kinds = ["firmware-fault"]        # what the feed reports (physical ones need an on-site repair)
    start_s = 0                       # quiet this long after start
    requests_max = 0                  # requests it opens at most (0: no limit)
    [misbehaviour]                    # failure paths, for demonstrations and tests
    never_reveal = ["sensor"]         # vendor, supplier: device types it commits for and never reveals
    never_serve = ["sensor"]          # vendor, supplier: device types it wins and never serves
    never_confirm = false             # device: applies repairs, never confirms
    [operation]                       # device: simulated draw, run by the policy in force
    power_w = 1600
    power_saving_w = 900
    report_s = 10                     # 0: no operating reports

Registration follows the registry's rules: vendors and suppliers are the consortium's
founding members (in genesis, admitted by its administrators); a vendor registers the
devices it sold and admits their owners' smartphones on its first start; a vendor or
supplier registers its crew; each of these carries the member key's consent to its
registrar, signed at init (`public_key`, `consent`); every agent publishes its own
endpoint.

Each party gets a loopback address of its own (127.0.1.1, 127.0.1.2, ...: Linux routes all
of 127.0.0.0/8 to the loopback interface) for its inbox and as the source of its RPC and
message connections. The nodes bound connections per client address
(`connections_per_client_max`), so on one machine, as across organisations, each party is
its own client and one party cannot take another's share. Where only 127.0.0.1 can be bound
(macOS by default) every party gets that one, and ~200 parties then exceed the cap.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.registry import registration_consent
from crypto import KeyPair, bls, keystore
from crypto.paillier import PaillierPrivateKey
from diagnosis.agents import Identity
from diagnosis.channel import is_loopback
from diagnosis.errors import DiagnosisError
from rpc.config import LOOPBACK
from runtime.cluster import PASSPHRASE_FILE, PORT_SPAN, free_base_port, init_cluster, port_free, toml_value

ROLES = ("device", "vendor", "supplier", "smartphone", "crew")
POLL_MS_RANGE = (50, 60_000)
MISBEHAVIOURS = {"vendor": ("never_reveal", "never_serve"), "supplier": ("never_reveal", "never_serve"),
                 "device": ("never_confirm",), "smartphone": (), "crew": ()}
AGENT_FUNDS = 1_000_000
PORT_MAX = 65_535


class BadAgentConfig(DiagnosisError):
    """A config that cannot run an agent; names the setting."""

    def __init__(self, setting: str, why: str) -> None:
        super().__init__(f"{setting}: {why}")
        self.setting = setting


@dataclass(frozen=True)
class AgentConfig:
    role: str
    name: str
    rpc: list[str]
    genesis: Path
    keys: Path
    state: Path
    inbox_host: str = "127.0.0.1"
    inbox_port: int = 0
    poll_ms: int = 1_000
    policy: dict[str, Any] = field(default_factory=dict)
    devices: list[dict[str, Any]] = field(default_factory=list)
    phones: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, Any] = field(default_factory=dict)
    crew: dict[str, Any] = field(default_factory=dict)
    operation: dict[str, Any] = field(default_factory=dict)
    passphrase_file: Path | None = None  # of the keys file; None: the environment or a prompt
    misbehaviour: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> AgentConfig:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BadAgentConfig(str(path), str(exc)) from exc
        return cls.from_dict(raw, path.parent)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], base: Path) -> AgentConfig:
        for key in ("role", "name", "rpc", "genesis", "keys", "state"):
            if key not in raw:
                raise BadAgentConfig(key, "missing")
        if raw["role"] not in ROLES:
            raise BadAgentConfig("role", f"one of {ROLES}")
        if not isinstance(raw["rpc"], list) or not raw["rpc"] or not all(isinstance(u, str) for u in raw["rpc"]):
            raise BadAgentConfig("rpc", "a non-empty list of node URLs")
        port = raw.get("inbox_port", 0)
        if not isinstance(port, int) or not 0 <= port <= PORT_MAX:
            raise BadAgentConfig("inbox_port", f"0..{PORT_MAX}")
        poll_ms = raw.get("poll_ms", 1_000)
        if not isinstance(poll_ms, int) or not POLL_MS_RANGE[0] <= poll_ms <= POLL_MS_RANGE[1]:
            raise BadAgentConfig("poll_ms", f"{POLL_MS_RANGE[0]}..{POLL_MS_RANGE[1]} ms")
        if not is_loopback(str(raw.get("inbox_host", LOOPBACK))):
            raise BadAgentConfig("inbox_host", "a loopback address only (127.0.0.0/8 or ::1)")
        if raw["role"] in ("vendor", "supplier"):
            prices = raw.get("policy", {}).get("prices")
            if not isinstance(prices, dict) or not all(isinstance(v, int) and v > 0 for v in prices.values()):
                raise BadAgentConfig("policy.prices", "a table of device type = positive price")
        misbehaviour = raw.get("misbehaviour", {})
        unknown = set(misbehaviour) - set(MISBEHAVIOURS[raw["role"]])
        if unknown:
            raise BadAgentConfig("misbehaviour", f"a {raw['role']} knows only {MISBEHAVIOURS[raw['role']]}")
        return cls(raw["role"], str(raw["name"]), list(raw["rpc"]), base / raw["genesis"], base / raw["keys"],
                   base / raw["state"], raw.get("inbox_host", "127.0.0.1"), port, poll_ms,
                   dict(raw.get("policy", {})), list(raw.get("devices", [])), list(raw.get("phones", [])),
                   dict(raw.get("faults", {})), dict(raw.get("crew", {})), dict(raw.get("operation", {})),
                   base / raw["passphrase_file"] if "passphrase_file" in raw else None, dict(misbehaviour))

    @property
    def source_host(self) -> str | None:
        """Where its outgoing connections leave from: its inbox's IPv4 loopback address, so
        a node tells this party from the others on the machine (None for ::1, which an
        IPv4 node URL cannot be reached from)."""
        return self.inbox_host if "." in self.inbox_host else None


IDENTITY = "agent-identity"  # the `kind` of an agent's key file (crypto/keystore.py)


def save_identity(identity: Identity, path: Path, passphrase: str,
                  params: keystore.ScryptParams = keystore.STRONG_SCRYPT) -> None:
    """Write the party's private keys, encrypted under `passphrase`, to a new owner-only file."""
    secret = json.dumps({"name": identity.name, "ed25519": identity.key.seed().hex(),
                         "bls": identity.bls_key.to_bytes().hex(),
                         "paillier": identity.paillier.to_bytes().hex()}).encode()
    public = {"name": identity.name, "address": "0x" + identity.address.hex()}
    document = keystore.seal(secret, IDENTITY, public, passphrase, params)
    keystore.write_private(path, (json.dumps(document, indent=2) + "\n").encode())


def load_identity(path: Path, passphrase: str) -> Identity:
    document = keystore.read_document(path)
    try:
        raw = json.loads(keystore.unseal(document, IDENTITY, passphrase, path))
        return Identity(str(raw["name"]), KeyPair.from_seed(bytes.fromhex(raw["ed25519"])),
                        bls.BlsPrivateKey.from_bytes(bytes.fromhex(raw["bls"])),
                        PaillierPrivateKey.from_bytes(bytes.fromhex(raw["paillier"])))
    except (ValueError, KeyError) as exc:
        raise BadAgentConfig("keys", f"{path}: {exc}") from exc


INBOX_PORT_OFFSET = 400  # agents' inboxes from base + 400 up: past the cluster's RPC, p2p and operator ports
PARTY_HOSTS_FIRST = "127.0.1."  # party k's address: 127.0.(1 + k // 254).(1 + k % 254)
PARTY_HOSTS_PER_OCTET = 254


def party_hosts(count: int) -> list[str]:
    """A loopback address per party, or 127.0.0.1 for all where no other can be bound."""
    with socket.socket() as probe:
        try:
            probe.bind((PARTY_HOSTS_FIRST + "1", 0))
        except OSError as exc:
            if exc.errno != errno.EADDRNOTAVAIL:
                raise
            return [LOOPBACK] * count
    return [f"127.0.{1 + k // PARTY_HOSTS_PER_OCTET}.{1 + k % PARTY_HOSTS_PER_OCTET}" for k in range(count)]


def _inbox_ports(base_port: int, hosts: list[str]) -> list[int]:
    """A distinct port per party from base + INBOX_PORT_OFFSET up, free on its own address
    and on 127.0.0.1 (other clusters and consortia run on the shared box: a port one of them
    holds is skipped, not reused), all inside the cluster's span (base .. base + PORT_SPAN),
    which free_base_port keeps below the kernel's ephemeral range."""
    ports: list[int] = []
    port, end = base_port + INBOX_PORT_OFFSET, min(base_port + PORT_SPAN, PORT_MAX + 1)
    for host in hosts:
        while port < end and not (port_free(port) and port_free(port, host)):
            port += 1
        if port >= end:
            raise BadAgentConfig("inbox_port", f"{len(hosts)} parties' inboxes do not fit in ports "
                                 f"{base_port + INBOX_PORT_OFFSET}..{end - 1} (at most "
                                 f"{PORT_SPAN - INBOX_PORT_OFFSET} parties, fewer when other clusters hold some)")
        ports.append(port)
        port += 1
    return ports


def public_address(path: Path) -> bytes:
    """The party's address from its key file's clear part (no passphrase: an observer, the
    demo, names the parties by it)."""
    document = keystore.read_document(path)
    try:
        return bytes.fromhex(str(document["public"]["address"]).removeprefix("0x"))
    except (KeyError, TypeError, ValueError) as exc:
        raise BadAgentConfig("keys", f"{path}: {exc}") from exc


# consortium init ---------------------------------------------------------------------------
VENDOR_PRICES = {"meter": 120, "relay": 300}
SUPPLIER_PRICES = {"meter": 90, "relay": 250}
WARRANTY_S = 365 * 86_400


def _public(identity: Identity) -> dict[str, str]:
    return {"address": "0x" + identity.address.hex(), "bls_key": identity.bls_public.hex(),
            "paillier_n": identity.paillier_public.to_bytes().hex()}


def _consenting(identity: Identity, chain_id: int, registrar: Identity) -> dict[str, str]:
    """A member that a registrar admits on its first start: its public keys and its key's
    consent to that registrar (a fresh ID: consent nonce 0)."""
    return {**_public(identity), "public_key": identity.key.public_key.hex(),
            "consent": registration_consent(identity.key, chain_id, registrar.address, 0).hex()}


@dataclass(frozen=True)
class NodePlan:
    """A vendor or supplier of a planned consortium, with its crew `crew-<name>` unless
    `crew` is false (then it does no on-site repairs)."""

    name: str
    role: str  # "vendor" | "supplier"
    prices: dict[str, int]
    misbehaviour: dict[str, Any] = field(default_factory=dict)
    crew: bool = True


@dataclass(frozen=True)
class DevicePlan:
    name: str
    device_type: str
    vendor: str  # the vendor that sold it (and registers it)
    in_warranty: bool
    phone: str  # its owner's smartphone
    faults: dict[str, Any] = field(default_factory=dict)  # its [faults] table
    misbehaviour: dict[str, Any] = field(default_factory=dict)
    report_s: float = 10  # its [operation] report interval (0: no operating reports)


@dataclass(frozen=True)
class Plan:
    nodes: tuple[NodePlan, ...]
    devices: tuple[DevicePlan, ...]

    @classmethod
    def default(cls, vendors: int, suppliers: int, devices: int) -> Plan:
        """Devices alternate between the two types and the vendors, the first half in
        warranty, each with its own smartphone."""
        nodes = tuple([NodePlan(f"vendor-{chr(65 + i)}", "vendor", VENDOR_PRICES) for i in range(vendors)]
                      + [NodePlan(f"supplier-{i + 1}", "supplier", SUPPLIER_PRICES) for i in range(suppliers)])
        return cls(nodes, tuple(DevicePlan(f"device-{i + 1}", ("meter", "relay")[i % 2],
                                           f"vendor-{chr(65 + i % vendors)}", i < devices // 2, f"phone-{i + 1}")
                                for i in range(devices)))

    def __post_init__(self) -> None:
        # the vendor admits its devices' smartphones (registrar): an owner buys from one vendor here
        vendor_of: dict[str, str] = {}
        for d in self.devices:
            assert vendor_of.setdefault(d.phone, d.vendor) == d.vendor, f"{d.phone} owns devices of two vendors"

    def phones(self) -> list[str]:
        return list(dict.fromkeys(d.phone for d in self.devices))


def consortium_init(directory: Path, *, vendors: int = 0, suppliers: int = 0, devices: int = 0, nodes: int = 3,
                    base_port: int = 0, contracts: dict[str, Any] | None = None,
                    paillier_bits: int = 2048, plan: Plan | None = None, poll_ms: int = 1_000,
                    observers: int = 0) -> list[Path]:
    """A cluster in `directory/cluster` of `nodes` bookkeepers and `observers`, whose genesis
    admits the vendors and suppliers and funds every party, and `directory/agents/<name>.toml`
    per party: the `plan`, or the default one of `vendors`, `suppliers` and `devices`; the
    parties spread over all the nodes. Returns the config paths."""
    plan = plan or Plan.default(vendors, suppliers, devices)
    base_port = base_port or free_base_port()
    nodes_names = [n.name for n in plan.nodes]
    crews = [f"crew-{n.name}" for n in plan.nodes if n.crew]
    names = nodes_names + [d.name for d in plan.devices] + plan.phones() + crews
    hosts = party_hosts(len(names))
    inbox_ports = _inbox_ports(base_port, hosts)  # before the keys: a plan too large fails at once
    ids = {name: Identity.from_seed(name, os.urandom(32), paillier_bits) for name in names}
    roles = {**{n.name: n.role for n in plan.nodes}, **{d.name: "device" for d in plan.devices},
             **{p: "smartphone" for p in plan.phones()}, **{c: "crew" for c in crews}}
    founders = [{**_public(ids[n.name]), "role": n.role} for n in plan.nodes]
    params = {**(contracts or {})}
    params["registry"] = {**params.get("registry", {}), "members": founders}
    layout = init_cluster(directory / "cluster", nodes, base_port, contracts=params, observers=observers,
                          funded=[(ids[n].key.public_key, AGENT_FUNDS) for n in names])
    chain_id = int(tomllib.loads((directory / "cluster" / "genesis.toml").read_text())["chain_id"])
    rpc = [layout.rpc_url(i) for i in range(layout.nodes)]
    agents = directory / "agents"
    sold: dict[str, list[dict[str, Any]]] = {n.name: [] for n in plan.nodes if n.role == "vendor"}
    owners: dict[str, list[dict[str, Any]]] = {v: [] for v in sold}
    for spec in plan.devices:
        device, phone = ids[spec.name], ids[spec.phone]
        sold[spec.vendor].append({"public_key": device.key.public_key.hex(), "device_type": spec.device_type,
                                  "in_warranty": spec.in_warranty, "bls_key": device.bls_public.hex(),
                                  "paillier_n": device.paillier_public.to_bytes().hex(),
                                  "phone": "0x" + phone.address.hex(),
                                  "consent": registration_consent(device.key, chain_id, ids[spec.vendor].address,
                                                                  0).hex()})
        if not any(p["address"] == "0x" + phone.address.hex() for p in owners[spec.vendor]):
            owners[spec.vendor].append(_consenting(phone, chain_id, ids[spec.vendor]))
    node_plans = {n.name: n for n in plan.nodes}
    device_plans = {d.name: d for d in plan.devices}
    paths = []
    for port_offset, name in enumerate(names):
        role = roles[name]
        crew_of = f"crew-{name}"
        save_identity(ids[name], agents / f"{name}.keys.json", keystore.DEV_PASSPHRASE, keystore.DEV_SCRYPT)
        first = port_offset % len(rpc)  # parties spread over the nodes (each node bounds connections per client)
        lines = [f"role = {toml_value(role)}", f"name = {toml_value(name)}",
                 f"rpc = {toml_value(rpc[first:] + rpc[:first])}",
                 'genesis = "../cluster/genesis.toml"', f'keys = "{name}.keys.json"', f'state = "{name}.sqlite"',
                 f'passphrase_file = "../cluster/{PASSPHRASE_FILE}"',
                 f"inbox_host = {toml_value(hosts[port_offset])}", f"inbox_port = {inbox_ports[port_offset]}",
                 f"poll_ms = {poll_ms}",
                 ""]
        misbehaviour: dict[str, Any] = {}
        if role in ("vendor", "supplier"):
            node = node_plans[name]
            misbehaviour = node.misbehaviour
            lines += ["[policy]", f"prices = {{ {', '.join(f'{k} = {v}' for k, v in node.prices.items())} }}",
                      "requester_credit_min = 0", "remote = true", f"onsite = {toml_value(node.crew)}", ""]
        for entry in sold.get(name, []):
            lines += ["[[devices]]", *(f"{k} = {toml_value(v)}" for k, v in entry.items()), ""]
        for entry in owners.get(name, []):
            lines += ["[[phones]]", *(f"{k} = {toml_value(v)}" for k, v in entry.items()), ""]
        if crew_of in ids:
            crew = _consenting(ids[crew_of], chain_id, ids[name])
            lines += ["[crew]", *(f"{k} = {toml_value(v)}" for k, v in crew.items()), ""]
        if role == "device":
            device_plan = device_plans[name]
            misbehaviour = device_plan.misbehaviour
            faults = {"seed": port_offset, "mean_interval_s": 0, **device_plan.faults}
            lines += ["[faults]", *(f"{k} = {toml_value(v)}" for k, v in faults.items()), "",
                      "[operation]", "power_w = 1600", "power_saving_w = 900",
                      f"report_s = {toml_value(device_plan.report_s)}", ""]
        if misbehaviour:
            lines += ["[misbehaviour]", *(f"{k} = {toml_value(v)}" for k, v in misbehaviour.items()), ""]
        path = agents / f"{name}.toml"
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


__all__ = ["AgentConfig", "BadAgentConfig", "DevicePlan", "NodePlan", "Plan", "consortium_init", "load_identity",
           "party_hosts", "public_address", "save_identity", "WARRANTY_S"]
