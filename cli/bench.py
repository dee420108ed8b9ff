"""`node.py bench`: the load benchmark of bench/load.py (a fresh local cluster, or --rpc)."""

from __future__ import annotations

import argparse

from bench import load


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    help_text = ("Load benchmark: sign M transactions, send them over JSON-RPC batches to the nodes, "
                 "wait until they are final; write tps and latency percentiles.")
    parser = verbs.add_parser("bench", help=help_text, description=help_text)
    load.add_arguments(parser)
    parser.set_defaults(run=load.main_args)
