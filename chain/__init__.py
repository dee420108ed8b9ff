"""The ledger, in two layers with vm/ between them (docs/architecture.md, "Packages"):

- records, below the contract engine: typed values (chain.values), the rlp records and
  their strict decoder (chain.types, chain.rlpdecode), world state on the Merkle Patricia
  trie (chain.state, chain.triebuild), the LMDB store (chain.store), the config schema
  (chain.schema) and the errors (chain.errors);
- the transition, above it: transaction checks (chain.validation), genesis, block
  execution (chain.execution), the chain (chain.chain), the mempool and its journal,
  certificates, Merkle proofs and `verify`.

Public face: the records layer below, importable as `from chain import ...`. The transition
(`chain.chain.Chain`, `chain.mempool.Mempool`, `chain.genesis.Genesis`, ...) is imported from
its module: importing it here would make every reader of a record (vm/) load the transition
above vm/. Imports nothing from consensus/, p2p/ or rpc/ (pyproject [tool.importlinter]).
"""

from chain.errors import (
    DecodeError,
    InvalidBlock,
    InvalidCertificate,
    InvalidTransaction,
    LedgerError,
    StorageFull,
    TxReason,
    UnknownBlock,
)
from chain.state import Account, State
from chain.store import ChainStore, StorageUsage
from chain.types import Block, BlockHeader, CommitCertificate, Event, Receipt, Transaction, Vote, decode
from chain.values import Value

__all__ = [
    "Account", "Block", "BlockHeader", "ChainStore", "CommitCertificate", "DecodeError", "Event",
    "InvalidBlock", "InvalidCertificate", "InvalidTransaction", "LedgerError", "Receipt", "State",
    "StorageFull", "StorageUsage", "Transaction", "TxReason", "UnknownBlock", "Value", "Vote", "decode",
]
