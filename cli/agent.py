"""`node.py agent ROLE --config FILE`: run one party of the consortium as its own process
(diagnosis/process.py); `node.py agent device --config FILE fail --kind K --detail D`
reports a fault to that running device agent. `node.py consortium init DIR` writes a
cluster whose genesis admits the founding vendors and suppliers and funds every party,
and one agent config per party (diagnosis/agentconfig.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import aiohttp

from cli.errors import UserError

ROLES = ("device", "vendor", "supplier", "smartphone", "crew")


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser("agent", help="Run one consortium party (device, vendor, supplier, smartphone, crew).",
                              description=__doc__)
    parser.add_argument("role", choices=ROLES, help="which party this process is")
    parser.add_argument("--config", type=Path, required=True, help="the party's config (consortium init writes them)")
    actions = parser.add_subparsers(dest="action")
    fail = actions.add_parser("fail", help="report a fault to the running device agent")
    fail.add_argument("--kind", required=True, help="fault kind to report")
    fail.add_argument("--detail", default="", help="free-text detail of the fault")
    parser.set_defaults(run=run_agent)

    parser = verbs.add_parser("consortium", help="Write a cluster and one agent config per party.",
                              description=__doc__)
    parser.add_argument("action", choices=["init"], help="init: write the directory")
    parser.add_argument("dir", type=Path, help="directory to write (must not exist yet)")
    parser.add_argument("--vendors", type=int, default=2, help="founding vendors")
    parser.add_argument("--suppliers", type=int, default=3, help="non-original suppliers")
    parser.add_argument("--devices", type=int, default=4, help="devices")
    parser.add_argument("--nodes", type=int, default=3, help="bookkeepers (2t+1)")
    parser.add_argument("--base-port", type=int, default=0, help="RPC base port (default: a free range)")
    parser.set_defaults(run=run_consortium)


def run_agent(args: argparse.Namespace) -> int:
    from diagnosis.agentconfig import AgentConfig, BadAgentConfig
    from diagnosis.process import run_agent as serve

    try:
        config = AgentConfig.load(args.config)
    except BadAgentConfig as exc:
        raise UserError(str(exc)) from exc
    if config.role != args.role:
        raise UserError(f"{args.config} configures a {config.role}, not a {args.role}")
    if args.action == "fail":
        if args.role != "device":
            raise UserError("only a device reports faults")
        print(json.dumps(asyncio.run(_fail(config.inbox_host, config.inbox_port, args.kind, args.detail))))
        return 0
    asyncio.run(serve(config))
    return 0


async def _fail(host: str, port: int, kind: str, detail: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as session, \
            session.post(f"http://{host}:{port}/fail", json={"kind": kind, "detail": detail}) as response:
        reply: dict[str, object] = await response.json()
    if response.status != 200:
        raise UserError(f"the device agent refused: {reply.get('error', response.status)}", status=1)
    return reply


def run_consortium(args: argparse.Namespace) -> int:
    from diagnosis.agentconfig import BadAgentConfig, consortium_init
    from diagnosis.demo import demo_contract_params

    if args.vendors < 1 or args.devices < 1 or args.suppliers < 0:
        raise UserError("at least one vendor and one device")
    if (args.dir / "cluster" / "genesis.toml").exists():
        raise UserError(f"{args.dir} already holds a consortium")
    params = demo_contract_params()
    try:
        paths = consortium_init(args.dir, vendors=args.vendors, suppliers=args.suppliers, devices=args.devices,
                                nodes=args.nodes, base_port=args.base_port, contracts=params)
    except BadAgentConfig as exc:  # e.g. more parties than inbox ports in the cluster's span
        raise UserError(f"consortium init: {exc}") from exc
    print(f"cluster in {args.dir / 'cluster'} (start it: node.py cluster --dir {args.dir / 'cluster'}), then:")
    for path in paths:
        role = path.stem.split("-")[0].replace("phone", "smartphone")
        print(f"  node.py agent {role} --config {path}")
    return 0
