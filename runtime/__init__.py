"""The networked node: wires the ledger (chain/), XPaxos (consensus/), the peer transport
(p2p/) and the API (rpc/) together around one consensus loop, and starts local clusters.

Public face: `NodeConfig` (runtime.config), `Node` (runtime.node), and runtime.cluster's
`init_cluster` / `ClusterProcesses`, each imported from its module: runtime.config is read
by every CLI process, which should not load the node (and the whole stack) to do so.
"""
