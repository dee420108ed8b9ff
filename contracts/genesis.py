"""The genesis file as a node reads it: chain/'s schema (chain.genesis.Genesis), then every
[contracts.<name>] table checked by the contract it configures. The check lives here, not
in chain/: the ledger runs whatever contracts its engine is given and knows none of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chain.genesis import Genesis, GenesisError
from contracts.registry import admins_of


def load_genesis(path: Path) -> Genesis:
    """Genesis.load, and the contract tables checked (GenesisError names the broken rule)."""
    genesis = Genesis.load(path)
    check_contract_params(genesis.contracts, str(path))
    check_governance(genesis, str(path))
    check_administrators(genesis, str(path))
    return genesis


def genesis_from_dict(raw: dict[str, Any], source: str = "genesis") -> Genesis:
    genesis = Genesis.from_dict(raw, source)
    check_contract_params(genesis.contracts, source)
    check_governance(genesis, source)
    check_administrators(genesis, source)
    return genesis


def check_governance(genesis: Genesis, source: str) -> None:
    """The genesis bookkeeper set is the file's top-level one (Genesis.contract_params hands
    it to the governance contract): [contracts.governance] may not name another."""
    governance = genesis.contracts.get("governance", {})
    if "bookkeepers" in governance or "t" in governance:
        raise GenesisError(f"{source}: [contracts.governance] takes no bookkeepers or t: the genesis set is "
                           "the top-level bookkeepers and t")


def check_administrators(genesis: Genesis, source: str) -> None:
    """Administration is separate from running a node (issue 16): no administrator is a
    bookkeeper's node key, so one stolen node key cannot also decide who belongs."""
    admins = admins_of(genesis.contracts.get("registry", {}))
    nodes = sorted(b.name for b in genesis.bookkeepers if b.address in admins)
    if nodes:
        raise GenesisError(f"{source}: [contracts.registry] admins holds the node key of {', '.join(nodes)}; "
                           "an administrator is a consortium account, not a node key")


def check_contract_params(tables: dict[str, Any], source: str) -> None:
    """Every [contracts.<name>] table names a known contract and passes that contract's own
    checks (contracts.validate_params: each module's `validate_params`, ParamError naming the
    rule)."""
    from contracts import CONTRACT_TYPES, validate_params  # contracts/__init__ imports this module


    known = sorted(kind.name for kind in CONTRACT_TYPES)
    for name, params in tables.items():
        where = f"{source}: [contracts.{name}]"
        if name not in known:
            raise GenesisError(f"{where}: unknown contract; known: {', '.join(known)}")
        if not isinstance(params, dict):
            raise GenesisError(f"{where}: must be a table, got {params!r}")
    try:
        validate_params(tables)
    except ValueError as exc:  # ParamError, or a contract's own ValueError
        raise GenesisError(f"{source}: contract parameter refused: {exc}") from exc
