"""The unicast channel between diagnosis agents (docs/diagnosis.md "Channel").

Transport: each agent serves `POST /sealed` on a loopback address (aiohttp; `consortium
init` gives each party one of its own in 127.0.0.0/8, and its outgoing connections leave
from it, so each party is its own client to the nodes and to the other inboxes); the body is one
`SealedMessage` encoding, nothing else. Security does not come from the transport:
confidentiality is the receiver's Paillier key (hybrid encryption), authenticity and
integrity the sender's BLS signature checked against the key the registry holds for the
sender (read through a verified state proof), freshness the timestamp T and the replay
cache of the receiver's `Opener`. The reply tells the sender whether the receiver accepted
the message (200 with its hash), why it refused it (400 with the reason: a refusal is
visible to the sender and counted by the receiver), or that the message is authentic, held
in the receiver's durable inbox and not yet decided (202): the receiver answers once the
checks it can make without the network are done and decides what needs proven chain state
after, so a slow proof never outlasts the sender's wait. The sender learns the verdict by
posting the same bytes again, which the receiver recognises by their hash (before the
freshness check: a copy held, then decided, is answered whatever its age); a new seal of
a step already accepted is `step_repeated`, with the hash of the copy the receiver holds.

The plaintext inside every sealed message is a `Payload`: canonical JSON naming the DSC
request, the step label of `diagnosis.protocol` and the kind of message, and its body.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from diagnosis.errors import DiagnosisError, MessageRejected, RejectReason
from diagnosis.message import SEALED_MESSAGE_BYTES_MAX, SealedMessage
from diagnosis.protocol import MESSAGES
from diagnosis.store import PENDING, Verdict

PAYLOAD_BYTES_MAX = 64 << 10
SEND_TIMEOUT_S = 20
# a receiver waits this long for its verdict before answering 202: well inside the
# sender's SEND_TIMEOUT_S, however late a loaded loop wakes
ANSWER_WAIT_S = 5.0
# a stopping inbox drops its connections this soon (aiohttp waits 60 s for them by default):
# what it accepted is in the agent's store, and a sender left without an answer posts again
# to the endpoint the agent's next life publishes (a connection held open instead kept a
# sender waiting out its SEND_TIMEOUT_S)
INBOX_SHUTDOWN_S = 0.5
KINDS = tuple(m.kind for m in MESSAGES)
ACCEPTED = "accepted"  # a Verdict's word for a message the receiver acts on
STEP_LABEL_CHARS_MAX = 16


def is_loopback(host: str) -> bool:
    """An address of this host's loopback (127.0.0.0/8 or ::1): the only ones agents listen
    on here; anything else would expose an inbox beyond the machine."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BadPayload(DiagnosisError):
    """A plaintext that is not a well-formed diagnosis payload."""


class RemoteRejection(DiagnosisError):
    """The receiver refused the message; `reason` is its RejectReason or application code,
    `held` (step_repeated) the hash of the copy it accepted before."""

    def __init__(self, reason: str, detail: str = "", held: bytes = b"") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.held = held


class DeliveryPending(DiagnosisError):
    """The receiver holds the message and has not decided yet: post the same bytes again."""


@dataclass(frozen=True)
class Payload:
    request_id: int
    step: str  # label of diagnosis.protocol, e.g. "2" or "6.4"
    kind: str
    body: dict[str, Any]

    def to_bytes(self) -> bytes:
        assert self.kind in KINDS, self.kind
        data = json.dumps({"request": self.request_id, "step": self.step, "kind": self.kind, "body": self.body},
                          sort_keys=True, separators=(",", ":")).encode()
        assert len(data) <= PAYLOAD_BYTES_MAX
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> Payload:
        if len(data) > PAYLOAD_BYTES_MAX:
            raise BadPayload(f"{len(data)} bytes exceeds {PAYLOAD_BYTES_MAX}")
        try:
            raw = json.loads(data)
            payload = cls(int(raw["request"]), str(raw["step"]), str(raw["kind"]), dict(raw["body"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise BadPayload(f"not a diagnosis payload: {exc}") from exc
        if len(payload.step) > STEP_LABEL_CHARS_MAX:
            raise BadPayload(f"step label of {len(payload.step)} characters")
        if payload.kind not in KINDS:
            raise BadPayload(f"unknown kind {payload.kind!r}")
        return payload


Handler = Callable[[bytes], Awaitable[tuple[SealedMessage, Verdict]]]


class Inbox:
    """The agent's listening side: one route, bounded body, the handler decides."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        assert is_loopback(host), "loopback only"
        self._handler = handler
        self._host = host
        self._port = port  # 0: any free port (in-process agents); a process agent's config names one
        self._runner: web.AppRunner | None = None
        self._routes: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = []
        self.url = ""

    def add_route(self, method: str, path: str,
                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
        """More routes on the same server (a process agent's /health, /metrics, /fail)."""
        self._routes.append((method, path, handler))

    async def start(self) -> str:
        app = web.Application(client_max_size=SEALED_MESSAGE_BYTES_MAX)
        app.router.add_post("/sealed", self._post)
        for method, path, handler in self._routes:
            app.router.add_route(method, path, handler)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=INBOX_SHUTDOWN_S)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self._host}:{port}/sealed"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _post(self, request: web.Request) -> web.Response:
        data = await request.read()
        try:
            message, verdict = await self._handler(data)
        except MessageRejected as exc:
            return web.json_response({"rejected": str(exc.reason), "detail": exc.detail}, status=400)
        except RemoteRejection as exc:
            return web.json_response({"rejected": exc.reason, "detail": exc.detail}, status=400)
        if verdict.verdict == PENDING:
            return web.json_response({"pending": "0x" + message.hash.hex()}, status=202)
        if verdict.verdict != ACCEPTED:
            return web.json_response({"rejected": verdict.verdict, "detail": verdict.detail,
                                      **({"held": "0x" + verdict.held.hex()} if verdict.held else {})}, status=400)
        return web.json_response({"accepted": "0x" + message.hash.hex()})


class Courier:
    """The sending side: POST one sealed message, report acceptance or the refusal.
    Connections leave from `local_host` when set (the party's own address)."""

    def __init__(self, local_host: str | None = None) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.local_host = local_host

    async def deliver(self, url: str, data: bytes) -> str:
        """One POST: the accepted hash; RemoteRejection (refused), DeliveryPending (202),
        TimeoutError (no answer in SEND_TIMEOUT_S)."""
        if self._session is None:
            connector = aiohttp.TCPConnector(local_addr=(self.local_host, 0)) if self.local_host else None
            self._session = aiohttp.ClientSession(connector=connector,
                                                  timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT_S))
        async with self._session.post(url, data=data) as response:
            reply = await response.json(content_type=None)
        if response.status == 202:
            raise DeliveryPending(str(reply.get("pending", "")))
        if response.status != 200:
            held = str(reply.get("held", ""))
            raise RemoteRejection(str(reply.get("rejected", response.status)), str(reply.get("detail", "")),
                                  bytes.fromhex(held[2:]) if held.startswith("0x") else b"")
        return str(reply["accepted"])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


__all__ = ["ACCEPTED", "BadPayload", "Courier", "DeliveryPending", "Inbox", "is_loopback", "Payload", "RejectReason",
           "RemoteRejection"]
