"""Gas schedule. Gas bounds the work of a call (there is no fee market in a consortium
chain: gas is a limit, not a price). Figures are relative costs measured on this engine:
a trie write costs ~10x a read at flush time."""

TX_BASE = 1_000
TX_BYTE = 4
STORAGE_READ = 100
STORAGE_WRITE = 1_000
STORAGE_BYTE = 4
STORAGE_DELETE = 300
EVENT = 200
EVENT_BYTE = 4
LOOP_STEP = 10
CALL = 300
TRANSFER = 500
END_BLOCK_BUDGET = 5_000_000  # gas the end-of-block hooks (policy triggers) may use in total
