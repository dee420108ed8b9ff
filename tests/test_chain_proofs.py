"""Proofs verify with a plain HexaryTrie.get_from_proof against the header root only."""

from __future__ import annotations

import pytest
import rlp
from trie import HexaryTrie
from trie.exceptions import BadTrieProof

from chain import Account, Receipt
from chain.proofs import InvalidProof, prove_receipt, prove_state, prove_transaction, verify_proof
from chain.state import account_key
from chain.types import index_key
from contracts.addresses import TOKEN
from tests.support import DevChain


@pytest.fixture
def committed(devchain: DevChain) -> tuple[DevChain, list]:
    a = devchain.accounts
    txs = [devchain.tx(a[i], TOKEN, "transfer", [a[i + 1].address, 7]) for i in range(5)]
    devchain.commit(txs)
    devchain.commit([devchain.tx(a[0], TOKEN, "transfer", [a[1].address, 1])])
    return devchain, txs


def test_transaction_proof(committed: tuple[DevChain, list]) -> None:
    dev, txs = committed
    proof = prove_transaction(dev.chain, txs[3].hash)
    raw = HexaryTrie.get_from_proof(proof.header.transaction_root, index_key(3), list(proof.nodes))
    assert raw == rlp.encode(txs[3])


def test_receipt_proof(committed: tuple[DevChain, list]) -> None:
    dev, txs = committed
    proof = prove_receipt(dev.chain, txs[1].hash)
    receipt = rlp.decode(verify_proof(proof.header, "receipt", proof.key, proof.nodes), Receipt)
    assert receipt.status == 1 and receipt.events[0].field_values()["amount"] == 7


def test_state_proof_and_absence(committed: tuple[DevChain, list]) -> None:
    dev, _ = committed
    address = dev.accounts[2].address
    proof = prove_state(dev.chain, account_key(address))
    assert Account.decode(verify_proof(proof.header, "state", proof.key, proof.nodes)) == dev.chain.account(address)
    missing = prove_state(dev.chain, account_key(b"\x99" * 20))
    assert verify_proof(missing.header, "state", missing.key, missing.nodes) == b""


def test_proof_against_the_wrong_root_fails(committed: tuple[DevChain, list]) -> None:
    dev, txs = committed
    proof = prove_receipt(dev.chain, txs[0].hash)
    other_header = dev.chain.block(1).header.copy(receipt_root=b"\x42" * 32)
    with pytest.raises(BadTrieProof):
        HexaryTrie.get_from_proof(other_header.receipt_root, proof.key, list(proof.nodes))
    with pytest.raises(InvalidProof):
        verify_proof(other_header, "receipt", proof.key, proof.nodes)


def test_state_proof_at_an_older_height(committed: tuple[DevChain, list]) -> None:
    dev, _ = committed
    address = dev.accounts[0].address
    old = prove_state(dev.chain, account_key(address), height=1)
    new = prove_state(dev.chain, account_key(address))
    old_account = Account.decode(verify_proof(old.header, "state", old.key, old.nodes))
    new_account = Account.decode(verify_proof(new.header, "state", new.key, new.nodes))
    assert new_account.nonce == old_account.nonce + 1
