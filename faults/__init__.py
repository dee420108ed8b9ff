"""Fault injection on real node processes: per-link proxies, process faults, Byzantine
modes, a Jepsen-style workload and checker, and RPC/p2p fuzzing (docs/faults.md).

    from faults import SCENARIOS, run_scenario
    entry = run_scenario("kill-primary", seed=1, duration=20)
"""

from faults.report import summary
from faults.runner import run_scenario
from faults.scenarios import SCENARIOS

__all__ = ["SCENARIOS", "run_scenario", "summary"]
