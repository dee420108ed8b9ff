"""Test support: deterministic keys, a genesis, and a chain driven block by block."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chain import Block, ChainStore, CommitCertificate, Transaction, Value, Vote
from chain.certificate import commit_message, final_message, finality_signers, synchronous_group
from chain.chain import Chain
from chain.execution import ExecutedBlock
from chain.genesis import Genesis
from contracts import build_contracts, genesis_from_dict
from crypto import KeyPair
from vm import Engine

CHAIN_ID = 77
BALANCE = 10**12


def key(n: int) -> KeyPair:
    return KeyPair.from_seed(n.to_bytes(32, "big"))


def genesis_dict(accounts: list[KeyPair], t: int = 1, contracts: dict[str, Any] | None = None) -> dict:
    bookkeepers = [bookkeeper_key(i) for i in range(2 * t + 1)]
    return {
        "chain_id": CHAIN_ID,
        "timestamp_ms": 1_700_000_000_000,
        "t": t,
        "bookkeepers": [{"name": f"node{i}", "public_key": k.public_key.hex()}
                        for i, k in enumerate(bookkeepers)],
        "accounts": [{"public_key": k.public_key.hex(), "balance": BALANCE} for k in accounts],
        "contracts": contracts or {},
    }


def bookkeeper_key(i: int) -> KeyPair:
    return key(10_000 + i)


def certify(dev: DevChain, block: Block, *, finality: bool = True, view: int = 0) -> Block:
    """`block` with the certificate of `view`'s group and (unless not `finality`) its
    finality proof, signed with genesis_dict's bookkeeper keys."""
    genesis = dev.chain.genesis
    n, t, chain_id = len(genesis.bookkeepers), genesis.t, genesis.chain_id
    votes = [Vote(m, bookkeeper_key(m).sign(commit_message(chain_id, view, block.number, block.hash)))
             for m in synchronous_group(view, n, t)]
    finals = [Vote(m, bookkeeper_key(m).sign(final_message(chain_id, view, block.number, block.hash)))
              for m in finality_signers(view, n, t)] if finality else []
    return block.with_certificate(CommitCertificate(view, votes, finals))


def open_chain(directory: Path, genesis: Genesis) -> Chain:
    return Chain(ChainStore(directory), genesis, Engine(build_contracts(genesis.contract_params)))


@dataclass
class DevChain:
    chain: Chain
    accounts: list[KeyPair]
    nonces: dict[bytes, int] = field(default_factory=dict)
    clock_ms: int = 1_700_000_000_000

    @classmethod
    def create(cls, directory: Path, accounts: int = 8, **genesis_args: Any) -> DevChain:
        keys = [key(i + 1) for i in range(accounts)]
        genesis = genesis_from_dict(genesis_dict(keys, **genesis_args))
        return cls(open_chain(directory, genesis), keys)

    def tx(self, sender: KeyPair, to: bytes, method: str, args: list[Value], value: int = 0,
           gas_limit: int = 1_000_000) -> Transaction:
        nonce = self.nonces.get(sender.address, 0)
        self.nonces[sender.address] = nonce + 1
        return Transaction.create(sender, chain_id=self.chain.genesis.chain_id, nonce=nonce, to=to,
                                  method=method, args=args, value=value, gas_limit=gas_limit)

    def commit(self, txs: list[Transaction], step_ms: int = 1_000) -> ExecutedBlock:
        self.clock_ms += step_ms
        executed, rejected = self.chain.build(txs, timestamp_ms=self.clock_ms, proposer=0, view=0)
        assert not rejected, rejected
        self.chain.append(executed.block)
        return executed
