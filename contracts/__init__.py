"""The consortium's native contracts at their well-known addresses.

Public face: `build_contracts(params)` returns the contract instances the engine runs,
configured from the genesis file's [contracts.*] tables.
"""

from __future__ import annotations

from typing import Any

from contracts.token import Token
from vm.contract import NativeContract


def build_contracts(params: dict[str, Any]) -> list[NativeContract]:
    return [Token(params.get("token", {}))]


__all__ = ["Token", "build_contracts"]
