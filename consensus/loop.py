"""The application's turn in a replica's loop: carry out the `Propose` or `Check` a replica
asked for on the ledger and hand the outcome back, before any other input (etcd raft's
Ready / Advance; CometBFT's PrepareProposal / ProcessProposal). The node and the simulator
both run their replica through `settle`, so the replica itself never calls the application
to build or execute a block, and the order holds: the block is built or executed before
the PREPARE, COMMIT, NEW-VIEW or Finalize that needs it, which come from the outcome.
"""

from __future__ import annotations

from collections.abc import Callable

from chain import LedgerError
from consensus.actions import Action, Check, Propose
from consensus.app import Application
from consensus.replica import Replica


def settle(replica: Replica, app: Application, actions: list[Action],
           now_ms: Callable[[], int], clock_ms: Callable[[], int]) -> list[Action]:
    """`actions` with each Propose and Check carried out on `app` and its outcome fed back
    to `replica` (whose answer may ask again): the actions left to carry out, in the
    replica's order. The application's work comes first; that is safe because an output
    holding a Propose or Check holds no Finalize (the replica asserts it), and nothing
    else is an input of the application."""
    left: list[Action] = []
    while True:
        asked: Propose | Check | None = None
        for action in actions:
            if isinstance(action, Propose | Check):
                asked = action
            else:
                left.append(action)
        if asked is None:
            return left
        try:
            if isinstance(asked, Propose):
                block = app.propose(asked.height, asked.view, asked.proposer, asked.clock_ms,
                                    asked.budget_ms)
            else:
                error = _checked(app, asked)
        except BaseException:
            replica.abandon()  # a bug below (the node's guard logs it): the replica goes on
            raise
        if isinstance(asked, Propose):
            actions = replica.on_proposal(block, now_ms(), clock_ms())
        else:
            actions = replica.on_checked(asked.block.hash, error, now_ms(), clock_ms())


def _checked(app: Application, check: Check) -> LedgerError | None:
    try:
        app.check(check.block)
    except LedgerError as exc:
        return exc
    return None
