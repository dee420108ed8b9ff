"""Unit checks of the diagnosis pieces that need no cluster: payload codec, the typed
contract builders cover every contract method and view, the DSC accepts the final
package hash after completion, the Table 4 counting rules, and the protocol declaration."""

from __future__ import annotations

import pytest

from client import contracts as typed
from contracts import build_contracts
from contracts.addresses import DSC
from contracts.testing import REQUEST_DEPOSIT, address_of, consortium, events, reason
from crypto import keccak256
from diagnosis import protocol as proto
from diagnosis.channel import BadPayload, Payload
from diagnosis.overhead import PAPER_TABLE4, PAPER_TABLE4_TOTAL, paper_table4


def test_payload_roundtrip_and_refusals() -> None:
    payload = Payload(7, "2", "fault", {"symptom": "firmware-fault", "n": 3})
    assert Payload.from_bytes(payload.to_bytes()) == payload
    for bad in (b"{", b"[]", b'{"request":1,"step":2,"kind":"nope","body":{}}', b"x" * (65 << 10)):
        with pytest.raises(BadPayload):
            Payload.from_bytes(bad)


def test_every_contract_method_and_view_has_a_typed_builder() -> None:
    builders = {cls.name: cls for cls in typed.CONTRACTS}
    for contract in build_contracts({}):
        cls = builders[contract.name]
        for name in contract.methods():
            assert callable(getattr(cls, name, None)), f"{contract.name}.{name} has no builder"


def test_builders_check_types_before_signing() -> None:
    with pytest.raises(TypeError):
        typed.Dsc.open_request(b"short")
    with pytest.raises(TypeError):
        typed.Dsc.log_message(1, 2, b"\x00" * 31)
    with pytest.raises(ValueError):
        typed.Dsc.set_mode(1, "teleport")
    call = typed.Dsc.open_request(b"\x01" * 20).with_value(100)
    assert (call.contract, call.method, call.args, call.value) == ("dsc", "open_request", (b"\x01" * 20,), 100)


def test_final_package_hash_is_logged_after_completion() -> None:
    """V.A step 7: the package holds both credit evaluations, so it exists only after
    `complete` and `rate`; log_message accepts it on a completed request."""
    chain = consortium(["s1"])
    try:
        opened = chain.send("phone", DSC, "open_request", [address_of("wdev")], value=REQUEST_DEPOSIT)
        request_id = events(opened, "RequestOpened")[0]["request"]
        assert chain.send("vendor", DSC, "set_mode", [request_id, "remote"]).succeeded
        assert chain.send("wdev", DSC, "complete", [request_id, keccak256(b"f")]).succeeded
        assert chain.send("wdev", DSC, "log_message", [request_id, 7, keccak256(b"package")]).succeeded
        assert reason(chain.send("s1", DSC, "log_message", [request_id, 7, keccak256(b"x")])) == "not-party"
    finally:
        chain.close()


def test_paper_table4_rule_reproduces_the_table() -> None:
    """Our reading of Table 4: per encryption 2 T_E, per decryption 1 T_E, per signature
    1 T_M, per verification 1 T_P; RMW/ROW: device seals 1, opens 1; SMW/SOW: device
    seals 2 (fault, time), opens 1 (Spot); node opens 2, seals 1."""
    assert paper_table4(1, 1) == PAPER_TABLE4["RMW"]["k_i"] == PAPER_TABLE4["RMW"]["v_i"]
    assert paper_table4(2, 1) == PAPER_TABLE4["SMW"]["k_i"] == PAPER_TABLE4["SOW"]["k_i"]
    assert paper_table4(1, 2) == PAPER_TABLE4["SMW"]["v_i"] == PAPER_TABLE4["SOW"]["nv_i"]
    for flow, total in PAPER_TABLE4_TOTAL.items():
        rows = list(PAPER_TABLE4[flow].values())
        assert tuple(sum(r[i] for r in rows) for i in range(3)) == total


def test_declared_steps_give_the_design_counts_of_table3() -> None:
    """The by-design Table 3 (our counts, as the flows were hand-counted before the
    declaration existed) follows from diagnosis/protocol.py; four losing bidders."""
    hand_counted = {
        "RMW": {"k_i": (2, 6), "v_i": (1, 3), "smartphone": (0, 1)},
        "SMW": {"k_i": (4, 5), "v_i": (2, 5), "smartphone": (0, 4), "Rep": (1, 0)},
        "ROW": {"k_i": (2, 6), "nv_i": (1, 5), "smartphone": (0, 1), "bidders": (0, 8)},
        "SOW": {"k_i": (4, 6), "nv_i": (2, 7), "smartphone": (0, 4), "Rep": (1, 0), "bidders": (0, 8)},
    }
    for name, flow in proto.FLOWS.items():
        assert proto.expected_table3(flow, 4) == hand_counted[name], name


def test_each_step_is_declared_once_and_each_kind_has_one_rule() -> None:
    for flow in proto.FLOWS.values():
        labels = [s.label for s in flow.steps]
        assert len(labels) == len(set(labels)), flow.name
        assert [s.number for s in flow.steps] == sorted(s.number for s in flow.steps)
    kinds = [m.kind for m in proto.MESSAGES]
    assert len(kinds) == len(set(kinds)) and set(proto.RULE_OF_KIND) == set(kinds)
    # a message kind arrives at one step per flow, so a request's state names its step
    assert proto.labels_for("fault", True, "") == {"2"}
    assert proto.labels_for("fault", False, "") == {"6.2"}
    assert proto.labels_for("onsite_repair", False, "remote") == set()
    assert proto.labels_for("package", True, "remote") == {"7"}
