"""One group process of bench.consortium: several parties of a consortium directory served
in one OS process, each exactly as `node.py agent` serves it (diagnosis.process.run_agents:
its own keys, ledger, light client, store, inbox with /health, /metrics, /events, /fail),
until SIGTERM; then how late this process's event loop woke, as JSON.

    python -m bench.consortium_group --lag-json OUT CONFIG...

Why groups (bench.consortium `--groups`): the issue's one process per party would be ~205
interpreters of ~80 MB each (16 GB) on a 2-core box; all parties in the benchmark's own
process (`--groups 0`) share one event loop and one process's share of a loaded machine's
CPU, and on the shared box its loop woke up to minutes late (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from bench.consortium import lag_summary, loop_lag
from diagnosis.agentconfig import AgentConfig
from diagnosis.process import run_agents


async def _serve(configs: list[AgentConfig], lag_json: Path) -> None:
    samples: list[float] = []
    sampler = asyncio.create_task(loop_lag(samples))
    try:
        await run_agents(configs)
    finally:
        sampler.cancel()
        lag_json.write_text(json.dumps(lag_summary(samples)) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.consortium_group", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lag-json", type=Path, required=True, help="write the loop lag here on exit")
    parser.add_argument("configs", type=Path, nargs="+", help="agent configs (consortium init's agents/NAME.toml)")
    args = parser.parse_args(argv)
    asyncio.run(_serve([AgentConfig.load(path) for path in args.configs], args.lag_json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
