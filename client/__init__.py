"""Python SDK for gridchain nodes, used by the CLI, the demo, the benchmarks and the tests.

Public face: `GridClient` (transactions with nonce handling, receipts, views, proofs,
subscriptions), from client.sdk; `RpcClient` (raw JSON-RPC, batches, failover, bounded
replies), its `Reply` and `Backoff`, from client.rpc; typed final receipts (`Receipt`,
`Event`) and `from_hex`, from client.receipts; errors in client.errors.
"""

from client.errors import BadReply, ClientError, NodeUnavailable, ReplyTooLarge, RpcCallError, TransactionFailed
from client.receipts import Event, Receipt, from_hex
from client.rpc import BACKPRESSURE, Backoff, Reply, RpcClient
from client.sdk import GridClient

__all__ = ["BACKPRESSURE", "Backoff", "BadReply", "ClientError", "Event", "GridClient", "NodeUnavailable", "Receipt",
           "Reply", "ReplyTooLarge", "RpcCallError", "RpcClient", "TransactionFailed", "from_hex"]
