"""Contract calls checked against the signatures the node declares (`contract_list`) before
anything is signed: a misspelt method or a wrong argument is refused locally, instead of
being mined as a failed transaction that spends a nonce and gas."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from client.errors import BadCall


@dataclass(frozen=True)
class MethodSignature:
    contract: str
    name: str
    kind: str  # "method" (a transaction) or "view" (contract_call)
    params: tuple[tuple[str, str], ...]  # (name, type name as vm.contract.type_name writes it)

    def __str__(self) -> str:
        return f"{self.name}({', '.join(f'{p}: {t}' for p, t in self.params)})"


def signatures(listing: list[dict[str, Any]]) -> dict[str, dict[str, MethodSignature]]:
    """contract name -> method name -> signature, from a contract_list reply."""
    return {c["name"]: {m["name"]: MethodSignature(c["name"], m["name"], m["kind"],
                                                   tuple((p, t) for p, t in m["params"]))
                        for m in c["methods"]}
            for c in listing}


def check_call(listing: list[dict[str, Any]], contract: str, method: str, args: list[Any], kind: str) -> None:
    """Raise BadCall unless `contract.method(args)` matches a declared `kind` method."""
    by_contract = signatures(listing)
    if contract.startswith("0x"):
        names = {c["address"].lower(): c["name"] for c in listing}
        contract = names.get(contract.lower(), contract)
    methods = by_contract.get(contract)
    if methods is None:
        raise BadCall(f"no contract named {contract!r}{_suggest(contract, by_contract)}; "
                      f"known: {', '.join(sorted(by_contract))}")
    wanted = {name: sig for name, sig in methods.items() if sig.kind == kind}
    signature = wanted.get(method)
    if signature is None:
        other = "view (use `call`)" if kind == "method" else "method (use `send`)"
        if method in methods:
            raise BadCall(f"{contract}.{method} is a {other}")
        raise BadCall(f"{contract} has no {kind} {method!r}{_suggest(method, wanted)}; its {kind}s: "
                      f"{', '.join(sorted(wanted)) or 'none'} (node.py contracts lists them)")
    if len(args) != len(signature.params):
        raise BadCall(f"{contract}.{signature} takes {len(signature.params)} arguments, got {len(args)}")
    for (name, type_name), arg in zip(signature.params, args, strict=True):
        if not matches(arg, type_name):
            raise BadCall(f"{contract}.{signature}: {name} must be {type_name}, got {arg!r} "
                          f"(in --args, bytes are \"0x..\" strings)")


def matches(value: Any, type_name: str) -> bool:
    """The client-side twin of vm.contract._matches, over the type names RPC sends."""
    if type_name.startswith("list"):
        item = type_name[5:-1] if type_name.startswith("list[") else "any"
        return isinstance(value, list) and all(matches(v, item) for v in value)
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    simple = {"bytes": bytes, "str": str, "bool": bool}
    if type_name in simple:
        return isinstance(value, simple[type_name])
    return True  # "any", or a type this client does not know: the node checks it


def _suggest(name: str, choices: dict[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""
