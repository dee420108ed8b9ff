"""Storage records of the DSC contract: requests and bids as typed records (contracts/codec.py;
the contract, the SDK and the light client read them through these), their keys, the
sealed-bid commitment and the escrow ids the DSC uses at the token contract.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.codec import StoredRecord
from crypto import Address, Hash32, keccak256

# request status
BIDDING = "bidding"  # out of warranty: commit and reveal windows (V.B)
ASSIGNED = "assigned"  # a diagnosis node holds the job (the vendor in warranty, V.A)
COMPLETED = "completed"
FAILED = "failed"  # the auction closed without a valid bid
DEFAULTED = "defaulted"  # a party refused or missed the deadline, or lost a dispute
DISPUTED = "disputed"  # the requester contests report_done; escrows wait for an arbiter

# bid status
COMMITTED = "committed"
VALID = "valid"
INVALID = "invalid"
WITHDRAWN = "withdrawn"

COMMITMENT_DOMAIN = b"gridchain/dsc-bid\x00"


def bid_commitment(request_id: int, bidder: Address, price: int, credit: int, salt: bytes) -> Hash32:
    """The sealed bid H(P_i, Cred_i, salt, bidder) (IV.B): keccak256 of the domain tag, then
    request id, price and credit as 32-byte big-endian unsigned integers, the 20-byte
    bidder address and the 32-byte salt. The request id stops a commitment being replayed
    in another auction; the address stops one bidder revealing another's bid."""
    assert len(bidder) == 20 and len(salt) == 32, "bidder is 20 bytes, salt 32"
    return keccak256(COMMITMENT_DOMAIN + request_id.to_bytes(32, "big") + price.to_bytes(32, "big")
                     + credit.to_bytes(32, "big") + bidder + salt)


@dataclass
class Request(StoredRecord):
    device: Address  # the failure node k_i (its opaque ID)
    payer: Address  # who sent the deposit: the device or its smartphone
    device_type: str  # S
    in_warranty: bool
    status: str
    opened_ms: int
    commit_end_ms: int
    reveal_end_ms: int
    node: Address  # the assigned diagnosis node (b"" while bidding)
    price: int  # the transaction value (0 in warranty)
    escrowed: int  # payment guarantee still escrowed (P_max, then the price)
    mode: str  # "remote" or "on-site", chosen by the node ("" until then)
    deadline_ms: int  # service deadline once assigned
    node_done: bool  # the node reported the repair done
    rated_by_requester: bool
    rated_by_node: bool


@dataclass
class Bid(StoredRecord):
    commitment: bytes
    index: int  # commit order in this auction
    status: str
    credit_at_commit: int  # Cred_i on chain when the bid was sealed
    price: int  # revealed P_i (0 before the reveal)
    credit: int  # revealed Cred_i
    reason: str  # why a reveal was invalid


def id_bytes(request_id: int) -> bytes:
    return request_id.to_bytes(8, "big")


def request_key(request_id: int) -> bytes:
    return b"q:" + id_bytes(request_id)


def bidders_key(request_id: int) -> bytes:
    return b"l:" + id_bytes(request_id)


def bid_key(request_id: int, bidder: Address) -> bytes:
    return b"b:" + id_bytes(request_id) + bidder


def messages_key(request_id: int) -> bytes:
    return b"g:" + id_bytes(request_id)


def bidder_state_key(bidder: Address) -> bytes:
    return b"s:" + bidder


def threshold_key(node: Address) -> bytes:
    return b"t:" + node


def rated_key(ratee: Address, counterparty: Address) -> bytes:
    """When `counterparty` last gave `ratee` a rating that counted (ms)."""
    return b"r:" + ratee + counterparty


def open_key(device: Address) -> bytes:
    return b"o:" + device


# escrow ids at the token contract (namespaced per holder, so only the DSC can touch them)
def deposit_escrow(request_id: int) -> bytes:
    return id_bytes(request_id) + b"D"


def payment_escrow(request_id: int) -> bytes:
    return id_bytes(request_id) + b"P"


def bid_escrow(request_id: int, bidder: Address) -> bytes:
    return id_bytes(request_id) + b"B" + bidder
