"""XPaxos (XFT) consensus for gridchain: a sans-IO replica, block sync, storage.

The node drives `Replica` (consensus/replica.py explains the protocol) and `BlockSync`,
feeding messages decoded by `message_from_wire` / `sync_message_from_wire`; it gives the
replica's Propose and Check actions to the ledger with `consensus.loop.settle`.
"""

from consensus.actions import (
    Action,
    CatchUp,
    Check,
    FaultDetected,
    Finalize,
    Persist,
    Propose,
    Rejected,
    Send,
    Suspected,
    ViewChanged,
)
from consensus.app import Application
from consensus.config import BYZANTINE_MODES, FORKING_MODES, TIMING_PRESETS, ConsensusConfig
from consensus.errors import ConsensusError, InvalidMessage
from consensus.messages import Message, message_from_wire
from consensus.replica import Replica, Status
from consensus.storage import ConsensusStorage, LmdbStorage, MemoryStorage, StoredState
from consensus.sync import (
    BadBlock,
    BlockSync,
    PeerId,
    SyncAction,
    SyncConfig,
    SyncMessage,
    SyncRejected,
    SyncSend,
    sync_message_from_wire,
)

__all__ = [
    "Action", "Application", "BYZANTINE_MODES", "BadBlock", "BlockSync", "CatchUp", "Check",
    "ConsensusConfig", "ConsensusError", "ConsensusStorage", "FORKING_MODES", "FaultDetected", "Finalize",
    "InvalidMessage",
    "LmdbStorage", "MemoryStorage", "Message", "PeerId", "Persist", "Propose", "Rejected", "Replica", "Send",
    "Status", "StoredState", "Suspected", "SyncAction", "SyncConfig", "SyncMessage", "SyncRejected",
    "SyncSend", "TIMING_PRESETS", "ViewChanged", "message_from_wire", "sync_message_from_wire",
]
