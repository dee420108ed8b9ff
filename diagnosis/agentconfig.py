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
    inbox_host = "127.0.0.1"
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
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.registry import registration_consent
from crypto import bls, keystore
from crypto.keys import KeyPair
from crypto.paillier import PaillierPrivateKey
from diagnosis.agents import Identity
from diagnosis.errors import DiagnosisError
from runtime.cluster import PASSPHRASE_FILE, free_base_port, init_cluster, toml_value

ROLES = ("device", "vendor", "supplier", "smartphone", "crew")
POLL_MS_RANGE = (50, 60_000)
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
        if raw.get("inbox_host", "127.0.0.1") not in ("127.0.0.1", "::1"):
            raise BadAgentConfig("inbox_host", "loopback only (127.0.0.1 or ::1)")
        if raw["role"] in ("vendor", "supplier"):
            prices = raw.get("policy", {}).get("prices")
            if not isinstance(prices, dict) or not all(isinstance(v, int) and v > 0 for v in prices.values()):
                raise BadAgentConfig("policy.prices", "a table of device type = positive price")
        return cls(raw["role"], str(raw["name"]), list(raw["rpc"]), base / raw["genesis"], base / raw["keys"],
                   base / raw["state"], raw.get("inbox_host", "127.0.0.1"), port, poll_ms,
                   dict(raw.get("policy", {})), list(raw.get("devices", [])), list(raw.get("phones", [])),
                   dict(raw.get("faults", {})), dict(raw.get("crew", {})), dict(raw.get("operation", {})),
                   base / raw["passphrase_file"] if "passphrase_file" in raw else None)


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


def consortium_init(directory: Path, *, vendors: int, suppliers: int, devices: int, nodes: int = 3,
                    base_port: int = 0, contracts: dict[str, Any] | None = None,
                    paillier_bits: int = 2048) -> list[Path]:
    """A cluster in `directory/cluster` whose genesis admits the vendors and suppliers and
    funds every party, and `directory/agents/<name>.toml` per party: devices alternate
    between the two types and the vendors, the first half in warranty, each with its own
    smartphone. Returns the config paths."""
    base_port = base_port or free_base_port()
    nodes_names = [f"vendor-{chr(65 + i)}" for i in range(vendors)] + [f"supplier-{i + 1}" for i in range(suppliers)]
    names = (nodes_names + [f"device-{i + 1}" for i in range(devices)] + [f"phone-{i + 1}" for i in range(devices)]
             + [f"crew-{n}" for n in nodes_names])
    ids = {name: Identity.from_seed(name, os.urandom(32), paillier_bits) for name in names}
    founders = [{**_public(ids[n]), "role": "vendor" if n.startswith("vendor") else "supplier"}
                for n in names if n.startswith(("vendor", "supplier"))]
    params = {**(contracts or {})}
    params["registry"] = {**params.get("registry", {}), "members": founders}
    layout = init_cluster(directory / "cluster", nodes, base_port, contracts=params,
                          funded=[(ids[n].key.public_key, AGENT_FUNDS) for n in names])
    chain_id = int(tomllib.loads((directory / "cluster" / "genesis.toml").read_text())["chain_id"])
    rpc = [layout.rpc_url(i) for i in range(nodes)]
    agents = directory / "agents"
    sold: dict[str, list[dict[str, Any]]] = {f"vendor-{chr(65 + i)}": [] for i in range(vendors)}
    owners: dict[str, list[dict[str, Any]]] = {v: [] for v in sold}
    for i in range(devices):
        device, phone, vendor = ids[f"device-{i + 1}"], ids[f"phone-{i + 1}"], f"vendor-{chr(65 + i % vendors)}"
        sold[vendor].append({"public_key": device.key.public_key.hex(), "device_type": ("meter", "relay")[i % 2],
                             "in_warranty": i < devices // 2, "bls_key": device.bls_public.hex(),
                             "paillier_n": device.paillier_public.to_bytes().hex(), "phone": "0x" + phone.address.hex(),
                             "consent": registration_consent(device.key, chain_id, ids[vendor].address, 0).hex()})
        owners[vendor].append(_consenting(phone, chain_id, ids[vendor]))
    paths = []
    for port_offset, name in enumerate(names):
        role = name.split("-")[0].replace("phone", "smartphone")
        crew_of = f"crew-{name}"
        save_identity(ids[name], agents / f"{name}.keys.json", keystore.DEV_PASSPHRASE, keystore.DEV_SCRYPT)
        first = port_offset % len(rpc)  # parties spread over the nodes (each node bounds connections per client)
        lines = [f"role = {toml_value(role)}", f"name = {toml_value(name)}",
                 f"rpc = {toml_value(rpc[first:] + rpc[:first])}",
                 'genesis = "../cluster/genesis.toml"', f'keys = "{name}.keys.json"', f'state = "{name}.sqlite"',
                 f'passphrase_file = "../cluster/{PASSPHRASE_FILE}"',
                 'inbox_host = "127.0.0.1"', f"inbox_port = {base_port + 200 + port_offset}", "poll_ms = 1000", ""]
        if role in ("vendor", "supplier"):
            prices = VENDOR_PRICES if role == "vendor" else SUPPLIER_PRICES
            lines += ["[policy]", f"prices = {{ {', '.join(f'{k} = {v}' for k, v in prices.items())} }}",
                      "requester_credit_min = 0", "remote = true", "onsite = true", ""]
        for entry in sold.get(name, []):
            lines += ["[[devices]]", *(f"{k} = {toml_value(v)}" for k, v in entry.items()), ""]
        for entry in owners.get(name, []):
            lines += ["[[phones]]", *(f"{k} = {toml_value(v)}" for k, v in entry.items()), ""]
        if crew_of in ids:
            crew = _consenting(ids[crew_of], chain_id, ids[name])
            lines += ["[crew]", *(f"{k} = {toml_value(v)}" for k, v in crew.items()), ""]
        if role == "device":
            lines += ["[faults]", f"seed = {port_offset}", "mean_interval_s = 0", "",
                      "[operation]", "power_w = 1600", "power_saving_w = 900", "report_s = 10", ""]
        path = agents / f"{name}.toml"
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


__all__ = ["AgentConfig", "BadAgentConfig", "consortium_init", "load_identity", "save_identity", "WARRANTY_S"]
