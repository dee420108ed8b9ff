"""Native contract engine: contracts are Python classes at fixed addresses whose methods
run over a metered call context; a `ContractError` reverts every write of the call, any
other exception is a bug (`InternalError`) and the block is not applied. The engine
returns a `CallOutput`; the ledger (chain/execution.py) makes the receipt.

Public face: `Engine`, `CallOutput`, `NativeContract`, `method`, `view`, `CallContext`,
`BlockEnv` and the errors of vm/errors.py.
"""

from vm.context import BlockEnv, CallContext
from vm.contract import NativeContract, method, view
from vm.engine import CallOutput, Engine
from vm.errors import (
    BadArguments,
    ContractError,
    InsufficientFunds,
    InternalError,
    OutOfGas,
    ReadOnly,
    Revert,
    UnknownContract,
    UnknownMethod,
    ViewTimeout,
)

__all__ = [
    "BadArguments", "BlockEnv", "CallContext", "CallOutput", "ContractError", "Engine", "InsufficientFunds",
    "InternalError", "NativeContract", "OutOfGas", "ReadOnly", "Revert", "UnknownContract", "UnknownMethod",
    "ViewTimeout", "method", "view",
]
