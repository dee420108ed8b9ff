"""Expected errors of the command line: what the user can fix gets one line on stderr and a
non-zero exit status; anything else is a bug and keeps its traceback."""

from __future__ import annotations

from chain import LedgerError
from client import ClientError, RpcCallError
from client.errors import BadCall, UnknownContract
from crypto import BadKey
from rpc import RpcConfigError
from runtime.config import ConfigError

EXIT_USAGE = 2  # argparse's status for a malformed command line
EXIT_FAILED = 1


class UserError(Exception):
    """A mistake in the command line or in the files it names; the message says how to fix it."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


# The exceptions that are the user's situation, not our bug: a file they gave, a node they
# named, a chain they pointed at.
EXPECTED = (UserError, ConfigError, RpcConfigError, LedgerError, ClientError, BadKey)


def one_line(exc: BaseException) -> str:
    if isinstance(exc, RpcCallError):
        detail = f" {exc.data}" if exc.data else ""
        return f"the node refused it: error {exc.code}: {exc.message}{detail}"
    return " ".join(str(exc).split())


def status_of(exc: BaseException) -> int:
    if isinstance(exc, UserError):
        return exc.status
    return EXIT_USAGE if isinstance(exc, BadCall | UnknownContract) else EXIT_FAILED
