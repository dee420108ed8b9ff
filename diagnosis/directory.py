"""The chain records an agent relies on, each read by a verified state proof through its
`Ledger` (paper V.A step 3 "inquires the state tree", V.B step 2, VI.A.2): members
(role, Y, N, registrar, active), devices (type S, warranty end, vendor, smartphone),
published inbox endpoints, DSC requests (status, assigned node, mode), Cred_k and a
node's requester-credit threshold. Never a node's word.

`ChainDirectory` is also the receiver's `MemberDirectory` (diagnosis/message.py): the
sender's BLS key comes from its proven member record.
"""

from __future__ import annotations

from typing import TypeVar

from chain import BlockHeader, Value
from contracts import dsc_records, registry_records
from contracts.addresses import CREDIT, DSC, REGISTRY
from contracts.codec import RecordError, StoredRecord
from contracts.dsc_records import Request

# diagnosis/ names the registry's records entries; they are declared once, in contracts/
from contracts.registry_records import Device as DeviceEntry
from contracts.registry_records import Member as MemberEntry
from crypto import Address
from crypto.paillier import PaillierPublicKey
from diagnosis.authorise import Facts
from diagnosis.errors import DiagnosisError
from diagnosis.ledger import Ledger
from diagnosis.lightclient import UnprovenState

ENDPOINTS_CACHED_MAX = 4096
Record = TypeVar("Record", bound=StoredRecord)


class NoEndpoint(DiagnosisError):
    """The receiver is not an active member or published no inbox endpoint."""


def _entry(cls: type[Record], value: Value | None) -> Record | None:
    if value is None:
        return None
    try:
        return cls.from_value(value)
    except RecordError as exc:
        raise UnprovenState(f"unexpected record: {exc}") from exc


class ChainDirectory:
    """Proven reads of registry, DSC and credit state. `resolve` must run (async) before
    the Opener asks `bls_key` (sync); it refreshes the entry on every message so a revoked
    member is refused at once."""

    def __init__(self, ledger: Ledger, credit_initial: int) -> None:
        self.ledger = ledger
        self.credit_initial = credit_initial
        self._members: dict[bytes, MemberEntry | None] = {}
        self._paillier: dict[bytes, PaillierPublicKey] = {}
        self._endpoints: dict[bytes, str] = {}

    async def resolve(self, member_id: Address) -> MemberEntry | None:
        proven = await self.ledger.storage(REGISTRY, registry_records.member_key(member_id))
        entry = _entry(MemberEntry, proven.value)
        self._members[member_id] = entry
        return entry

    async def facts(self, sender: Address, request_id: int | None, sender_device: bool,
                    own: Address | None) -> Facts:
        """What a receiver needs to decide one message, proven against one header in one
        batch of proofs: the sender's member record (refreshed in the cache the Opener
        reads), the request when one is named, the sender's device record and the
        receiver's own record when asked."""
        slots = [(REGISTRY, registry_records.member_key(sender))]
        if request_id is not None:
            slots.append((DSC, dsc_records.request_key(request_id)))
        if sender_device:
            slots.append((REGISTRY, registry_records.device_key(sender)))
        if own is not None:
            slots.append((REGISTRY, registry_records.member_key(own)))
        proven = iter(await self.ledger.storage_many(slots))
        first = next(proven)
        member = _entry(MemberEntry, first.value)
        self._members[sender] = member
        request = _entry(Request, next(proven).value) if request_id is not None else None
        device = _entry(DeviceEntry, next(proven).value) if sender_device else None
        own_entry = _entry(MemberEntry, next(proven).value) if own is not None else None
        return Facts(request, member, device, own_entry, first.header)

    def cached(self, member_id: Address) -> MemberEntry | None:
        """The member record as last proven (None: never read, or absent)."""
        return self._members.get(member_id)

    async def device(self, device_id: Address) -> tuple[DeviceEntry | None, BlockHeader]:
        """The registry's device record and the header it was proven against."""
        proven = await self.ledger.storage(REGISTRY, registry_records.device_key(device_id))
        return _entry(DeviceEntry, proven.value), proven.header

    async def endpoint(self, member_id: Address, *, refresh: bool = False) -> str:
        """The inbox URL the member published (`registry.set_endpoint`), proven; cached
        until a delivery fails and the sender asks again with `refresh`."""
        if not refresh and member_id in self._endpoints:
            return self._endpoints[member_id]
        entry = await self.resolve(member_id)
        if entry is None or not entry.active:
            raise NoEndpoint(f"0x{member_id.hex()} is not an active member")
        proven = await self.ledger.storage(REGISTRY, registry_records.endpoint_key(member_id))
        if not isinstance(proven.value, str) or not proven.value:
            raise NoEndpoint(f"0x{member_id.hex()} published no inbox endpoint")
        if len(self._endpoints) >= ENDPOINTS_CACHED_MAX:
            self._endpoints.clear()
        self._endpoints[member_id] = proven.value
        return proven.value

    async def request(self, request_id: int) -> tuple[Request | None, BlockHeader]:
        """The DSC's request record (status, device, assigned node, mode, ...), proven."""
        proven = await self.ledger.storage(DSC, dsc_records.request_key(request_id))
        return _entry(Request, proven.value), proven.header

    async def credit(self, member_id: Address) -> int:
        """Cred of a member in fixed point (contracts/credit.py), proven; a member never
        rated has the genesis `credit_initial` (proof of absence)."""
        proven = await self.ledger.storage(CREDIT, b"c:" + member_id)
        if proven.value is None:
            return self.credit_initial
        assert isinstance(proven.value, int), "credit slot holds an int"
        return proven.value

    async def requester_threshold(self, node: Address) -> int:
        """The minimum requester credit the node set at the DSC (0 if none), proven."""
        proven = await self.ledger.storage(DSC, dsc_records.threshold_key(node))
        if proven.value is None:
            return 0
        assert isinstance(proven.value, int), "threshold slot holds an int"
        return proven.value

    def bls_key(self, member_id: Address) -> bytes | None:
        entry = self._members.get(member_id)
        if entry is None or not entry.active or not entry.bls_key:
            return None
        return entry.bls_key

    async def paillier_key(self, member_id: Address) -> PaillierPublicKey:
        """The member's Paillier key from proven state; one object per member so its r^N
        pool is reused."""
        entry = await self.resolve(member_id)
        if entry is None or not entry.active or not entry.paillier_n:
            raise UnprovenState(f"0x{member_id.hex()} is not an active member with a Paillier key")
        cached = self._paillier.get(member_id)
        if cached is None or cached.to_bytes() != entry.paillier_n:
            cached = PaillierPublicKey.from_bytes(entry.paillier_n)
            self._paillier[member_id] = cached
        return cached
