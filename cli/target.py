"""Which node a client verb talks to: `--rpc URL` (repeatable), else `--cluster DIR`, else
the GRIDCHAIN_RPC environment variable (comma-separated URLs), else the cluster.json of the
nearest cluster directory (the current one, its var/cluster, or the same up the tree), else
http://127.0.0.1:8545. So the README's commands work on whatever base port the cluster uses."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cli.errors import UserError

ENV_RPC = "GRIDCHAIN_RPC"
ENV_TOKEN = "GRIDCHAIN_RPC_TOKEN"  # bearer token for a node under [rpc] public_auth
ENV_CA = "GRIDCHAIN_RPC_CA"  # CA certificate of an https node
DEFAULT_RPC = "http://127.0.0.1:8545"
MANIFEST = "cluster.json"
NEAREST = (Path("."), Path("var/cluster"))  # where, in a directory and its parents, a cluster is looked for


@dataclass(frozen=True)
class Target:
    urls: list[str]
    origin: str  # where the URLs came from, for error messages


def rpc_url(text: str) -> str:
    """argparse type of --rpc: http(s)://HOST:PORT and nothing more."""
    return check_url(text, "--rpc")


def check_url(text: str, where: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a node URL; write it as http://{text.split('/')[0]}"
                                         if "://" not in text else f"{text!r}: a node URL starts with http://")
    try:
        port = parts.port
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the port is not a number in 0..65535") from None
    if port is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give the RPC port, e.g. http://{parts.hostname}:8545")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(f"{text!r}: a node URL has no path; use "
                                         f"{parts.scheme}://{parts.netloc}")
    return f"{parts.scheme}://{parts.netloc}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpc", action="append", type=rpc_url, metavar="URL",
                        help="node RPC URL, repeatable (failover); default: --cluster, then $GRIDCHAIN_RPC, "
                             f"then the nearest {MANIFEST} (./, ./var/cluster, or up the tree), then {DEFAULT_RPC}")
    parser.add_argument("--cluster", type=Path, metavar="DIR",
                        help=f"talk to the nodes of the cluster in DIR (its {MANIFEST})")
    parser.add_argument("--token", default=os.environ.get(ENV_TOKEN) or None,
                        help=f"bearer token for a node that wants one ([rpc] public_auth; default: ${ENV_TOKEN})")
    parser.add_argument("--ca-file", type=Path, default=os.environ.get(ENV_CA) or None, metavar="FILE",
                        help=f"CA certificate that signed an https node's certificate (default: ${ENV_CA})")


def resolve(args: argparse.Namespace, cwd: Path | None = None) -> Target:
    if args.rpc:
        return Target(list(args.rpc), "--rpc")
    if args.cluster is not None:
        manifest = args.cluster / MANIFEST
        if not manifest.exists():
            raise UserError(f"--cluster {args.cluster}: no {MANIFEST} there; start the cluster with "
                            f"`node.py cluster --dir {args.cluster}`")
        return Target(manifest_urls(manifest), str(manifest))
    env = os.environ.get(ENV_RPC, "").strip()
    if env:
        try:
            return Target([check_url(u.strip(), ENV_RPC) for u in env.split(",") if u.strip()], f"${ENV_RPC}")
        except argparse.ArgumentTypeError as exc:
            raise UserError(f"{ENV_RPC}: {exc}") from None
    manifest_path = nearest_manifest(cwd or Path.cwd())
    if manifest_path is not None:
        return Target(manifest_urls(manifest_path), str(manifest_path))
    return Target([DEFAULT_RPC], f"the default {DEFAULT_RPC} (no {MANIFEST} found)")


def nearest_manifest(start: Path) -> Path | None:
    for directory in (start.resolve(), *start.resolve().parents):
        for relative in NEAREST:
            candidate = directory / relative / MANIFEST
            if candidate.is_file():
                return candidate
    return None


def manifest_urls(path: Path) -> list[str]:
    try:
        nodes = json.loads(path.read_text())["nodes"]
        return [check_url(node["rpc"], str(path)) for node in nodes]
    except (OSError, ValueError, KeyError, TypeError, argparse.ArgumentTypeError) as exc:
        raise UserError(f"{path}: not a cluster manifest ({exc})") from None
