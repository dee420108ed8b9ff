"""Python SDK for gridchain nodes, used by the CLI, the demo, the benchmarks and the tests.

Public face: `GridClient` (transactions with nonce handling, receipts, views, proofs,
subscriptions) and `RpcClient` (raw JSON-RPC), from client.sdk; errors in client.errors.
"""

from client.errors import ClientError, RpcCallError, TransactionFailed
from client.sdk import GridClient, RpcClient

__all__ = ["ClientError", "GridClient", "RpcCallError", "RpcClient", "TransactionFailed"]
