"""Shared fixtures: a development chain in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import DevChain


@pytest.fixture
def devchain(tmp_path: Path) -> DevChain:
    return DevChain.create(tmp_path / "chain")
