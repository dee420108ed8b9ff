"""Who may send what: the check every agent runs on a message that opened fine (authentic,
fresh, for it), before acting on it. The rule of each message kind is declared in
`diagnosis.protocol`; the facts are chain records read by proof (`diagnosis.directory`),
never the sender's word or a node's answer. Pure: facts in, `Refused` out.

Crews (our choice, docs/diagnosis.md): a crew is a registered member with role `crew`
whose registrar is the diagnosis node it works for. The device accepts an on-site repair
only from a crew registered by the node the DSC assigned to that request; nothing is
vouched for in-band, so no message can make a key count for another id.
"""

from __future__ import annotations

from dataclasses import dataclass

from chain import BlockHeader
from contracts.dsc_records import ASSIGNED, COMPLETED, Request
from contracts.registry_records import Device as DeviceEntry
from contracts.registry_records import Member as MemberEntry
from crypto import Address
from diagnosis.errors import Refusal, Refused
from diagnosis.protocol import RULE_OF_KIND, Rule, labels_for

CREW_ROLE = "crew"  # contracts/registry.py


@dataclass(frozen=True)
class Facts:
    """What the receiver proved before deciding."""

    request: Request | None  # the DSC request the message names (None: none, or none needed)
    sender: MemberEntry | None  # the sender's member record
    sender_device: DeviceEntry | None  # the sender's device record, when the sender is a device
    own: MemberEntry | None  # the receiver's own member record (a crew's registrar)
    header: BlockHeader | None  # the header these facts were proven against


def _hex(address: bytes) -> str:
    return "0x" + address.hex()


def authorise(kind: str, label: str, sender: Address, receiver: Address, facts: Facts) -> None:
    """Raise `Refused` unless the protocol lets `sender` send `kind` at step `label` to
    `receiver` given the proven `facts`."""
    rule = RULE_OF_KIND.get(kind)
    if rule is None:
        raise Refused(Refusal.BAD_PAYLOAD, f"no message kind {kind!r}")
    if rule is Rule.OWN_DEVICE_IN_WARRANTY:
        _sold_and_in_warranty(sender, receiver, facts)
        return
    request = facts.request
    if request is None:
        raise Refused(Refusal.UNKNOWN_REQUEST)
    active = (ASSIGNED, COMPLETED) if rule is Rule.BOUND_DEVICE else (ASSIGNED,)
    if request.status not in active:
        raise Refused(Refusal.REQUEST_NOT_ACTIVE, f"request is {request.status}")
    if label not in labels_for(kind, request.in_warranty, request.mode):
        raise Refused(Refusal.WRONG_STEP, f"{kind} is not sent at step {label} of this request's flow")
    if rule is Rule.REQUESTER_TO_ASSIGNED:
        if sender != request.device:
            raise Refused(Refusal.NOT_REQUESTER, _hex(sender))
        if receiver != request.node:
            raise Refused(Refusal.NOT_ASSIGNED, f"the request is assigned to {_hex(request.node)}")
        if request.in_warranty:
            _sold_and_in_warranty(sender, receiver, facts)
    elif rule is Rule.ASSIGNED_TO_REQUESTER:
        if receiver != request.device:
            raise Refused(Refusal.NOT_MY_REQUEST, f"the request is {_hex(request.device)}'s")
        if sender != request.node:
            raise Refused(Refusal.SENDER_NOT_ASSIGNED, f"{_hex(sender)} is not {_hex(request.node)}")
    elif rule is Rule.CREW_OF_ASSIGNED:
        if receiver != request.device:
            raise Refused(Refusal.NOT_MY_REQUEST, f"the request is {_hex(request.device)}'s")
        crew = facts.sender
        if crew is None or not crew.active or crew.role != CREW_ROLE or crew.registrar != request.node:
            raise Refused(Refusal.CREW_NOT_OF_ASSIGNED, f"{_hex(sender)} is no crew of {_hex(request.node)}")
    elif rule is Rule.ASSIGNED_TO_OWN_CREW:
        if facts.own is None or sender != facts.own.registrar:
            raise Refused(Refusal.NOT_MY_NODE, _hex(sender))
        if sender != request.node:
            raise Refused(Refusal.SENDER_NOT_ASSIGNED, f"{_hex(sender)} is not {_hex(request.node)}")
    else:
        assert rule is Rule.BOUND_DEVICE
        if sender != request.device:
            raise Refused(Refusal.NOT_REQUESTER, _hex(sender))
        if facts.sender_device is None or facts.sender_device.phone != receiver:
            raise Refused(Refusal.NOT_BOUND_DEVICE, f"{_hex(sender)} is not bound to this smartphone")


def _sold_and_in_warranty(device: Address, vendor: Address, facts: Facts) -> None:
    """V.A step 3: the device record says the receiver sold it, and the warranty has not
    ended at the proven header's time."""
    record = facts.sender_device
    if record is None or record.vendor != vendor:
        raise Refused(Refusal.NOT_MY_DEVICE, _hex(device))
    assert facts.header is not None, "a device record comes with its header"
    if facts.header.timestamp_ms // 1000 > record.warranty_end_s:
        raise Refused(Refusal.OUT_OF_WARRANTY, f"warranty ended at {record.warranty_end_s} s")
