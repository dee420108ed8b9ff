"""The readable summary of one scenario's report entry (the JSON holds everything)."""

from __future__ import annotations

from typing import Any


def summary(entry: dict[str, Any]) -> str:
    lines = [f"== {entry['name']}  (n={entry.get('n')}, t={entry.get('t')}, seed {entry.get('seed')}, "
             f"{entry.get('wall_s')} s)  {'PASS' if entry.get('passed') else 'FAIL'}",
             f"   {entry.get('summary', '')}"]
    if "error" in entry:
        lines.append(f"   harness error: {entry['error']}")
    tx = entry.get("transactions")
    if tx:
        acked = entry.get("acknowledged", {})
        if "rate_load" in entry:
            load = entry["rate_load"]
            lines.append(f"   open-loop load: {load['offered_tx_s']:g} tx/s offered, {load['acknowledged']} "
                         f"acknowledged, send lag up to {load['send_lag_max_s']} s")
        lines.append(f"   transactions: {tx['invoked']} invoked, {tx['ok']} ok, {tx['fail']} fail, "
                     f"{tx['unknown']} unknown ({entry.get('unknown_committed', 0)} of those final); "
                     f"acknowledged final {acked.get('found_final')} of {acked.get('of')}, "
                     f"lost {entry.get('lost')}, duplicated {entry.get('duplicated')}, forks {entry.get('forks')}")
    if entry.get("final_heights"):
        lines.append("   final heights: " + ", ".join(f"{k} {v}" for k, v in entry["final_heights"].items()))
    for rec in entry.get("recovery", []):
        lines.append(f"   heal at {rec['heal_t']} s: first final block after {rec['first_final_block_s']} s, "
                     f"converged after {rec['convergence_s']} s")
    if "longest_stall_s" in entry:
        lines.append(f"   longest stall under load {entry['longest_stall_s']} s "
                     f"(from t={entry['longest_stall_from_t']})")
    for window in ("latency_quiet", "latency_faulty"):
        lat = entry.get(window)
        if lat and lat["count"]:
            lines.append(f"   commit latency {window.split('_')[1]}: p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms "
                         f"({lat['count']} txs)")
    for key in ("double_spend", "crash_loop", "fuzz", "exhaustion"):
        if key in entry:
            lines.append(f"   {key}: {entry[key]}")
    if entry.get("timeline"):
        faults = [e for e in entry["timeline"] if e["kind"] != "note"]
        lines.append(f"   timeline: {len(faults)} fault/heal events" + "".join(
            f"\n     t={e['t']:7.2f} {e['kind']:5} {e['action']} "
            + " ".join(f"{k}={v}" for k, v in e.items() if k not in ("t", "kind", "action"))
            for e in faults[:12]) + ("\n     ..." if len(faults) > 12 else ""))
    for name, inv in entry.get("invariants", {}).items():
        lines.append(f"   [{'ok' if inv['passed'] else 'FAIL':4}] {name}: {inv['detail'][:200]}")
    return "\n".join(lines)
