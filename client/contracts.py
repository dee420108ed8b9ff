"""Typed builders for every method of the consortium contracts, and typed readers for
their views (docs/contracts.md lists them). A builder returns a `ContractCall` that the
caller sends with its own key:

    receipt = await Dsc.open_request(device).with_value(deposit).transact(client, phone_key)
    request = await Dsc.request(client, request_id)   # a typed Request (contracts/dsc_records.py)

Argument types are checked here, before anything is signed, so a wrong type fails in the
caller instead of as a reverted transaction. View results come back as JSON from the node
(bytes as 0x-hex); the readers turn them into dataclasses with bytes and ints: the
contracts' own record types where the contract declares one (contracts/codec.py), so a
record's layout is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from chain import Value
from client.errors import TransactionFailed
from client.receipts import Receipt, from_hex
from client.sdk import DEFAULT_GAS_LIMIT, GridClient
from contracts.dsc_records import Bid, Request
from contracts.registry_records import Device, Member
from crypto import Address, KeyPair, address_of

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class ViewSource(Protocol):
    """What a typed reader needs: the SDK client, or any ledger adapter answering views
    in the node's JSON shapes (diagnosis/ledger.py)."""

    async def view(self, contract: str, method: str, args: list[Value] | None = None) -> Any: ...


RECEIPT_WAIT_MS = 30_000  # one wait of the node's (rpc receipt_wait_ms_max); then the client polls
ROLES = ("admin", "vendor", "supplier", "device", "smartphone", "crew")
MODES = ("remote", "on-site")


@dataclass(frozen=True)
class ContractCall:
    """One contract method call, ready to be signed by a sender."""

    contract: str
    method: str
    args: tuple[Value, ...]
    value: int = 0
    gas_limit: int = DEFAULT_GAS_LIMIT

    def with_value(self, value: int) -> ContractCall:
        assert value >= 0
        return replace(self, value=value)

    async def send(self, client: GridClient, key: KeyPair) -> str:
        """Submit; returns the transaction hash (0x-hex)."""
        return await client.send(key, self.contract, self.method, list(self.args), self.value, self.gas_limit)

    async def transact(self, client: GridClient, key: KeyPair, timeout_s: float = 30) -> Receipt:
        """Submit and wait for the final receipt; TransactionFailed on a revert."""
        return await client.transact(key, self.contract, self.method, list(self.args), self.value,
                                     self.gas_limit, timeout_s)


def _call(contract: str, method: str, *args: Value) -> ContractCall:
    return ContractCall(contract, method, tuple(args))


def _address(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != 20:
        raise TypeError(f"{what} must be a 20-byte address")
    return value


def _hash(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise TypeError(f"{what} must be 32 bytes")
    return value


def _int(value: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int")
    return value


def _bytes(value: Any) -> bytes:
    assert isinstance(value, str) and value.startswith("0x"), f"expected 0x-hex, got {value!r}"
    return from_hex(value)


VIEW = TypeVar("VIEW", bound="DataclassInstance")


def _typed(cls: type[VIEW], raw: Any) -> VIEW:
    """Build a view dataclass from the node's JSON list, decoding bytes-typed fields."""
    assert isinstance(raw, list) and len(raw) == len(fields(cls)), f"{cls.__name__}: {raw!r}"
    values = [_bytes(v) if f.type in ("bytes", "Address") else v for f, v in zip(fields(cls), raw, strict=True)]
    return cls(*values)


# view records without a stored record type --------------------------------------------
@dataclass(frozen=True)
class BidderStateView:
    w: int
    d: int  # fixed point tokens (SCALE 10**6)
    suspect_count: int


@dataclass(frozen=True)
class TermsView:
    p_min: int
    p_max: int
    request_deposit: int
    bid_deposit: int
    beta_percent: int  # eq. (11) beta in hundredths of a token per credit point
    clusters_max: int
    suspect_threshold: int
    commit_ms: int
    reveal_ms: int
    service_ms: int


@dataclass(frozen=True)
class RecordView:
    request_id: int
    device: bytes
    node: bytes
    device_type: str
    value: int
    mode: str
    service_hash: bytes
    diagnosis_time_s: int
    rating_by_requester: int
    rating_by_node: int


# contracts ------------------------------------------------------------------------------
class Registry:
    """Identity management (III.B): members, devices, smartphones."""

    name = "registry"

    @staticmethod
    def register(member_key: bytes, role: str, bls_key: bytes, paillier_n: bytes, consent: bytes) -> ContractCall:
        """`consent` is the member key's signature (contracts.registry.registration_consent
        with the chain id, the registrar and the view `consent_nonce(member)`)."""
        if role not in ROLES:
            raise ValueError(f"role is one of {ROLES}")
        return _call("registry", "register", address_of(member_key), role, bls_key, paillier_n, member_key, consent)

    @staticmethod
    def register_device(device_key: bytes, device_type: str, warranty_end_s: int, bls_key: bytes,
                        paillier_n: bytes, consent: bytes) -> ContractCall:
        """`consent` is the device key's signature (as for `register`, the vendor registrar)."""
        return _call("registry", "register_device", address_of(device_key), device_type,
                     _int(warranty_end_s, "warranty_end_s"), bls_key, paillier_n, device_key, consent)

    @staticmethod
    def bind_smartphone(device: Address, phone: Address) -> ContractCall:
        return _call("registry", "bind_smartphone", _address(device, "device"), _address(phone, "phone"))

    @staticmethod
    def revoke(member: Address) -> ContractCall:
        return _call("registry", "revoke", _address(member, "member"))

    @staticmethod
    def update_keys(bls_key: bytes, paillier_n: bytes) -> ContractCall:
        return _call("registry", "update_keys", bls_key, paillier_n)

    @staticmethod
    def set_endpoint(url: str) -> ContractCall:
        if not isinstance(url, str):
            raise TypeError("url must be a str")
        return _call("registry", "set_endpoint", url)

    @staticmethod
    async def is_member(client: ViewSource, member: Address) -> bool:
        return bool(await client.view("registry", "is_member", [member]))

    @staticmethod
    async def role(client: ViewSource, member: Address) -> str:
        return str(await client.view("registry", "role", [member]))

    @staticmethod
    async def member(client: ViewSource, member: Address) -> Member | None:
        raw = await client.view("registry", "member", [member])
        return Member.from_json(raw) if raw else None

    @staticmethod
    async def device(client: ViewSource, device: Address) -> Device | None:
        raw = await client.view("registry", "device", [device])
        return Device.from_json(raw) if raw else None

    @staticmethod
    async def in_warranty(client: ViewSource, device: Address) -> bool:
        return bool(await client.view("registry", "in_warranty", [device]))

    @staticmethod
    async def acts_for(client: ViewSource, device: Address, actor: Address) -> bool:
        return bool(await client.view("registry", "acts_for", [device, actor]))

    @staticmethod
    async def consent_nonce(client: ViewSource, member: Address) -> int:
        return int(await client.view("registry", "consent_nonce", [member]))

    @staticmethod
    async def is_admin(client: ViewSource, member: Address) -> bool:
        return bool(await client.view("registry", "is_admin", [member]))

    @staticmethod
    async def admin_quorum(client: ViewSource) -> int:
        return int(await client.view("registry", "admin_quorum", []))

    @staticmethod
    async def approvals(client: ViewSource, action: bytes) -> list[bytes]:
        """Administrators who approved the pending decision `action` (docs/contracts.md)."""
        return [_bytes(a) for a in await client.view("registry", "approvals", [action])]

    @staticmethod
    async def endpoint(client: ViewSource, member: Address) -> str:
        return str(await client.view("registry", "endpoint", [member]))

    @staticmethod
    async def devices_of(client: ViewSource, phone: Address) -> list[bytes]:
        return [_bytes(d) for d in await client.view("registry", "devices_of", [phone])]


class Token:
    """The native token ("ETH" of the paper). Escrow methods are the DSC's own."""

    name = "token"

    @staticmethod
    def transfer(to: Address, amount: int) -> ContractCall:
        return _call("token", "transfer", _address(to, "to"), _int(amount, "amount"))

    @staticmethod
    def escrow_lock(escrow_id: bytes, owner: Address) -> ContractCall:
        return _call("token", "escrow_lock", escrow_id, _address(owner, "owner"))

    @staticmethod
    def escrow_pay(escrow_id: bytes, to: Address, amount: int) -> ContractCall:
        return _call("token", "escrow_pay", escrow_id, _address(to, "to"), _int(amount, "amount"))

    @staticmethod
    def escrow_release(escrow_id: bytes) -> ContractCall:
        return _call("token", "escrow_release", escrow_id)

    @staticmethod
    def escrow_forfeit(escrow_id: bytes, to: Address) -> ContractCall:
        return _call("token", "escrow_forfeit", escrow_id, _address(to, "to"))

    @staticmethod
    async def balance_of(client: ViewSource, account: Address) -> int:
        return int(await client.view("token", "balance_of", [account]))

    @staticmethod
    async def escrow(client: ViewSource, holder: Address, escrow_id: bytes) -> list[Any]:
        return list(await client.view("token", "escrow", [holder, escrow_id]))


class Dsc:
    """The diagnosis smart contract (IV.B, V): requests, sealed-bid auction, service."""

    name = "dsc"

    @staticmethod
    def open_request(device: Address) -> ContractCall:
        """Send with `.with_value(request_deposit)` in warranty, `+ p_max` out of warranty."""
        return _call("dsc", "open_request", _address(device, "device"))

    @staticmethod
    def commit(request_id: int, commitment: bytes) -> ContractCall:
        """Send with `.with_value(bid_deposit)`."""
        return _call("dsc", "commit", _int(request_id, "request_id"), _hash(commitment, "commitment"))

    @staticmethod
    def withdraw(request_id: int) -> ContractCall:
        return _call("dsc", "withdraw", _int(request_id, "request_id"))

    @staticmethod
    def requote(request_id: int, commitment: bytes) -> ContractCall:
        """Replace one's sealed bid during the commit window (no new deposit)."""
        return _call("dsc", "requote", _int(request_id, "request_id"), _hash(commitment, "commitment"))

    @staticmethod
    def reveal(request_id: int, price: int, credit: int, salt: bytes) -> ContractCall:
        return _call("dsc", "reveal", _int(request_id, "request_id"), _int(price, "price"),
                     _int(credit, "credit"), _hash(salt, "salt"))

    @staticmethod
    def close(request_id: int) -> ContractCall:
        return _call("dsc", "close", _int(request_id, "request_id"))

    @staticmethod
    def set_mode(request_id: int, mode: str) -> ContractCall:
        if mode not in MODES:
            raise ValueError(f"mode is one of {MODES}")
        return _call("dsc", "set_mode", _int(request_id, "request_id"), mode)

    @staticmethod
    def log_message(request_id: int, step: int, message_hash: bytes) -> ContractCall:
        return _call("dsc", "log_message", _int(request_id, "request_id"), _int(step, "step"),
                     _hash(message_hash, "message_hash"))

    @staticmethod
    def report_done(request_id: int) -> ContractCall:
        return _call("dsc", "report_done", _int(request_id, "request_id"))

    @staticmethod
    def complete(request_id: int, failure_hash: bytes) -> ContractCall:
        return _call("dsc", "complete", _int(request_id, "request_id"), _hash(failure_hash, "failure_hash"))

    @staticmethod
    def refuse(request_id: int) -> ContractCall:
        return _call("dsc", "refuse", _int(request_id, "request_id"))

    @staticmethod
    def dispute(request_id: int) -> ContractCall:
        return _call("dsc", "dispute", _int(request_id, "request_id"))

    @staticmethod
    def resolve(request_id: int, at_fault: str) -> ContractCall:
        if at_fault not in ("node", "requester"):
            raise ValueError('at_fault is "node" or "requester"')
        return _call("dsc", "resolve", _int(request_id, "request_id"), at_fault)

    @staticmethod
    def expire(request_id: int) -> ContractCall:
        return _call("dsc", "expire", _int(request_id, "request_id"))

    @staticmethod
    def rate(request_id: int, rating: int) -> ContractCall:
        if not 0 <= _int(rating, "rating") <= 100:
            raise ValueError("a rating is 0-100")
        return _call("dsc", "rate", _int(request_id, "request_id"), rating)

    @staticmethod
    def set_min_requester_credit(credit: int) -> ContractCall:
        return _call("dsc", "set_min_requester_credit", _int(credit, "credit"))

    @staticmethod
    async def request(client: ViewSource, request_id: int) -> Request:
        return Request.from_json(await client.view("dsc", "request", [request_id]))

    @staticmethod
    async def bids(client: ViewSource, request_id: int) -> list[bytes]:
        return [_bytes(b) for b in await client.view("dsc", "bids", [request_id])]

    @staticmethod
    async def bid(client: ViewSource, request_id: int, bidder: Address) -> Bid:
        return Bid.from_json(await client.view("dsc", "bid", [request_id, bidder]))

    @staticmethod
    async def bidder_state(client: ViewSource, bidder: Address) -> BidderStateView:
        return _typed(BidderStateView, await client.view("dsc", "bidder_state", [bidder]))

    @staticmethod
    async def messages(client: ViewSource, request_id: int) -> list[tuple[int, bytes, bytes]]:
        """[(step, sender, message_hash)] in logging order."""
        return [(int(step), _bytes(sender), _bytes(h))
                for step, sender, h in await client.view("dsc", "messages", [request_id])]

    @staticmethod
    async def min_requester_credit(client: ViewSource, node: Address) -> int:
        return int(await client.view("dsc", "min_requester_credit", [node]))

    @staticmethod
    async def terms(client: ViewSource, device_type: str) -> TermsView:
        return _typed(TermsView, await client.view("dsc", "terms", [device_type]))


class Credit:
    """Trimmed-mean credit (III.D eqs. (8)-(9)); ratings are added by the DSC only."""

    name = "credit"

    @staticmethod
    def add_rating(member: Address, rating: int) -> ContractCall:
        return _call("credit", "add_rating", _address(member, "member"), _int(rating, "rating"))

    @staticmethod
    async def credit_of(client: ViewSource, member: Address) -> int:
        """Fixed point, SCALE 10**6."""
        return int(await client.view("credit", "credit_of", [member]))

    @staticmethod
    async def ratings(client: ViewSource, member: Address) -> list[int]:
        return [int(r) for r in await client.view("credit", "ratings", [member])]


PolicyRule = list[Value]  # [trigger, metric, op, threshold, action, target, amount]


class Policy:
    """Equipment control policies (IV.A): rules with triggers, evaluated at block end."""

    name = "policy"

    @staticmethod
    def rule(trigger: str, metric: str, op: str, threshold: int, action: str, target: str,
             amount: int = 0) -> PolicyRule:
        return [trigger, metric, op, _int(threshold, "threshold"), action, target, _int(amount, "amount")]

    @staticmethod
    def publish(device: Address, rules: list[PolicyRule]) -> ContractCall:
        return _call("policy", "publish", _address(device, "device"), list(rules))

    @staticmethod
    def report(metric: str, value: int) -> ContractCall:
        return _call("policy", "report", metric, _int(value, "value"))

    @staticmethod
    async def policy(client: ViewSource, device: Address) -> Any:
        return await client.view("policy", "policy", [device])

    @staticmethod
    async def effective(client: ViewSource, device: Address) -> tuple[str, list[tuple[str, int]], int]:
        """(mode, [(metric, limit)], version)."""
        mode, limits, version = await client.view("policy", "effective", [device])
        return mode, [(m, int(v)) for m, v in limits], int(version)

    @staticmethod
    async def last_report(client: ViewSource, device: Address, metric: str) -> Any:
        return await client.view("policy", "last_report", [device, metric])

    @staticmethod
    async def pending(client: ViewSource) -> Any:
        return await client.view("policy", "pending", [])


class Records:
    """Maintenance records (III.D, Fig. 3). `add` and `add_rating` are the DSC's own."""

    name = "records"

    @staticmethod
    def add(request_id: int, device: Address, node: Address, device_type: str, value: int, mode: str,
            service_hash: bytes, diagnosis_time_s: int) -> ContractCall:
        return _call("records", "add", _int(request_id, "request_id"), _address(device, "device"),
                     _address(node, "node"), device_type, _int(value, "value"), mode,
                     _hash(service_hash, "service_hash"), _int(diagnosis_time_s, "diagnosis_time_s"))

    @staticmethod
    def add_rating(request_id: int, side: str, rating: int) -> ContractCall:
        return _call("records", "add_rating", _int(request_id, "request_id"), side, _int(rating, "rating"))

    @staticmethod
    async def record(client: ViewSource, request_id: int) -> RecordView | None:
        raw = await client.view("records", "record", [request_id])
        return _typed(RecordView, raw) if raw else None

    @staticmethod
    async def by_device(client: ViewSource, device: Address, start: int = 0, count: int = 100) -> list[RecordView]:
        return [_typed(RecordView, r) for r in await client.view("records", "by_device", [device, start, count])]

    @staticmethod
    async def by_node(client: ViewSource, node: Address, start: int = 0, count: int = 100) -> list[RecordView]:
        return [_typed(RecordView, r) for r in await client.view("records", "by_node", [node, start, count])]

    @staticmethod
    async def count_by_device(client: ViewSource, device: Address) -> int:
        return int(await client.view("records", "count_by_device", [device]))

    @staticmethod
    async def count_by_node(client: ViewSource, node: Address) -> int:
        return int(await client.view("records", "count_by_node", [node]))


@dataclass(frozen=True)
class EpochView:
    start: int  # the first height this set certifies
    bookkeepers: list[bytes]  # node keys, index order
    t: int


@dataclass(frozen=True)
class ProposalView:
    id: int
    kind: str  # add | remove | replace
    keys: list[bytes]
    t: int
    proposer: bytes
    height: int  # the block it was proposed in
    voters: list[bytes]


GOVERNANCE_KINDS = ("add", "remove", "replace")


class Governance:
    """Bookkeeper set changes (contracts/governance.py): administrators and bookkeepers vote."""

    name = "governance"

    @staticmethod
    def propose(kind: str, keys: list[bytes], t: int) -> ContractCall:
        if kind not in GOVERNANCE_KINDS:
            raise ValueError(f"kind is one of {GOVERNANCE_KINDS}")
        if not isinstance(keys, list) or not all(isinstance(k, bytes) and len(k) == 32 for k in keys):
            raise TypeError("keys must be a list of 32-byte node keys")
        return _call("governance", "propose", kind, list(keys), _int(t, "t"))

    @staticmethod
    def vote(proposal_id: int) -> ContractCall:
        return _call("governance", "vote", _int(proposal_id, "proposal_id"))

    @staticmethod
    async def submit(call: ContractCall, client: GridClient, key: KeyPair, timeout_s: float = 30) -> Receipt:
        """Sign a `propose` or `vote` call here (the voter's key never leaves the client)
        and send it by RPC governance_propose / governance_vote, which admits nothing but
        that call; the final receipt (TransactionFailed on a revert)."""
        if call.contract != "governance" or call.method not in ("propose", "vote"):
            raise ValueError(f"not a governance propose or vote: {call.contract}.{call.method}")
        tx = await client.build(key, call.contract, call.method, list(call.args), call.value, call.gas_limit)
        answer = await client.submit(tx, f"governance_{call.method}", min(int(timeout_s * 1000), RECEIPT_WAIT_MS))
        receipt = (Receipt.from_json(answer["receipt"]) if answer.get("receipt")
                   else await client.wait_receipt(answer["txHash"], timeout_s))
        if not receipt.ok:
            raise TransactionFailed(receipt)
        return receipt

    @staticmethod
    async def epochs(client: ViewSource) -> list[EpochView]:
        return [_epoch(raw) for raw in await client.view("governance", "epochs", [])]

    @staticmethod
    async def set_at(client: ViewSource, height: int) -> EpochView:
        return _epoch(await client.view("governance", "set_at", [_int(height, "height")]))

    @staticmethod
    async def proposals(client: ViewSource) -> list[ProposalView]:
        return [ProposalView(raw[0], raw[1], [_bytes(k) for k in raw[2]], raw[3], _bytes(raw[4]), raw[5],
                             [_bytes(v) for v in raw[6]]) for raw in await client.view("governance", "proposals", [])]

    @staticmethod
    async def parameters(client: ViewSource) -> list[int]:
        """[activation_distance, proposal_ttl_blocks, pending_max]."""
        return [int(v) for v in await client.view("governance", "parameters", [])]


def _epoch(raw: Any) -> EpochView:
    start, keys, t = raw
    return EpochView(int(start), [_bytes(k) for k in keys], int(t))


CONTRACTS = (Registry, Token, Dsc, Credit, Policy, Records, Governance)
