"""What XFT fault detection (§4.4, consensus/detection.py) costs per view change.

- simulated (consensus/simulation.py, virtual time, every message through the real codec
  and real signatures): the primary crashes under load; per view change, the consensus
  messages sent by type and their bytes, the virtual milliseconds from the crash to the
  first final block of a later view, and the CPU time of the detection itself (thread
  clock), with `fault_detection` on and off, for t = 1 and t = 2;
- real processes (bench.consensus's view-change trial: SIGKILL of the primary, one
  transfer, first final block of a higher view seen by a survivor), on and off.

    python -m bench.detection --json OUT [--trials N] [--no-processes]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack

import consensus.viewchange as viewchange
from bench.consensus import view_change
from bench.harness import machine
from bench.load import say
from consensus import ConsensusConfig
from consensus.simulation import Simulation

SIM_SEEDS = 5  # seeded runs per configuration (each one view change or two)
SIM_STEP_MS = 400
TRIALS_MAX = 10


def _simulated(t: int, detection: bool, seed: int) -> dict[str, Any]:
    sim = Simulation(t=t, seed=seed, config=ConsensusConfig(t=t, fault_detection=detection))
    for _ in range(4):
        sim.submit(4)
        sim.run_until(sim.now + SIM_STEP_MS)
    primary = sim.nodes[0].replica.status.primary
    view = sim.nodes[0].replica.view
    before, sent_bytes = Counter(sim.sent), Counter[str]()
    transmit = sim._transmit

    def counting(src: int, dst: int, payload: tuple[str, dict[str, Any]]) -> None:
        sent_bytes[payload[1].get("type", payload[0])] += len(msgpack.packb(payload[1], use_bin_type=True))
        transmit(src, dst, payload)
    sim._transmit = counting  # type: ignore[method-assign]
    cpu = [0.0]
    detect = viewchange.ViewChanging._detect_and_confirm

    def timed(self: Any, merged: Any, actions: Any) -> Any:
        started = time.thread_time()
        try:
            return detect(self, merged, actions)
        finally:
            cpu[0] += time.thread_time() - started
    viewchange.ViewChanging._detect_and_confirm = timed  # type: ignore[method-assign]
    try:
        sim.crash(primary)
        crashed = sim.now
        recovered = None
        survivors = [node for node in sim.nodes if node.index != primary]
        while sim.now - crashed < 60_000 and recovered is None:
            sim.submit(2)
            sim.run_until(sim.now + 10)
            for node in survivors:
                head = node.ledger.final_block(node.ledger.final_height())
                if head is not None and head.certificate and head.certificate[0].view > view:
                    recovered = sim.now - crashed
                    break
    finally:
        viewchange.ViewChanging._detect_and_confirm = detect  # type: ignore[method-assign]
    sim.check_consistency()
    view_changes = max(node.replica.view for node in survivors) - view
    sent = {kind: count for kind, count in (Counter(sim.sent) - before).items()}
    return {"seed": seed, "view_changes": view_changes, "recovery_virtual_ms": recovered, "sent": sent,
            "bytes": dict(sent_bytes), "detection_cpu_ms": round(cpu[0] * 1000, 3)}


VIEW_CHANGE_TYPES = ("suspect", "view_change", "vc_final", "vc_confirm", "new_view", "fault")


def simulated(t: int, detection: bool) -> dict[str, Any]:
    runs = [_simulated(t, detection, seed) for seed in range(SIM_SEEDS)]
    changes = sum(run["view_changes"] for run in runs) or 1
    per_change = {kind: round(sum(run["sent"].get(kind, 0) for run in runs) / changes, 2)
                  for kind in VIEW_CHANGE_TYPES}
    bytes_per_change = {kind: round(sum(run["bytes"].get(kind, 0) for run in runs) / changes)
                        for kind in VIEW_CHANGE_TYPES}
    recoveries = sorted(run["recovery_virtual_ms"] for run in runs if run["recovery_virtual_ms"] is not None)
    return {"t": t, "fault_detection": detection, "runs": runs, "view_changes": changes,
            "messages_per_view_change": per_change, "bytes_per_view_change": bytes_per_change,
            "recovery_virtual_ms_median": recoveries[len(recoveries) // 2] if recoveries else None,
            "detection_cpu_ms_per_view_change": round(sum(r["detection_cpu_ms"] for r in runs) / changes, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=3,
                        help=f"real-process view changes per setting (<= {TRIALS_MAX})")
    parser.add_argument("--no-processes", action="store_true", help="the simulated figures only")
    args = parser.parse_args(argv)
    if not 1 <= args.trials <= TRIALS_MAX:
        parser.error(f"--trials {args.trials}: between 1 and {TRIALS_MAX}")
    result: dict[str, Any] = {"machine": machine(), "load_before": os.getloadavg()}
    result["simulated"] = [simulated(t, detection) for t in (1, 2) for detection in (True, False)]
    for entry in result["simulated"]:
        say(f"simulated t={entry['t']} detection={entry['fault_detection']}: "
            f"{entry['messages_per_view_change']} per view change, "
            f"recovery {entry['recovery_virtual_ms_median']} virtual ms")
    if not args.no_processes:
        result["processes"] = {}
        for detection in (True, False):
            say(f"real processes, fault_detection={detection}: {args.trials} primary kills ...")
            load = os.getloadavg()
            entry = view_change(3, args.trials, timeouts={"fault_detection": detection})
            result["processes"]["on" if detection else "off"] = {**entry, "load_before": load,
                                                                 "load_after": os.getloadavg()}
            say(f"  median {entry['seconds_median']} s (load {load[0]:.1f})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
