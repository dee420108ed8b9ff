"""A full LMDB map or disk: the write raises StorageFull having written nothing, the map
grows when the disk allows, and the store is intact afterwards (issue 10)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from chain import ChainStore, StorageFull
from chain.chain import Chain
from chain.genesis import Genesis
from chain.verify import verify_chain
from contracts import build_contracts
from tests.support import DevChain, genesis_dict, key, open_chain
from vm import Engine

MAP_BYTES = 256 << 10  # a few dozen blocks of big transfers


def _fill(dev: DevChain, blocks: int) -> None:
    token = dev.chain.engine.by_name["token"].address
    for _ in range(blocks):
        # 4 KB of argument per transaction: the call fails, the transaction is still stored
        dev.commit([dev.tx(sender, token, "transfer", [sender.address, 1, b"x" * 4096]) for sender in dev.accounts])


def _dev(directory: Path, map_bytes_max: int, disk_free_bytes_min: int = 0) -> DevChain:
    keys = [key(i + 1) for i in range(4)]
    genesis = Genesis.from_dict(genesis_dict(keys))
    store = ChainStore(directory, MAP_BYTES, map_bytes_max, disk_free_bytes_min)
    return DevChain(Chain(store, genesis, Engine(build_contracts(genesis.contract_params))), keys)


def test_a_full_map_that_cannot_grow_writes_nothing(tmp_path: Path) -> None:
    dev = _dev(tmp_path / "chain", map_bytes_max=MAP_BYTES)
    with pytest.raises(StorageFull) as raised:
        _fill(dev, 200)
    assert raised.value.reason == "map-full" and raised.value.map_bytes == MAP_BYTES
    assert "lmdb_map_bytes_max" in str(raised.value)
    height = dev.chain.height
    assert dev.chain.store.head_height() == height and height > 0
    dev.chain.store.close()
    # reopened: the chain is whole, up to the last block that fit
    reopened = open_chain(tmp_path / "chain", dev.chain.genesis)
    assert reopened.height == height
    assert list(verify_chain(reopened)) == []


def test_a_full_map_grows_while_the_disk_has_room(tmp_path: Path) -> None:
    dev = _dev(tmp_path / "chain", map_bytes_max=64 << 20)
    _fill(dev, 60)
    usage = dev.chain.store.usage()
    assert usage.map_bytes > MAP_BYTES and usage.used_bytes > MAP_BYTES
    assert dev.chain.height == 60


def test_growth_stops_at_the_disk_reserve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dev = _dev(tmp_path / "chain", map_bytes_max=64 << 20, disk_free_bytes_min=1 << 30)
    monkeypatch.setattr(dev.chain.store, "disk_free_bytes", lambda: 100 << 20)  # under the reserve
    with pytest.raises(StorageFull) as raised:
        _fill(dev, 200)
    assert raised.value.reason == "map-full"
    monkeypatch.setattr(dev.chain.store, "disk_free_bytes", lambda: 10 << 30)  # space came back
    assert dev.chain.store.grow()


def test_a_full_disk_is_storage_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dev = _dev(tmp_path / "chain", map_bytes_max=MAP_BYTES)
    store = dev.chain.store

    def no_space(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "_write_block", no_space)
    with pytest.raises(StorageFull) as raised:
        _fill(dev, 1)
    assert raised.value.reason == "disk-full"
    assert dev.chain.height == 0
    monkeypatch.undo()
    dev.nonces.clear()  # the block that was not written used nonce 0
    _fill(dev, 1)  # the same write, retried once there is space
    assert dev.chain.height == 1
