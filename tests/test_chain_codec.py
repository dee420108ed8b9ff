"""rlp round trips for every record and typed value; garbage decodes to DecodeError only."""

from __future__ import annotations

import rlp
from hypothesis import given, settings
from hypothesis import strategies as st

from chain import Block, BlockHeader, CommitCertificate, DecodeError, Event, Receipt, Transaction, Vote, decode
from chain.types import TX_SIGNING_DOMAIN
from chain.values import decode_value, encode_value, value_from_bytes, value_to_bytes
from crypto import KeyPair

b32 = st.binary(min_size=32, max_size=32)
b20 = st.binary(min_size=20, max_size=20)
u64 = st.integers(min_value=0, max_value=2**64 - 1)
values = st.recursive(
    st.one_of(st.integers(min_value=-(2**200), max_value=2**200), st.binary(max_size=64),
              st.text(max_size=20), st.booleans()),
    lambda children: st.lists(children, max_size=4),
    max_leaves=12,
)
headers = st.builds(BlockHeader, b32, u64, u64, st.integers(0, 10), u64, b32, b32, b32, u64,
                    st.binary(max_size=32))
events = st.builds(lambda c, n, f: Event.create(c, n, f), b20, st.text(min_size=1, max_size=10),
                   st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=3))
receipts = st.builds(Receipt, st.integers(0, 1), u64, st.lists(events, max_size=3), st.binary(max_size=30))
votes = st.lists(st.builds(Vote, st.integers(0, 6), st.binary(min_size=64, max_size=64)), max_size=3)
certificates = st.builds(CommitCertificate, u64, votes, votes)
KEY = KeyPair.from_seed(b"\x01" * 32)


@st.composite
def transactions(draw: st.DrawFn) -> Transaction:
    return Transaction.create(KEY, chain_id=draw(u64), nonce=draw(u64), to=draw(b20),
                              method=draw(st.text(min_size=1, max_size=12)),
                              args=draw(st.lists(values, max_size=4)), value=draw(u64),
                              gas_limit=draw(u64))


@given(values)
def test_typed_values_round_trip_with_their_type(value: object) -> None:
    assert decode_value(encode_value(value)) == value  # type: ignore[arg-type]
    restored = value_from_bytes(value_to_bytes(value))  # type: ignore[arg-type]
    assert type(restored) is type(value)


@settings(max_examples=50)
@given(transactions())
def test_transaction_round_trip(tx: Transaction) -> None:
    again = decode(rlp.encode(tx), Transaction)
    assert again == tx and again.hash == tx.hash
    assert again.decoded_args == tx.decoded_args
    # the hand-built signing payload is exactly the rlp of the unsigned transaction
    assert again.signing_payload() == TX_SIGNING_DOMAIN + rlp.encode(tx.copy(signature=b""))


@given(headers)
def test_header_round_trip(header: BlockHeader) -> None:
    assert decode(rlp.encode(header), BlockHeader).hash == header.hash


@settings(max_examples=30)
@given(headers, st.lists(transactions(), max_size=3), st.lists(certificates, max_size=1))
def test_block_round_trip(header: BlockHeader, txs: list, certificate: list) -> None:
    block = Block(header, txs, certificate)
    assert decode(rlp.encode(block), Block) == block


@given(receipts)
def test_receipt_round_trip(receipt: Receipt) -> None:
    again = decode(rlp.encode(receipt), Receipt)
    assert again == receipt
    assert [e.field_values() for e in again.events] == [e.field_values() for e in receipt.events]


@given(st.binary(max_size=300))
def test_garbage_gives_only_decode_error(data: bytes) -> None:
    for record in (Transaction, BlockHeader, Block, Receipt, Event, CommitCertificate):
        try:
            decode(data, record)
        except DecodeError:
            pass
    try:
        value_from_bytes(data)
    except DecodeError:
        pass


def test_values_reject_non_canonical_forms() -> None:
    for bad in ([b"i", b"\x00\x01"], [b"n", b""], [b"t", b"x"], [b"?", b""], [b"s", b"\xff"]):
        try:
            decode_value(bad)
        except DecodeError:
            continue
        raise AssertionError(f"{bad} decoded")
