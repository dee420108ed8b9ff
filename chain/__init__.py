"""The ledger: rlp records, world state on the Merkle Patricia trie, LMDB store, block
execution (the state transition), mempool, genesis and Merkle proofs.

Public face: `Chain` (chain.chain), `Mempool`, `Genesis`, the records in chain.types and
the errors in chain.errors. Imports nothing from consensus/, p2p/ or rpc/.
"""
