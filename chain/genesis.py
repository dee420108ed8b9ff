"""Genesis: the chain's constitution, read from TOML (DESIGN.md; `config/genesis.toml`).

It fixes the chain id, the bookkeepers (n = 2t+1 Ed25519 keys, in index order), the funded
accounts, ledger limits that validity depends on, and the contracts' parameters. The
genesis header's `extra` is keccak256 of the canonical encoding of all of it, so nodes
started from different files disagree on block 0 and never join the same chain.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chain.errors import LedgerError
from crypto.hashing import keccak256
from crypto.keys import Address, address_of


class GenesisError(LedgerError):
    """The genesis file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class Bookkeeper:
    name: str
    public_key: bytes

    @property
    def address(self) -> Address:
        return address_of(self.public_key)


@dataclass(frozen=True)
class LedgerLimits:
    block_txs_max: int = 2_000
    block_bytes_max: int = 2 << 20
    block_gas_max: int = 500_000_000
    tx_bytes_max: int = 16 << 10
    tx_gas_max: int = 50_000_000


@dataclass(frozen=True)
class Genesis:
    chain_id: int
    timestamp_ms: int
    t: int
    bookkeepers: tuple[Bookkeeper, ...]
    accounts: tuple[tuple[Address, int], ...]
    limits: LedgerLimits
    contracts: dict[str, Any] = field(default_factory=dict)

    @property
    def bookkeeper_keys(self) -> list[bytes]:
        return [b.public_key for b in self.bookkeepers]

    def digest(self) -> bytes:
        canonical = {
            "chain_id": self.chain_id,
            "timestamp_ms": self.timestamp_ms,
            "t": self.t,
            "bookkeepers": [[b.name, b.public_key.hex()] for b in self.bookkeepers],
            "accounts": [[a.hex(), balance] for a, balance in self.accounts],
            "limits": self.limits.__dict__,
            "contracts": self.contracts,
        }
        return keccak256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode())

    @classmethod
    def load(cls, path: Path) -> Genesis:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise GenesisError(f"cannot read genesis {path}: {exc}") from exc
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Genesis:
        try:
            bookkeepers = tuple(
                Bookkeeper(b["name"], bytes.fromhex(b["public_key"])) for b in raw["bookkeepers"]
            )
            accounts = tuple(
                (_account_address(a), int(a["balance"])) for a in raw.get("accounts", [])
            )
            genesis = cls(
                chain_id=int(raw["chain_id"]),
                timestamp_ms=int(raw.get("timestamp_ms", 0)),
                t=int(raw["t"]),
                bookkeepers=bookkeepers,
                accounts=accounts,
                limits=LedgerLimits(**raw.get("limits", {})),
                contracts=raw.get("contracts", {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise GenesisError(f"malformed genesis: {exc!r}") from exc
        if len(genesis.bookkeepers) != 2 * genesis.t + 1:
            raise GenesisError(f"{len(genesis.bookkeepers)} bookkeepers but t = {genesis.t}: need 2t+1")
        if any(len(b.public_key) != 32 for b in genesis.bookkeepers):
            raise GenesisError("a bookkeeper key is not 32 bytes")
        if any(balance < 0 for _, balance in genesis.accounts):
            raise GenesisError("negative genesis balance")
        _validate_contract_params(genesis.contracts)
        return genesis


def _validate_contract_params(tables: dict[str, Any]) -> None:
    """Each contract checks its own [contracts.<name>] table (contracts.validate_params):
    a refused value names the rule, before block 0 is built. Imported here, not at the
    top: the ledger does not otherwise depend on the contracts package."""
    from contracts import validate_params
    from contracts.params import ParamError

    if not isinstance(tables, dict):
        raise GenesisError("[contracts] is a table of contract tables")
    try:
        validate_params(tables)
    except ParamError as exc:
        raise GenesisError(f"contract parameter refused: {exc}") from exc


def _account_address(entry: dict[str, Any]) -> Address:
    if "public_key" in entry:
        return address_of(bytes.fromhex(entry["public_key"]))
    address = bytes.fromhex(entry["address"].removeprefix("0x"))
    if len(address) != 20:
        raise ValueError("an address is 20 bytes")
    return address
