"""Cryptographic building blocks: keccak256 hashing, Ed25519 keys (transactions and
consensus messages), BLS12-381 short signatures (eqs. 1-2; arkworks fast backend, py_ecc
reference) and Paillier encryption (eqs. 3-7) for the diagnosis messages, plus the
operation counters behind the paper's Table 4.

Every primitive comes from a maintained library; nothing here implements one.
"""
