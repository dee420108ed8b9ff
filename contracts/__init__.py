"""The consortium's native contracts at their well-known addresses.

Public face: `build_contracts(params)` returns the contract instances the engine runs,
configured from the genesis file's [contracts.*] tables.
"""

from __future__ import annotations

from typing import Any

from contracts.credit import Credit
from contracts.dsc import Dsc
from contracts.policy import Policy
from contracts.records import Records
from contracts.registry import Registry
from contracts.token import Token
from vm.contract import NativeContract


def build_contracts(params: dict[str, Any]) -> list[NativeContract]:
    return [
        Registry(params.get("registry", {})),
        Token(params.get("token", {})),
        Dsc(params.get("dsc", {})),
        Credit(params.get("credit", {})),
        Policy(params.get("policy", {})),
        Records(params.get("records", {})),
    ]


__all__ = ["Credit", "Dsc", "Policy", "Records", "Registry", "Token", "build_contracts"]
