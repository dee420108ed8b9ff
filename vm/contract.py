"""How a native contract plugs in (style habit 7): a class with a name, a fixed address
and methods marked @method (may change state; called by transactions or other contracts)
or @view (read-only; called over RPC). Arguments are typed values checked against the
method's type hints before the call.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from chain import Value
from crypto import Address
from vm.errors import BadArguments

_KIND_ATTRIBUTE = "__gridchain_kind__"
ARGS_MAX = 32
Function = TypeVar("Function", bound=Callable[..., Any])


def method(fn: Function) -> Function:
    setattr(fn, _KIND_ATTRIBUTE, "method")
    return fn


def view(fn: Function) -> Function:
    setattr(fn, _KIND_ATTRIBUTE, "view")
    return fn


def well_known_address(number: int) -> Address:
    """Native contracts live at 0x00..01, 0x00..02, ... like Ethereum's precompiles."""
    return number.to_bytes(20, "big")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    kind: str  # "method" or "view"
    function: Callable[..., Any]
    parameters: tuple[tuple[str, Any], ...]  # (name, annotation)

    def check_args(self, args: list[Value]) -> None:
        if len(args) != len(self.parameters):
            raise BadArguments(f"{self.name} takes {len(self.parameters)} arguments, got {len(args)}")
        for (name, annotation), arg in zip(self.parameters, args, strict=True):
            if not _matches(arg, annotation):
                raise BadArguments(f"{self.name}: {name} must be {type_name(annotation)}")


class NativeContract:
    name: ClassVar[str]
    address: ClassVar[Address]
    _methods: ClassVar[dict[str, MethodSpec]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._methods = {}
        for attr, fn in inspect.getmembers(cls, inspect.isfunction):
            kind = getattr(fn, _KIND_ATTRIBUTE, None)
            if kind is None:
                continue
            hints = typing.get_type_hints(fn)
            params = list(inspect.signature(fn).parameters)[2:]  # skip self, ctx
            cls._methods[attr] = MethodSpec(attr, kind, fn, tuple((p, hints[p]) for p in params))

    @classmethod
    def method_spec(cls, name: str) -> MethodSpec | None:
        return cls._methods.get(name)

    @classmethod
    def methods(cls) -> dict[str, MethodSpec]:
        return dict(sorted(cls._methods.items()))

    def genesis(self, ctx: Any) -> None:
        """Write the contract's initial state into block 0 (parameters, administrators)."""

    def end_block(self, ctx: Any) -> None:
        """Hook run at the end of every block; contracts with triggers override it."""


def _matches(arg: Value, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is list:
        (item_type,) = typing.get_args(annotation) or (Any,)
        return isinstance(arg, list) and all(_matches(a, item_type) for a in arg)
    if annotation is Any:
        return True
    if annotation is int:
        return isinstance(arg, int) and not isinstance(arg, bool)
    return isinstance(arg, annotation)


def type_name(annotation: Any) -> str:
    """A parameter type as contract_list shows it (`int`, `bytes`, `list[bytes]`) and as
    client/signatures.py reads it back."""
    if typing.get_origin(annotation) is list:
        args = typing.get_args(annotation)
        return f"list[{type_name(args[0])}]" if args else "list"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))
