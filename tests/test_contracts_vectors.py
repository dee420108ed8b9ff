"""The shipped hand-computed auction vectors hold, and the runner fails on a wrong one."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from contracts.vectors import format_fixed, main, parse_fixed, run_file

VECTORS = Path(__file__).resolve().parent.parent / "contracts" / "vectors" / "auctions.json"


def test_fixed_point_decimals_round_trip() -> None:
    assert parse_fixed("-88.413159") == -88_413_159 and format_fixed(-88_413_159) == "-88.413159"
    assert parse_fixed(59) == 59_000_000 and format_fixed(59_000_000) == "59"
    with pytest.raises(ValueError):
        parse_fixed("1.0000001")


def test_shipped_vectors_hold() -> None:
    document = json.loads(VECTORS.read_text())
    assert len(document["vectors"]) >= 10
    assert all(v["note"] for v in document["vectors"])
    out = io.StringIO()
    assert run_file(VECTORS, out), out.getvalue()


def test_wrong_expectation_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = json.loads(VECTORS.read_text())
    vector = next(v for v in document["vectors"] if v["name"] == "two-bidders-coupon")
    vector["auctions"][0]["expect"]["after"]["B"]["d"] = "58"
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"vectors": [vector]}))
    assert main(["run", str(wrong)]) == 1
    assert "MISMATCH B.d: expected 58, got 59" in capsys.readouterr().out
