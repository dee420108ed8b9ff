"""Well-known addresses of the native contracts (like Ethereum precompiles)."""

from chain.epochs import GOVERNANCE as GOVERNANCE  # the ledger reads its schedule (chain/epochs.py)
from vm.contract import well_known_address

REGISTRY = well_known_address(1)
TOKEN = well_known_address(2)
DSC = well_known_address(3)
CREDIT = well_known_address(4)
POLICY = well_known_address(5)
RECORDS = well_known_address(6)
