"""Contract parameter validation: every [contracts.<name>] value is checked where it is set
(genesis loading and each contract's constructor), and a refused value names the rule it
breaks, e.g. `[contracts.credit] alpha_percent = 100: alpha_percent in [0, 100)`.

Each contract module declares `validate_params(params)`; `chain.genesis` calls it for every
contract table it loads, so a bad genesis file is refused before block 0 is built.
"""

from __future__ import annotations

from typing import Any


class ParamError(ValueError):
    """A contract parameter breaks a rule: the contract, the parameter, the rule, the value."""

    def __init__(self, contract: str, name: str, rule: str, value: object) -> None:
        super().__init__(f"[contracts.{contract}] {name} = {value!r}: {rule}")
        self.contract, self.name, self.rule, self.value = contract, name, rule, value


def integer(params: dict[str, Any], contract: str, name: str, default: int, *, low: int | None = None,
            below: int | None = None, table: str = "") -> int:
    """`params[name]` (or `default`) as an int in [low, below); the rule names the bounds.
    `table` prefixes the name of a value in a sub-table (`prices.meter.p_min`)."""
    value = params.get(name, default)
    label = f"{table}.{name}" if table else name
    if not isinstance(value, int) or isinstance(value, bool):
        raise ParamError(contract, label, f"{name} is an integer", value)
    if (low is not None and value < low) or (below is not None and value >= below):
        raise ParamError(contract, label, _rule(name, low, below), value)
    return value


def choice(params: dict[str, Any], contract: str, name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = params.get(name, default)
    if value not in allowed:
        raise ParamError(contract, name, f"{name} is one of {', '.join(allowed)}", value)
    assert isinstance(value, str)
    return value


def require(condition: bool, contract: str, name: str, rule: str, value: object) -> None:
    """A relation between parameters (P_min < P_max) or a structural rule."""
    if not condition:
        raise ParamError(contract, name, rule, value)


def _rule(name: str, low: int | None, below: int | None) -> str:
    if below is None:
        return f"{name} >= {low}"
    if low is None:
        return f"{name} < {below}"
    return f"{name} in [{low}, {below})"
