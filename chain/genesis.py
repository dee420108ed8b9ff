"""Genesis: the chain's constitution, read from TOML (docs/architecture.md; `config/genesis.toml`).

It fixes the chain id, the bookkeepers (n = 2t+1 Ed25519 keys, in index order), the funded
accounts, ledger limits that validity depends on, and the contracts' parameters (raw
tables here; contracts.load_genesis checks them, since chain/ knows no contract). The
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
from chain.schema import SchemaError, Table, build, check_document, document
from crypto import Address, address_of, keccak256


class GenesisError(LedgerError):
    """The genesis file is missing, malformed or inconsistent."""


UINT64_MAX = 2**64 - 1


@dataclass(frozen=True)
class Bookkeeper:
    name: str
    public_key: bytes = field(metadata={"doc": "Ed25519 node key, 32 bytes hex"})

    def __post_init__(self) -> None:
        if len(self.public_key) != 32:
            raise ValueError(f"bookkeeper {self.name}: public_key is {len(self.public_key)} bytes, not 32")

    @property
    def address(self) -> Address:
        return address_of(self.public_key)


@dataclass(frozen=True)
class GenesisAccount:
    """An [[accounts]] entry as written in the file: a public key or an address, and a balance."""

    balance: int
    public_key: bytes | None = None  # Ed25519, 32 bytes hex
    address: bytes | None = None  # 20 bytes hex

    def __post_init__(self) -> None:
        if (self.public_key is None) == (self.address is None):
            raise ValueError("an account has either public_key or address")
        if self.public_key is not None and len(self.public_key) != 32:
            raise ValueError("an account public_key is 32 bytes")
        if self.address is not None and len(self.address) != 20:
            raise ValueError("an address is 20 bytes")

    @property
    def account_address(self) -> Address:
        return address_of(self.public_key) if self.public_key is not None else bytes(self.address or b"")


@dataclass(frozen=True)
class LedgerLimits:
    block_txs_max: int = field(default=2_000, metadata={"min": 1})  # transactions per block
    block_bytes_max: int = field(default=2 << 20, metadata={"min": 1})  # bytes of transactions per block
    block_gas_max: int = field(default=500_000_000, metadata={"min": 1})
    tx_bytes_max: int = field(default=16 << 10, metadata={"min": 1})  # one signed transaction, rlp
    tx_gas_max: int = field(default=50_000_000, metadata={"min": 1})

    def __post_init__(self) -> None:
        if self.tx_bytes_max > self.block_bytes_max:
            raise ValueError("tx_bytes_max must not exceed block_bytes_max (a transaction fits in a block)")
        if self.tx_gas_max > self.block_gas_max:
            raise ValueError("tx_gas_max must not exceed block_gas_max (a transaction fits in a block)")


@dataclass(frozen=True)
class Genesis:
    chain_id: int = field(metadata={"max": UINT64_MAX})
    t: int = field(metadata={"min": 1, "doc": "tolerated faults; n = 2t+1 bookkeepers"})
    # n = 2t+1 Ed25519 keys, in index order
    bookkeepers: tuple[Bookkeeper, ...] = field(metadata={"schema": Bookkeeper})
    # funded accounts: public_key or address, and balance
    accounts: tuple[tuple[Address, int], ...] = field(default=(), metadata={"schema": GenesisAccount})
    limits: LedgerLimits = field(default_factory=LedgerLimits)
    # [contracts.<name>] parameters, checked by each contract's validate_params (docs/contracts.md)
    contracts: dict[str, Any] = field(default_factory=dict)
    timestamp_ms: int = field(default=0, metadata={"max": UINT64_MAX})  # the genesis block's time

    @property
    def bookkeeper_keys(self) -> list[bytes]:
        return [b.public_key for b in self.bookkeepers]

    @property
    def contract_params(self) -> dict[str, Any]:
        """The [contracts.*] tables as the contracts get them: the governance contract also
        gets the genesis set (`bookkeepers`, `t`), the first epoch of its schedule."""
        governance = {**self.contracts.get("governance", {}), "t": self.t,
                      "bookkeepers": [key.hex() for key in self.bookkeeper_keys]}
        return {**self.contracts, "governance": governance}

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
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "genesis") -> Genesis:
        try:
            values = check_document(raw, genesis_tables(), source)
            top = values[""]
            genesis = cls(
                chain_id=top["chain_id"],
                timestamp_ms=top.get("timestamp_ms", 0),
                t=top["t"],
                bookkeepers=tuple(build(Bookkeeper, b, f"{source}: bookkeepers[{i}]")
                                  for i, b in enumerate(top["bookkeepers"])),
                accounts=tuple((build(GenesisAccount, a, f"{source}: accounts[{i}]").account_address, a["balance"])
                               for i, a in enumerate(top.get("accounts", []))),
                limits=build(LedgerLimits, values["limits"], f"{source}: [limits]"),
                contracts=top.get("contracts", {}),
            )
        except SchemaError as exc:
            raise GenesisError(str(exc)) from exc
        if len(genesis.bookkeepers) != 2 * genesis.t + 1:
            raise GenesisError(f"{source}: {len(genesis.bookkeepers)} bookkeepers but t = {genesis.t}: need 2t+1")
        return genesis


def genesis_tables() -> list[Table]:
    return document(Genesis, "")


