"""Cryptographic building blocks: keccak256 hashing, Ed25519 keys (transactions and
consensus messages), and later BLS12-381 and Paillier for the diagnosis messages.

Every primitive comes from a maintained library; nothing here implements one.
"""
