"""Native contract engine: contracts are Python classes at fixed addresses whose methods
run over a metered call context; an exception reverts every write of the call.

Public face: `Engine`, `NativeContract`, `method`, `view`, `CallContext`, `BlockEnv`.
"""

from vm.context import BlockEnv, CallContext
from vm.contract import NativeContract, method, view
from vm.engine import Engine

__all__ = ["BlockEnv", "CallContext", "Engine", "NativeContract", "method", "view"]
