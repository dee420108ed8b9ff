"""`node.py governance propose|vote|list|set`: bookkeeper set changes (contracts/governance.py,
docs/consensus.md "Governance").

A proposal or vote is a transaction signed here with --key: an administrator's key (the
cluster's DIR/admins/adminJ.key) or a bookkeeper's node key (DIR/nodeI/node.key), sent by
RPC governance_propose / governance_vote (client/contracts.py Governance.submit). A change is
accepted once a quorum of administrators and a majority of the current bookkeepers voted
for it, and takes effect at the accepting block + activation_distance.

    node.py governance propose add --node-key 0x.. --node-key 0x.. --t 2 --key DIR/admins/admin0.key
    node.py governance propose replace --node-key OLD --node-key NEW --key DIR/node1/node.key
    node.py governance vote 0 --key DIR/node0/node.key
    node.py governance list
    node.py governance set [--height H]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli import target
from cli.commands import load_key, print_json, run_client
from cli.errors import UserError
from client import GridClient, Receipt
from client.contracts import GOVERNANCE_KINDS, Governance
from crypto import KeyPair, keystore


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser("governance", help="Propose, vote on and list bookkeeper set changes.",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = actions.add_parser("propose", help="propose a set change (your vote counts at once)")
    p.add_argument("kind", choices=GOVERNANCE_KINDS, help="add or remove node keys, or replace [old, new]")
    p.add_argument("--node-key", action="append", required=True, metavar="KEY", dest="node_keys",
                   help="a node's Ed25519 public key (0x-hex) or its key file; repeat for several (replace: old, new)")
    p.add_argument("--t", type=int, help="t of the new set (n = 2t+1); default: unchanged")
    _signer(p)
    p.set_defaults(run=cmd_propose)

    p = actions.add_parser("vote", help="vote for a pending proposal")
    p.add_argument("id", type=int, help="the proposal id (governance list)")
    _signer(p)
    p.set_defaults(run=cmd_vote)

    p = actions.add_parser("list", help="pending proposals with their voters")
    target.add_arguments(p)
    p.set_defaults(run=cmd_list)

    p = actions.add_parser("set", help="the bookkeeper set by height (every epoch), or the set of one height")
    target.add_arguments(p)
    p.add_argument("--height", type=int, help="only the set that certifies this height")
    p.set_defaults(run=cmd_set)


def _signer(parser: argparse.ArgumentParser) -> None:
    target.add_arguments(parser)
    parser.add_argument("--key", type=Path, required=True,
                        help="the voter's key file: an administrator's or a bookkeeper's node.key")
    parser.add_argument("--passphrase-file", type=Path, help="its passphrase (a cluster's: DIR/passphrase)")


def node_key(text: str) -> bytes:
    """A node public key from 0x-hex, or from a key file (its public part: no passphrase)."""
    if not text.startswith("0x"):
        try:
            public = keystore.read_document(Path(text)).get("public", {})
        except (OSError, keystore.KeystoreError, AttributeError) as exc:
            raise UserError(f"--node-key {text}: not a key file ({exc})") from None
        text = "0x" + str(public.get("public_key", ""))
    try:
        key = bytes.fromhex(text[2:])
    except ValueError:
        key = b""
    if len(key) != 32:
        raise UserError(f"--node-key {text!r} is not 32 bytes of 0x-hex (64 hex digits)")
    return key


def cmd_propose(args: argparse.Namespace) -> int:
    key = load_key(args.key, "--key", args.passphrase_file)
    keys = [node_key(text) for text in args.node_keys]

    async def work(client: GridClient) -> int:
        t = args.t if args.t is not None else (await client.status())["t"]
        receipt = await Governance.submit(Governance.propose(args.kind, keys, t), client, key)
        _print_events(receipt)
        return 0
    return run_client(args, work)


def cmd_vote(args: argparse.Namespace) -> int:
    key: KeyPair = load_key(args.key, "--key", args.passphrase_file)

    async def work(client: GridClient) -> int:
        _print_events(await Governance.submit(Governance.vote(args.id), client, key))
        return 0
    return run_client(args, work)


def cmd_list(args: argparse.Namespace) -> int:
    async def work(client: GridClient) -> int:
        print_json(await client.rpc.call("governance_proposals"))
        return 0
    return run_client(args, work)


def cmd_set(args: argparse.Namespace) -> int:
    async def work(client: GridClient) -> int:
        if args.height is not None:
            print_json(await client.rpc.call("governance_set", args.height))
        else:
            print_json(await client.rpc.call("governance_epochs"))
        return 0
    return run_client(args, work)


def _print_events(receipt: Receipt) -> None:
    """The governance events of a receipt, one JSON line each (Proposed, Voted, Accepted)."""
    for event in receipt.to_json()["events"]:
        print(json.dumps({"event": event["name"], **event["fields"]}, sort_keys=True))
