"""`node.py explorer`: the explorer's pages beside a running node, for a node whose own
explorer is off or a machine that is not a node (explorer/standalone.py). Every node also
serves them itself at GET / on its RPC listener, but not under [rpc] public_auth: then run
this with `--token` (its pages themselves answer whoever reaches --host:--port)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from cli import target
from runtime.logs import configure_logging


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser("explorer", help="Serve the block explorer for a running node.",
                              description=__doc__)
    target.add_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="listen here")
    parser.add_argument("--port", type=int, default=8080, help="listen on this port")
    parser.add_argument("--index", type=Path, default=Path("var/explorer.sqlite"),
                        help="the SQLite index (rebuilt from the chain when missing or not this chain's)")
    parser.add_argument("--header-rpc", type=target.rpc_url, default="", metavar="URL",
                        help="another node whose headers the proof page checks proofs against")
    parser.add_argument("--no-follow", action="store_true",
                        help="serve the index as it is (an archived copy): read the chain for views only")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from explorer.standalone import serve

    configure_logging("info", "text")
    urls = target.resolve(args).urls

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(urls, args.index, args.host, args.port, args.header_rpc, not args.no_follow, stop,
                    args.token, args.ca_file)

    asyncio.run(main())
    return 0
