"""Cost of the diagnosis cryptography: BLS sign/verify on both backends, Paillier key
generation, encryption and decryption, and seal/open of a sealed diagnosis message.

    python -m bench.crypto --json OUT [--runs 200] [--py-ecc-runs 3] [--bits 2048]

Each figure is the median and p90 of single-operation wall-clock times over a bounded
number of runs. Pooled Paillier encryption takes r^N from a pool filled before the timed
loop; the cost of filling it is reported on its own line (`paillier_precompute_rn`, per
value) and inline encryption (r^N computed in the call) is reported too, so nothing is
hidden. py_ecc is a pure-Python reference: a few runs only.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from crypto import bls, counters, paillier
from diagnosis import Opener, SealedMessage, seal

GOALS_MS = {
    "bls_verify_arkworks": 3.0,
    "paillier_encrypt_pooled": 5.0,
}

SENDER_ID = b"\x0d" * 20
RECEIVER_ID = b"\x0a" * 20
T0_MS = 1_700_000_000_000
INLINE_RUNS_MAX = 50  # r^N inside the call costs ~8 ms at 2048 bits

T = TypeVar("T")


@dataclass(frozen=True)
class Stats:
    median_ms: float
    p90_ms: float
    runs: int
    note: str


def _stats(samples_s: list[float], note: str) -> Stats:
    ordered = sorted(samples_s)
    p90 = ordered[math.ceil(0.9 * len(ordered)) - 1]
    middle = len(ordered) // 2
    median = (ordered[middle] if len(ordered) % 2
              else (ordered[middle - 1] + ordered[middle]) / 2)
    return Stats(round(median * 1e3, 4), round(p90 * 1e3, 4), len(ordered), note)


def _time_each(operation: Callable[[T], object], inputs: Sequence[T]) -> list[float]:
    samples = []
    for value in inputs:
        start = time.perf_counter()
        operation(value)
        samples.append(time.perf_counter() - start)
    return samples


def bench_bls(backend: bls.BlsBackend, runs: int) -> dict[str, Stats]:
    key = bls.BlsPrivateKey.generate()
    public_key = key.public_key(backend)
    messages = [secrets.token_bytes(600) for _ in range(runs)]
    signatures: list[bytes] = []

    def sign_one(message: bytes) -> None:
        signatures.append(bls.sign(key, message, backend=backend))

    def verify_one(pair: tuple[bytes, bytes]) -> None:
        bls.verify(public_key, pair[0], pair[1], backend=backend)

    sign = _time_each(sign_one, messages)
    verify = _time_each(verify_one, list(zip(messages, signatures, strict=True)))
    note = "600-byte message, hash-to-G1 included"
    return {f"bls_sign_{backend.name}": _stats(sign, note),
            f"bls_verify_{backend.name}": _stats(verify, note + "; subgroup checks included")}


def bench_paillier(bits: int, runs: int, keygen_runs: int,
                   key: paillier.PaillierPrivateKey) -> dict[str, Stats]:
    keygen = _time_each(paillier.PaillierPrivateKey.generate, [bits] * keygen_runs)
    public = key.public_key
    plaintexts = [secrets.randbelow(public.n) for _ in range(runs)]
    public.pool.size_max = runs
    start = time.perf_counter()
    public.pool.refill()
    precompute_per_value = (time.perf_counter() - start) / runs
    ciphertexts: list[paillier.PaillierCiphertext] = []
    pooled = _time_each(lambda m: ciphertexts.append(public.encrypt(m)), plaintexts)
    assert public.pool.misses == 0, "the timed loop must only use precomputed r^N"
    inline = _time_each(public.encrypt, plaintexts[:INLINE_RUNS_MAX])
    decrypt = _time_each(key.decrypt, ciphertexts)
    return {
        f"paillier_keygen_{bits}": _stats(keygen, "phe.generate_paillier_keypair with gmpy2"),
        "paillier_precompute_rn": Stats(round(precompute_per_value * 1e3, 4),
                                        round(precompute_per_value * 1e3, 4), runs,
                                        "one r^N mod N^2 for the pool (mean of a refill)"),
        "paillier_encrypt_pooled": _stats(pooled, "r^N from the pool, filled before timing"),
        "paillier_encrypt_inline": _stats(inline, "r^N computed inside the call"),
        "paillier_decrypt": _stats(decrypt, "phe raw_decrypt (CRT)"),
    }


class _Directory:
    def __init__(self, keys: dict[bytes, bytes]) -> None:
        self._keys = keys

    def bls_key(self, member_id: bytes) -> bytes | None:
        return self._keys.get(member_id)


def bench_sealed(key: paillier.PaillierPrivateKey, runs: int,
                 message_bytes: int) -> tuple[dict[str, Stats], dict[str, dict[str, int]]]:
    sender = bls.BlsPrivateKey.generate()
    opener = Opener(own_id=RECEIVER_ID, paillier_private=key,
                    directory=_Directory({SENDER_ID: sender.public_key()}),
                    replay_cache_entries_max=runs + 1)
    public = key.public_key
    public.pool.size_max = runs
    public.pool.refill()
    plaintexts = [secrets.token_bytes(message_bytes) for _ in range(runs)]
    sealed: list[SealedMessage] = []
    seal_counter, open_counter = counters.OpCounter(), counters.OpCounter()

    def seal_one(i: int) -> None:
        with counters.attribute_to(seal_counter):
            sealed.append(seal(plaintexts[i], recipient_paillier_public=public,
                               sender_id=SENDER_ID, receiver_id=RECEIVER_ID,
                               sender_bls_key=sender, timestamp_ms=T0_MS + i))

    def open_one(i: int) -> None:
        with counters.attribute_to(open_counter):
            opened = opener.open(sealed[i], now_ms=T0_MS + i)
        assert opened.plaintext == plaintexts[i]

    seal_s = _time_each(seal_one, range(runs))
    open_s = _time_each(open_one, range(runs))
    size = len(sealed[0].encode())
    note = f"{message_bytes}-byte plaintext, {size}-byte sealed message"
    per_message = {
        "seal": {k: v // runs for k, v in seal_counter.snapshot().as_dict().items()},
        "open": {k: v // runs for k, v in open_counter.snapshot().as_dict().items()},
    }
    return ({"diagnosis_seal": _stats(seal_s, note + "; pooled r^N"),
             "diagnosis_open": _stats(open_s, note + "; all checks, verify and decrypt")},
            per_message)


# The device<->node exchange of each flow (Figs. 5-8), as diagnosis/protocol.py declares it:
# (sender, receiver) per sealed message. ROW and SOW repeat RMW and SMW with the winner.
FLOW_MESSAGES = {
    "RMW": [("k", "v"), ("v", "k")],  # fault, repair policy
    "SMW": [("k", "v"), ("v", "k"), ("k", "v")],  # fault, Spot, time
    "ROW": [("k", "v"), ("v", "k")],
    "SOW": [("k", "v"), ("v", "k"), ("k", "v")],
}
FLOW_RATIO_GOAL = 1.2


def bench_flows(runs: int, bits: int, message_bytes: int,
                primitives: dict[str, Stats]) -> dict[str, dict[str, float]]:
    """Each flow's computation (every seal and open of its device<->node messages, with the
    real Opener) against the sum of its primitive operations: per seal one pooled Paillier
    encryption + one BLS signature, per open one decryption + one verification (medians)."""
    keys = {"k": paillier.PaillierPrivateKey.generate(bits), "v": paillier.PaillierPrivateKey.generate(bits)}
    signers = {"k": bls.BlsPrivateKey.generate(), "v": bls.BlsPrivateKey.generate()}
    ids = {"k": SENDER_ID, "v": RECEIVER_ID}
    directory = _Directory({ids[p]: signers[p].public_key() for p in ids})
    per_seal = primitives["paillier_encrypt_pooled"].median_ms + primitives["bls_sign_arkworks"].median_ms
    per_open = primitives["paillier_decrypt"].median_ms + primitives["bls_verify_arkworks"].median_ms
    plaintext = secrets.token_bytes(message_bytes)
    out: dict[str, dict[str, float]] = {}
    for flow, messages in FLOW_MESSAGES.items():
        openers = {p: Opener(own_id=ids[p], paillier_private=keys[p], directory=directory,
                             replay_cache_entries_max=runs * len(messages) + 1) for p in ids}
        for p in keys:
            keys[p].public_key.pool.size_max = runs * len(messages)
            keys[p].public_key.pool.refill()
        samples = []
        for i in range(runs):
            started = time.perf_counter()
            for j, (sender, receiver) in enumerate(messages):
                t = T0_MS + i * 10 + j
                sealed = seal(plaintext, recipient_paillier_public=keys[receiver].public_key,
                              sender_id=ids[sender], receiver_id=ids[receiver], sender_bls_key=signers[sender],
                              timestamp_ms=t)
                openers[receiver].open(sealed, now_ms=t)
            samples.append(time.perf_counter() - started)
        measured = _stats(samples, flow).median_ms
        primitive_sum = len(messages) * (per_seal + per_open)
        out[flow] = {"messages": len(messages), "measured_ms": measured, "primitives_ms": round(primitive_sum, 4),
                     "ratio": round(measured / primitive_sum, 3),
                     "met": measured <= FLOW_RATIO_GOAL * primitive_sum}
    return out


def run(runs: int, py_ecc_runs: int, keygen_runs: int, bits: int,
        message_bytes: int) -> dict[str, object]:
    results: dict[str, Stats] = {}
    print("BLS (arkworks)...", file=sys.stderr)
    results.update(bench_bls(bls.backend_named("arkworks"), runs))
    print(f"BLS (py_ecc, {py_ecc_runs} runs)...", file=sys.stderr)
    results.update(bench_bls(bls.backend_named("py_ecc"), py_ecc_runs))
    print(f"Paillier {bits}-bit...", file=sys.stderr)
    key = paillier.PaillierPrivateKey.generate(bits)
    results.update(bench_paillier(bits, runs, keygen_runs, key))
    print("sealed diagnosis messages...", file=sys.stderr)
    sealed_results, op_counts = bench_sealed(key, runs, message_bytes)
    results.update(sealed_results)
    print("flows (device<->node exchange)...", file=sys.stderr)
    flows = bench_flows(min(runs, 50), bits, message_bytes, results)
    goals = {name: {"goal_ms": goal, "median_ms": results[name].median_ms,
                    "met": results[name].median_ms <= goal}
             for name, goal in GOALS_MS.items()}
    return {
        "environment": {"python": platform.python_version(), "machine": platform.machine(),
                        "paillier_bits": bits, "runs": runs, "py_ecc_runs": py_ecc_runs},
        "results": {name: asdict(stats) for name, stats in results.items()},
        "goals": goals,
        "op_counts_per_message": op_counts,
        "flows": flows,
        "flow_ratio_goal": FLOW_RATIO_GOAL,
    }


def print_table(report: dict[str, object]) -> None:
    results = report["results"]
    assert isinstance(results, dict)
    print(f"{'operation':<28}{'median ms':>11}{'p90 ms':>11}{'runs':>6}  note")
    for name, row in results.items():
        print(f"{name:<28}{row['median_ms']:>11.3f}{row['p90_ms']:>11.3f}{row['runs']:>6}"
              f"  {row['note']}")
    goals = report["goals"]
    assert isinstance(goals, dict)
    for name, goal in goals.items():
        verdict = "met" if goal["met"] else "NOT met"
        print(f"goal {name} <= {goal['goal_ms']} ms: {verdict} ({goal['median_ms']:.3f} ms)")
    print(f"operations per message (Table 4 notation): {report['op_counts_per_message']}")
    flows = report["flows"]
    assert isinstance(flows, dict)
    for name, row in flows.items():
        print(f"flow {name}: {row['messages']} messages, {row['measured_ms']:.3f} ms measured vs "
              f"{row['primitives_ms']:.3f} ms of primitives = {row['ratio']:.2f}x "
              f"(goal <= {report['flow_ratio_goal']}x: {'met' if row['met'] else 'NOT met'})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--py-ecc-runs", type=int, default=3)
    parser.add_argument("--keygen-runs", type=int, default=5)
    parser.add_argument("--bits", type=int, default=paillier.MODULUS_BITS_DEFAULT)
    parser.add_argument("--message-bytes", type=int, default=1024)
    args = parser.parse_args(argv)
    if min(args.runs, args.py_ecc_runs, args.keygen_runs) < 1:
        parser.error("run counts must be at least 1")
    report = run(args.runs, args.py_ecc_runs, args.keygen_runs, args.bits, args.message_bytes)
    print_table(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
