"""Stateless checks of a transaction (size, chain id, signature, decodable fields), shared
by the mempool and block validation. Signature checks are cached by transaction hash so a
transaction verified on admission is not verified again when its block executes."""

from __future__ import annotations

from collections import OrderedDict

import rlp

from chain.errors import DecodeError, InvalidTransaction, TxReason
from chain.genesis import LedgerLimits
from chain.types import Transaction
from crypto import BadSignature, Hash32, verify

SIGNATURE_CACHE_MAX = 200_000


class SignatureCache:
    def __init__(self, entries_max: int = SIGNATURE_CACHE_MAX) -> None:
        self.entries_max = entries_max
        self._verified: OrderedDict[Hash32, None] = OrderedDict()

    def check(self, tx: Transaction) -> None:
        if tx.hash in self._verified:
            return
        try:
            verify(tx.sender, tx.signature, tx.signing_payload())
        except BadSignature as exc:
            raise InvalidTransaction(TxReason.BAD_SIGNATURE, str(exc)) from exc
        self._verified[tx.hash] = None
        if len(self._verified) > self.entries_max:
            self._verified.popitem(last=False)


def check_transaction(tx: Transaction, chain_id: int, limits: LedgerLimits,
                      signatures: SignatureCache) -> None:
    """Raise InvalidTransaction unless `tx` is well formed for this chain."""
    size = len(rlp.encode(tx))
    if size > limits.tx_bytes_max:
        raise InvalidTransaction(TxReason.OVERSIZE, f"{size} bytes > tx_bytes_max {limits.tx_bytes_max}")
    if tx.chain_id != chain_id:
        raise InvalidTransaction(TxReason.WRONG_CHAIN_ID, f"{tx.chain_id} != {chain_id}")
    if tx.gas_limit > limits.tx_gas_max:
        raise InvalidTransaction(TxReason.GAS_LIMIT, f"{tx.gas_limit} > tx_gas_max {limits.tx_gas_max}")
    try:
        _ = (tx.method_name, tx.decoded_args)  # both decode lazily; force it here
    except DecodeError as exc:
        raise InvalidTransaction(TxReason.MALFORMED, str(exc)) from exc
    signatures.check(tx)
