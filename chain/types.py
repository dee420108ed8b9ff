"""The hashed records of the ledger, as rlp.Serializable (architecture decision 1).

Transaction, BlockHeader, Block, Receipt, Event and the commit certificate. Hashes are
keccak256 of the rlp encoding: a block's hash covers its header only, a transaction's hash
covers the whole signed transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any, TypeVar

import rlp
from rlp.codec import encode_raw, length_prefix
from rlp.sedes import Binary, CountableList, big_endian_int, binary, raw

from chain.errors import DecodeError
from chain.rlpdecode import RlpDecodeError, decode_strict, list_item_spans
from chain.values import Value, big_endian, decode_value, decode_values, encode_value, encode_values
from crypto import Address, Hash32, KeyPair, address_of, keccak256

address = Binary.fixed_length(20)
LIST_OFFSET = 0xC0  # rlp: a list's length prefix starts here
hash32 = Binary.fixed_length(32)
public_key = Binary.fixed_length(32)

TX_SIGNING_DOMAIN = b"gridchain/tx\x00"
EMPTY_TRIE_ROOT: Hash32 = keccak256(rlp.encode(b""))
ZERO_HASH: Hash32 = b"\x00" * 32


class Transaction(rlp.Serializable):
    """A signed call of a contract method. `value` moves from the sender to the contract
    before the call. The signature covers every other field (see `signing_payload`)."""

    fields = [
        ("chain_id", big_endian_int),
        ("nonce", big_endian_int),
        ("sender", public_key),
        ("to", address),
        ("method", binary),
        ("args", raw),
        ("value", big_endian_int),
        ("gas_limit", big_endian_int),
        ("signature", binary),
    ]
    # the fields' types for mypy (pyrlp makes the attributes from `fields`)
    chain_id: int
    nonce: int
    sender: bytes
    to: Address
    method: bytes
    args: list[Any]
    value: int
    gas_limit: int
    signature: bytes

    @classmethod
    def create(
        cls,
        key: KeyPair,
        *,
        chain_id: int,
        nonce: int,
        to: Address,
        method: str,
        args: list[Value] | None = None,
        value: int = 0,
        gas_limit: int = 1_000_000,
    ) -> Transaction:
        unsigned = cls(chain_id, nonce, key.public_key, to, method.encode(),
                       encode_values(args or []), value, gas_limit, b"")
        return unsigned.copy(signature=key.sign(unsigned.signing_payload()))

    @cached_property
    def _signing_payload(self) -> bytes:
        # encode_raw of the fields (what rlp.encode(self.copy(signature=b"")) gives, tested)
        # because pyrlp's copy and sedes walk cost 20x more on this per-transaction path.
        fields = [big_endian(self.chain_id), big_endian(self.nonce), self.sender, self.to, self.method,
                  self.args, big_endian(self.value), big_endian(self.gas_limit), b""]
        return TX_SIGNING_DOMAIN + encode_raw(fields)

    def signing_payload(self) -> bytes:
        """Domain-separated rlp of the transaction with an empty signature."""
        return self._signing_payload

    @cached_property
    def hash(self) -> Hash32:
        return keccak256(rlp.encode(self))

    @cached_property
    def sender_address(self) -> Address:
        return address_of(self.sender)

    @cached_property
    def decoded_args(self) -> list[Value]:
        return decode_values(self.args)

    @property
    def method_name(self) -> str:
        try:
            return self.method.decode()
        except UnicodeDecodeError as exc:
            raise DecodeError("method name is not UTF-8") from exc


class BlockHeader(rlp.Serializable):
    fields = [
        ("parent_hash", hash32),
        ("number", big_endian_int),
        ("timestamp_ms", big_endian_int),
        ("proposer", big_endian_int),  # bookkeeper index in genesis order
        ("view", big_endian_int),
        ("state_root", hash32),
        ("transaction_root", hash32),
        ("receipt_root", hash32),
        ("gas_used", big_endian_int),
        ("extra", binary),
    ]
    parent_hash: Hash32
    number: int
    timestamp_ms: int
    proposer: int
    view: int
    state_root: Hash32
    transaction_root: Hash32
    receipt_root: Hash32
    gas_used: int
    extra: bytes

    @cached_property
    def hash(self) -> Hash32:
        return keccak256(rlp.encode(self))


class Vote(rlp.Serializable):
    """One bookkeeper's Ed25519 signature on `commit_message(...)`."""

    fields = [("replica", big_endian_int), ("signature", binary)]


class CommitCertificate(rlp.Serializable):
    """The t+1 votes of the synchronous group of `view` on one block (the commit
    certificate) and, once the block is final, its finality proof: signatures on
    `final_message(...)` by the members that vouch every member holds the certificate
    (chain.certificate.verify_finality says whose). A certificate alone is no proof of
    finality: with t = 1 a follower holds one as soon as it votes, final or not."""

    fields = [("view", big_endian_int), ("votes", CountableList(Vote)),
              ("finality", CountableList(Vote))]


class Block(rlp.Serializable):
    fields = [
        ("header", BlockHeader),
        ("transactions", CountableList(Transaction)),
        ("certificate", CountableList(CommitCertificate, max_length=1)),
    ]
    header: BlockHeader
    transactions: Sequence[Transaction]
    certificate: Sequence[CommitCertificate]

    @property
    def hash(self) -> Hash32:
        return self.header.hash

    @property
    def number(self) -> int:
        return self.header.number

    def with_certificate(self, certificate: CommitCertificate | None) -> Block:
        """This block with `certificate` (None: without one). Not `copy`: pyrlp deep-copies
        every transaction for it (~0.3 s for 2,000)."""
        return Block(self.header, self.transactions, [] if certificate is None else [certificate])

    def encoded(self) -> bytes:
        """rlp.encode(self), joined from the parts' own encodings (cached on transactions
        that were decoded or encoded before) instead of serializing every field again."""
        transactions = b"".join(rlp.encode(tx) for tx in self.transactions)
        payload = (rlp.encode(self.header) + length_prefix(len(transactions), LIST_OFFSET) + transactions
                   + rlp.encode(list(self.certificate)))
        return length_prefix(len(payload), LIST_OFFSET) + payload


class Event(rlp.Serializable):
    """A contract's log entry: `fields` is a list of [name, typed value] pairs."""

    fields = [("contract", address), ("name", binary), ("fields", raw)]

    @classmethod
    def create(cls, contract: Address, name: str, fields: dict[str, Value]) -> Event:
        # dict preserves insertion order, which the contract code fixes: deterministic
        return cls(contract, name.encode(), [[k.encode(), encode_value(v)] for k, v in fields.items()])

    def field_values(self) -> dict[str, Value]:
        pairs: Any = self.fields  # the instance's value; mypy sees the class's rlp schema
        return {bytes(k).decode(): decode_value(v) for k, v in pairs}


class Receipt(rlp.Serializable):
    fields = [
        ("status", big_endian_int),  # 1 success, 0 reverted
        ("gas_used", big_endian_int),
        ("events", CountableList(Event)),
        ("error", binary),
    ]
    status: int
    gas_used: int
    events: Sequence[Event]
    error: bytes

    @property
    def succeeded(self) -> bool:
        return self.status == 1


RECORD = TypeVar("RECORD", bound=rlp.Serializable)


def decode(data: bytes, record: type[RECORD]) -> RECORD:
    """Decode rlp into `record`, raising only DecodeError on bad input."""
    if not isinstance(data, bytes):
        raise DecodeError(f"not a valid {record.__name__}: {type(data).__name__}, not bytes")
    try:
        decoded = record.deserialize(decode_strict(data))  # linear time: chain/rlpdecode.py says why
    except (RlpDecodeError, rlp.exceptions.DeserializationError, rlp.exceptions.ObjectDeserializationError,
            TypeError, ValueError) as exc:
        raise DecodeError(f"not a valid {record.__name__}: {exc}") from exc
    decoded._cached_rlp = data  # as rlp.decode does: encoding it again costs nothing
    if isinstance(decoded, Block):
        # Each transaction keeps its own bytes too: its hash, its size and the block's
        # encoding then never serialize it again (~30 us each, 2,000 per block).
        transactions_at = list_item_spans(data)[1][0]
        for tx, (start, end) in zip(decoded.transactions, list_item_spans(data, transactions_at), strict=True):
            tx._cached_rlp = data[start:end]
    return decoded


def index_key(index: int) -> bytes:
    """Transaction and receipt tries are keyed by rlp(index), as in Ethereum."""
    return rlp.encode(index)
