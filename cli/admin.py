"""Operator verbs: `node.py admin info|peers|log-level [LEVEL]` on a node's operator
listener, and `node.py rpc-token`, which mints a bearer token from a node's secret.

Which node, with which credentials: `--config node.toml` (on the node's host: its operator
address and token secret from the config), else `--operator URL` with `--secret FILE` or
`--token`, else node `--node I` of the cluster manifest (`--cluster DIR` or the nearest
cluster.json). A token minted here lives `--ttl` seconds (default 5 minutes) and permits
only the admin methods."""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli import target
from cli.errors import EXIT_FAILED, UserError
from client import GridClient, NodeUnavailable
from rpc.auth import SecretFileError, issue_token, load_secret
from rpc.config import LOOPBACK
from runtime.cluster import http_url
from runtime.config import NodeConfig

ADMIN_TOKEN_TTL_S = 300  # one verb's token: long enough for the call, useless soon after
ADMIN_PERMISSIONS = ["admin:*"]
WILDCARD_HOSTS = ("0.0.0.0", "::")  # a bind address, not one to dial: the host's loopback is


@dataclass(frozen=True)
class Operator:
    url: str
    token: str
    ca_file: Path | None
    origin: str  # where the address and credentials came from, for error messages


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "Operator calls on a node's operator listener (bearer token from the node's secret)."
    p = verbs.add_parser("admin", help=text, description=text)
    p.set_defaults(run=cmd_admin)
    p.add_argument("action", choices=["info", "peers", "log-level"],
                   help="info: admin_nodeInfo; peers: admin_peers; log-level [LEVEL]: show or set it")
    p.add_argument("level", nargs="?", help="with log-level: debug, info, warning or error")
    _add_operator_arguments(p)

    text = "Mint a bearer token (JWT HS256) from a node's RPC token secret, for curl or other clients."
    p = verbs.add_parser("rpc-token", help=text, description=text)
    p.set_defaults(run=cmd_rpc_token)
    p.add_argument("--secret", type=Path, help="the token secret file ([rpc] jwt_secret_file)")
    p.add_argument("--config", type=Path, help="or the node's node.toml (its jwt_secret_file)")
    p.add_argument("--permissions", default="admin:*",
                   help='comma-separated "module:method" patterns, e.g. "admin:peers,chain:*" or "*:*"')
    p.add_argument("--ttl", type=int, default=3600, help="seconds the token is valid")
    p.add_argument("--subject", default="operator", help="who the token is for (the node logs nothing else)")


def _add_operator_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="the node's node.toml, on its host: operator address and secret")
    p.add_argument("--operator", type=target.rpc_url, metavar="URL", help="the node's operator listener URL")
    p.add_argument("--secret", type=Path, help="with --operator: the node's token secret file")
    p.add_argument("--token", help="with --operator: a token minted before (node.py rpc-token)")
    p.add_argument("--cluster", type=Path, metavar="DIR", help=f"a cluster directory (its {target.MANIFEST})")
    p.add_argument("--node", type=int, default=0, help="with a cluster manifest: the node index")
    p.add_argument("--ca-file", type=Path, help="CA certificate of an https node")


def _secret(path: Path) -> bytes:
    try:
        return load_secret(path)
    except SecretFileError as exc:
        raise UserError(str(exc), EXIT_FAILED) from None


def _admin_token(path: Path) -> str:
    return issue_token(_secret(path), ADMIN_PERMISSIONS, ADMIN_TOKEN_TTL_S, subject="node.py admin")


def resolve_operator(args: argparse.Namespace) -> Operator:
    if args.config is not None:
        config = NodeConfig.load(args.config)
        host = LOOPBACK if config.rpc.operator_host in WILDCARD_HOSTS else config.rpc.operator_host
        url = http_url(host, config.rpc.operator_port)
        if config.rpc.tls_cert_file is not None:
            url = url.replace("http://", "https://", 1)
        return Operator(url, _admin_token(config.rpc.jwt_secret_file), args.ca_file, str(args.config))
    if args.operator is not None:
        if args.token:
            return Operator(args.operator, args.token, args.ca_file, "--operator")
        if args.secret is None:
            raise UserError("--operator needs --secret FILE (the node's jwt_secret_file) or --token")
        return Operator(args.operator, _admin_token(args.secret), args.ca_file, "--operator")
    manifest = args.cluster / target.MANIFEST if args.cluster is not None else target.nearest_manifest(Path.cwd())
    if manifest is None or not manifest.is_file():
        raise UserError("which node? give --config node.toml (on the node's host), --operator URL --secret FILE, "
                        f"or --cluster DIR (a directory holding {target.MANIFEST})")
    try:
        nodes = json.loads(manifest.read_text())["nodes"]
        node = nodes[args.node]
        return Operator(node["operator"], _admin_token(Path(node["rpc_secret"])), args.ca_file, str(manifest))
    except IndexError:
        raise UserError(f"--node {args.node}: {manifest} lists nodes 0..{len(nodes) - 1}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{manifest}: no operator address for node {args.node} ({exc}); a cluster started "
                        "before operator listeners existed: start it again") from None


def cmd_admin(args: argparse.Namespace) -> int:
    if args.level is not None and args.action != "log-level":
        raise UserError(f"{args.action} takes no LEVEL")
    operator = resolve_operator(args)
    call: tuple[Any, ...] = {"info": ("admin_nodeInfo",), "peers": ("admin_peers",),
                             "log-level": ("admin_setLogLevel", args.level) if args.level else ("admin_logLevel",)
                             }[args.action]

    async def run() -> Any:
        async with GridClient(operator.url, token=operator.token, ca_file=operator.ca_file) as client:
            return await client.rpc.call(*call)

    try:
        result = asyncio.run(run())
    except NodeUnavailable as exc:
        raise UserError(f"{exc} (operator listener from {operator.origin}; it listens on the node's own host only)",
                        EXIT_FAILED) from None
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def cmd_rpc_token(args: argparse.Namespace) -> int:
    if (args.secret is None) == (args.config is None):
        raise UserError("give --secret FILE or --config node.toml")
    path = args.secret if args.secret is not None else NodeConfig.load(args.config).rpc.jwt_secret_file
    permissions = [p.strip() for p in args.permissions.split(",") if p.strip()]
    try:
        print(issue_token(_secret(path), permissions, args.ttl, subject=args.subject))
    except ValueError as exc:
        raise UserError(f"--permissions/--ttl: {exc}") from None
    return 0
