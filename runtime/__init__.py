"""The networked node: wires the ledger (chain/), XPaxos (consensus/), the peer transport
(p2p/) and the API (rpc/) together around one consensus loop, and starts local clusters.

Public face: `NodeConfig`, `Node`, and runtime.cluster's `init_cluster` / `run_cluster`.
"""
