"""Run a Python program under cProfile, timed by this process's CPU clock.

`python -m cProfile` times functions by the wall clock, so on a shared machine every
function looks as slow as the machine is busy, and time spent waiting for a core is
charged to whatever was running. time.process_time counts only this process's CPU, so
profiles from a loaded run still show where the work goes (issue 10's profiles):

    python -m bench.cpuprofile OUT.prof node.py start --config node.toml
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit("usage: python -m bench.cpuprofile OUT.prof SCRIPT [ARGS ...]")
    out, script = sys.argv[1], sys.argv[2]
    sys.argv = sys.argv[2:]
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        runpy.run_path(script, run_name="__main__")
    finally:  # a clean stop (SIGTERM, SystemExit) still writes the profile
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    main()
