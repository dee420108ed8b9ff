"""The owner's phone app, served by the smartphone agent on its own loopback server
(`GET /app/`): the owner's devices and their state, notifications as they arrive, the
maintenance history with each record proven against a certified header, rating a service,
and a policy editor that publishes rules and shows when they fire (issue 17).

The keys stay with the agent: the page asks, the agent signs. The page talks only to its
own agent (no node, no other site): every `/app/api/` call carries the agent's app token
(`X-App-Token`, random, kept in its store), so neither another local user nor a page of
another site in the owner's browser can make the agent sign (a custom header is never sent
cross-site without a CORS grant, which the agent never gives). The token travels in the
URL's fragment (`/app/#token=...`), which browsers do not send to servers; the agent writes
that URL beside its store (`<state>.app-url`) and logs it at start.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from chain import BlockHeader
from client import TransactionFailed, from_hex
from client.contracts import Dsc, Policy
from contracts import records
from contracts.addresses import RECORDS
from crypto import Address
from diagnosis.agents import SmartphoneAgent
from diagnosis.ledger import TransactionRefused
from diagnosis.lightclient import UnprovenState
from diagnosis.services import PhoneService

log = logging.getLogger("gridchain.agent")
STATIC = Path(__file__).parent / "phone_app_static"
# The explorer's look and its DOM helpers, served as they are (one copy of each).
EXPLORER_STATIC = Path(__file__).parent.parent / "explorer" / "static"
SHARED = frozenset({"style.css", "dom.js"})
TOKEN_KEY = "app_token"
RULES_KEY = "owner_rules"  # the rules the owner published last: the service publishes these too
RECORDS_SHOWN_MAX = 20  # newest maintenance records per device, each proven
FEED_MAX = 200  # feed entries per answer
RULES_MAX = 16  # the policy contract's rules_max default; the contract has the last word
RATING_MAX = 100
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def app_url(state_path: Path) -> str | None:
    """The app URL (with its token) a smartphone agent with this store wrote at start, or
    None before it started (for `node.py demo --keep` and operators)."""
    path = url_file(state_path)
    return path.read_text().strip() if path.is_file() else None


def url_file(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".app-url")


class PhoneApp:
    def __init__(self, agent: SmartphoneAgent, service: PhoneService, state_path: Path) -> None:
        self.agent = agent
        self.service = service
        store = service.store
        token = store.get(TOKEN_KEY)
        if not isinstance(token, str):
            token = secrets.token_urlsafe(24)
            store.put(TOKEN_KEY, token)
        self.token = token
        self.url_file = url_file(state_path)
        default_rules = service.rules
        # After the owner publishes, the service's own publications (after each service)
        # carry the owner's rules, not the defaults.
        service.rules = lambda: store.get(RULES_KEY) or default_rules()

    def mount(self) -> None:
        inbox = self.agent.inbox
        inbox.add_route("GET", "/app/", self.page)
        inbox.add_route("GET", "/app/static/{name}", self.static)
        for method, path, handler in (("GET", "overview", self.overview), ("GET", "feed", self.feed),
                                      ("GET", "history", self.history), ("POST", "rate", self.rate),
                                      ("POST", "policy", self.publish)):
            inbox.add_route(method, "/app/api/" + path, self._guarded(handler))

    def started(self) -> str:
        """Once the inbox listens: the app's URL with its token, written beside the store."""
        url = self.agent.inbox.url.removesuffix("/sealed") + "/app/#token=" + self.token
        self.url_file.write_text(url + "\n")
        log.info("phone app at %s", url)
        return url

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not hmac.compare_digest(request.headers.get("X-App-Token", ""), self.token):
                return web.json_response({"error": "this app's token is needed (open the URL the agent printed)"},
                                         status=403)
            try:
                return await handler(request)
            except UnprovenState as exc:
                return web.json_response({"error": f"not proven: {exc}"}, status=502)

        return guarded

    # pages ------------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = (EXPLORER_STATIC if name in SHARED else STATIC) / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    # reads ------------------------------------------------------------------------------
    async def devices(self) -> list[Address]:
        found = await self.agent.ledger.view("registry", "devices_of", [self.agent.address])
        return [from_hex(d) if isinstance(d, str) else bytes(d) for d in found]

    async def overview(self, request: web.Request) -> web.StreamResponse:
        devices = []
        for device in await self.devices():
            record, header = await self.agent.directory.device(device)
            effective = await self.agent.ledger.view("policy", "effective", [device])
            policy = await self.agent.ledger.view("policy", "policy", [device])
            devices.append({
                "address": _hex(device), "proven": _proven(header),
                "deviceType": record.device_type if record else None,
                "vendor": _hex(record.vendor) if record else None,
                "warrantyEndS": record.warranty_end_s if record else None,
                "inWarranty": record is not None and header.timestamp_ms // 1000 <= record.warranty_end_s,
                "mode": effective[0], "limits": effective[1], "policyVersion": effective[2],
                "rules": policy[2] if policy else []})
        return web.json_response({"phone": _hex(self.agent.address), "name": self.agent.name, "devices": devices,
                                  "rules": self.service.rules()})

    async def feed(self, request: web.Request) -> web.StreamResponse:
        """What happened to the owner's devices, oldest first, from the cursors given: chain
        events its subscriptions delivered (DSC events of their requests, policy
        executions) and the sealed messages its devices sent it."""
        after_event, after_message = _int(request, "events"), _int(request, "messages")
        mine = {_hex(d) for d in await self.devices()}
        requests = self._requests_of(mine)
        events = self.agent.notifications
        entries = []
        for position in range(after_event, len(events)):
            event = events[position]
            fields = event.get("fields", {})
            if fields.get("device") in mine or fields.get("request") in requests:
                entries.append({"source": "chain", "name": event["name"], "fields": fields,
                                "block": event.get("blockNumber"), "tx": event.get("transactionHash")})
        for rowid, kind, request_id, peer, at_ms in self.service.store.received_after(after_message, FEED_MAX):
            body = self.service.store.request(request_id).get("inbox", {}).get(kind, {})
            entries.append({"source": "message", "name": kind, "request": request_id, "from": peer, "atMs": at_ms,
                            "fields": _public(body), "id": rowid})
            after_message = max(after_message, rowid)
        return web.json_response({"entries": entries[-FEED_MAX:], "events": len(events), "messages": after_message})

    def _requests_of(self, devices: set[str]) -> set[int]:
        return {e["fields"]["request"] for e in self.agent.notifications
                if e.get("name") == "RequestOpened" and e["fields"].get("device") in devices}

    async def history(self, request: web.Request) -> web.StreamResponse:
        """Each device's newest maintenance records, every value read by a state proof
        checked against a certified header (the light client: Merkle path, commit
        certificate of the view's group, finality)."""
        out = []
        for device in await self.devices():
            count = await self.agent.ledger.storage(RECORDS, records.count_key(records.BY_DEVICE, device))
            total = count.value if isinstance(count.value, int) else 0
            rows = []
            for position in range(max(0, total - RECORDS_SHOWN_MAX), total):
                index = await self.agent.ledger.storage(RECORDS, records.index_key(records.BY_DEVICE, device, position))
                assert isinstance(index.value, int), "a counted position holds a request id"
                proven = await self.agent.ledger.storage(RECORDS, records.record_key(index.value))
                value = proven.value
                assert isinstance(value, list), "an indexed request has its record"
                rows.append({"request": value[0], "node": _hex(value[2]), "deviceType": value[3], "price": value[4],
                             "mode": value[5], "serviceHash": _hex(value[6]), "diagnosisTimeS": value[7],
                             "ratingByRequester": value[8], "ratingByNode": value[9], "proven": _proven(proven.header)})
            out.append({"device": _hex(device), "count": total, "records": list(reversed(rows)),
                        "countProven": _proven(count.header)})
        return web.json_response({"devices": out})

    # actions (the agent signs) ----------------------------------------------------------
    async def rate(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        request_id, rating = body.get("request"), body.get("rating")
        if not isinstance(request_id, int) or not isinstance(rating, int) or isinstance(rating, bool) \
                or not 0 <= rating <= RATING_MAX:
            return web.json_response({"error": f"request is an id and rating 0-{RATING_MAX}"}, status=400)
        return await self._send(Dsc.rate(request_id, rating))

    async def publish(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        device, rules = body.get("device", ""), body.get("rules")
        if device not in {_hex(d) for d in await self.devices()}:
            return web.json_response({"error": "not one of this smartphone's devices"}, status=400)
        if not isinstance(rules, list) or not 0 < len(rules) <= RULES_MAX:
            return web.json_response({"error": f"1 to {RULES_MAX} rules"}, status=400)
        try:
            typed = [Policy.rule(str(r[0]), str(r[1]), str(r[2]), int(r[3]), str(r[4]), str(r[5]), int(r[6]))
                     for r in rules]
        except (TypeError, ValueError, IndexError) as exc:
            return web.json_response({"error": f"a rule is [trigger, metric, op, threshold, action, target, "
                                               f"amount]: {exc}"}, status=400)
        answer = await self._send(Policy.publish(from_hex(device), typed))
        if answer.status == 200:
            self.service.store.put(RULES_KEY, typed)
        return answer

    async def _send(self, call: Any) -> web.Response:
        try:
            receipt = await self.agent.tx(call, "")
        except TransactionFailed as exc:  # the contract refused
            return web.json_response({"error": exc.receipt.error or "failed"}, status=409)
        except TransactionRefused as exc:  # the node's mempool refused (its reason)
            return web.json_response({"error": str(exc)}, status=409)
        return web.json_response({"tx": receipt.tx, "block": receipt.block_number,
                                  "events": receipt.to_json()["events"]})


def _proven(header: BlockHeader) -> dict[str, Any]:
    return {"block": header.number, "hash": _hex(header.hash), "timestampMs": header.timestamp_ms}


def _public(body: Any) -> dict[str, Any]:
    """What the page shows of a sealed message's body: its plain fields (the agent decrypted
    it; the owner's own app may show it)."""
    return {k: v for k, v in body.items() if isinstance(v, str | int | float | bool)} if isinstance(body, dict) else {}


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex() if isinstance(value, bytes | bytearray) else str(value)


def _int(request: web.Request, name: str) -> int:
    value = request.query.get(name, "0")
    return int(value) if value.isdigit() else 0


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
