"""Python SDK for gridchain nodes, used by the CLI, the demo, the benchmarks and the tests.

Public face: `GridClient` (transactions with nonce handling, receipts, views, proofs,
subscriptions), from client.sdk; `RpcClient` (raw JSON-RPC, batches, failover, bounded
replies), its `Reply` and `Backoff`, from client.rpc; errors in client.errors.
"""

from client.errors import ClientError, NodeUnavailable, ReplyTooLarge, RpcCallError, TransactionFailed
from client.rpc import BACKPRESSURE, Backoff, Reply, RpcClient
from client.sdk import GridClient

__all__ = ["BACKPRESSURE", "Backoff", "ClientError", "GridClient", "NodeUnavailable", "Reply", "ReplyTooLarge",
           "RpcCallError", "RpcClient", "TransactionFailed"]
