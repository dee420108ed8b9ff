"""The consortium's native contracts at their well-known addresses.

Public face: `build_contracts(params)` returns the contract instances the engine runs,
configured from the genesis file's [contracts.*] tables; `validate_params(params)` checks
those tables first (each module's own `validate_params`) and raises ParamError naming the
broken rule; `load_genesis(path)` / `genesis_from_dict(raw)` read a genesis file with its
contract tables checked (contracts/genesis.py).
"""

from __future__ import annotations

import importlib
from typing import Any

from contracts.credit import Credit
from contracts.dsc import Dsc
from contracts.genesis import genesis_from_dict, load_genesis
from contracts.governance import Governance
from contracts.params import ParamError
from contracts.policy import Policy
from contracts.records import Records
from contracts.registry import Registry
from contracts.token import Token
from vm import NativeContract

CONTRACT_TYPES: tuple[type[NativeContract], ...] = (Registry, Token, Dsc, Credit, Policy, Records, Governance)


def validate_params(params: dict[str, Any]) -> None:
    """Every [contracts.<name>] table through `contracts.<name>.validate_params`, when that
    module declares one (a table for an unknown contract is left to its reader)."""
    for name, table in params.items():
        if not name.isidentifier():
            continue
        try:
            module = importlib.import_module(f"contracts.{name}")
        except ModuleNotFoundError:
            continue
        check = getattr(module, "validate_params", None)
        if check is not None:
            check(table)


def build_contracts(params: dict[str, Any]) -> list[NativeContract]:
    validate_params(params)
    return [
        Registry(params.get("registry", {})),
        Token(params.get("token", {})),
        Dsc(params.get("dsc", {})),
        Credit(params.get("credit", {})),
        Policy(params.get("policy", {})),
        Records(params.get("records", {})),
        Governance(params.get("governance", {})),
    ]


__all__ = ["CONTRACT_TYPES", "Credit", "Dsc", "Governance", "ParamError", "Policy", "Records", "Registry", "Token",
           "build_contracts", "genesis_from_dict", "load_genesis", "validate_params"]
