"""bench.crypto runs end to end on tiny settings and reports what it claims to."""

from __future__ import annotations

import json
from pathlib import Path

from bench import crypto as bench_crypto


def test_bench_writes_a_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "crypto.json"
    bench_crypto.main(["--json", str(out), "--runs", "3", "--py-ecc-runs", "1",
                       "--keygen-runs", "1", "--bits", "512", "--message-bytes", "64"])
    report = json.loads(out.read_text())
    results = report["results"]
    for name in ["bls_sign_arkworks", "bls_verify_arkworks", "bls_sign_py_ecc",
                 "bls_verify_py_ecc", "paillier_keygen_512", "paillier_encrypt_pooled",
                 "paillier_encrypt_inline", "paillier_decrypt", "diagnosis_seal",
                 "diagnosis_open"]:
        assert results[name]["median_ms"] > 0
        assert results[name]["p90_ms"] >= results[name]["median_ms"]
    assert results["bls_verify_py_ecc"]["runs"] == 1
    assert set(report["goals"]) == set(bench_crypto.GOALS_MS)
    assert report["op_counts_per_message"] == {
        "seal": {"T_E": 1, "T_M": 1, "T_P": 0},
        "open": {"T_E": 1, "T_M": 0, "T_P": 2},
    }
