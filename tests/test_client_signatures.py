"""Contract calls are checked against the declared signatures (contract_list) before
signing: names, kinds, argument counts and types, with the closest name suggested."""

from __future__ import annotations

import pytest

from client.errors import BadCall
from client.signatures import check_call, matches
from contracts import CONTRACT_TYPES
from vm.contract import type_name

LISTING = [{"name": kind.name, "address": "0x" + kind.address.hex(),
            "methods": [{"name": name, "kind": spec.kind, "params": [[p, type_name(t)] for p, t in spec.parameters]}
                        for name, spec in kind.methods().items()]}
           for kind in CONTRACT_TYPES]
TO = b"\x11" * 20


def test_a_well_formed_call_passes_by_name_and_by_address() -> None:
    check_call(LISTING, "token", "transfer", [TO, 5], "method")
    token = next(c for c in LISTING if c["name"] == "token")
    check_call(LISTING, token["address"].upper().replace("0X", "0x"), "transfer", [TO, 5], "method")
    check_call(LISTING, "token", "balance_of", [TO], "view")


@pytest.mark.parametrize("contract, method, args, kind, message", [
    ("tokn", "transfer", [TO, 5], "method", "no contract named 'tokn' (did you mean 'token'?)"),
    ("token", "tranfer", [TO, 5], "method", "token has no method 'tranfer' (did you mean 'transfer'?)"),
    ("token", "balanceOf", [TO], "view", "token has no view 'balanceOf' (did you mean 'balance_of'?)"),
    ("token", "balance_of", [TO], "method", "token.balance_of is a view (use `call`)"),
    ("token", "transfer", [TO, 5], "view", "token.transfer is a method (use `send`)"),
    ("token", "transfer", [TO], "method", "takes 2 arguments, got 1"),
    ("token", "transfer", [TO, True], "method", "amount must be int, got True"),
    ("token", "transfer", ["0x11", 5], "method", "to must be bytes, got '0x11'"),
])
def test_mistakes_are_refused_with_the_signature(contract, method, args, kind, message) -> None:
    with pytest.raises(BadCall) as info:
        check_call(LISTING, contract, method, args, kind)
    assert message in str(info.value)


def test_type_names_round_trip_through_matches() -> None:
    assert type_name(list[bytes]) == "list[bytes]" and type_name(list) == "list"
    assert matches([b"a", b"b"], "list[bytes]") and not matches([b"a", 1], "list[bytes]")
    assert matches([[1], ["x"]], "list[list]") and not matches("x", "list")
    assert matches(3, "int") and not matches(True, "int") and matches(True, "bool")
