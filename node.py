#!/usr/bin/env python3
"""gridchain node and tools. `python node.py VERB --help` documents every verb.

Node:     init, start, cluster, verify
Client:   status, keys, send, call, receipt, block, proof
Jobs:     demo, bench, faults (when present)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli import commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="node.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    commands.register(verbs)
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
