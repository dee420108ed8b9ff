#!/usr/bin/env python3
"""gridchain node and tools. `python node.py VERB --help` documents every verb.

Node:     init, start, cluster, node (stop / kill / restart one node of a cluster), verify
Client:   status, keys, contracts, send, call, receipt, block, proof
Jobs:     demo, bench, faults (when present)

Client verbs find their node with --rpc URL, --cluster DIR, $GRIDCHAIN_RPC, or the nearest
cluster.json (./, ./var/cluster, or up the directory tree).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; every option's help ends with its default (unless it has none)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        documented = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if not documented and "%(default)" not in text and (action.option_strings or action.nargs in ("?", "*")):
            text += " (default: %(default)s)"
        return text


class VerbParser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def main(argv: list[str] | None = None) -> int:
    from cli import commands
    from cli.errors import EXPECTED, one_line, status_of

    parser = argparse.ArgumentParser(prog="node.py", description=__doc__, formatter_class=HelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=VerbParser)
    commands.register(verbs)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except EXPECTED as exc:  # the user's situation; a bug keeps its traceback
        print(f"node.py {args.verb}: {one_line(exc)}", file=sys.stderr)
        return status_of(exc)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
