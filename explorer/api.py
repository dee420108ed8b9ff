"""The explorer's HTTP side: `GET /` (the single page, explorer/static/), its files under
/explorer/static/ and paginated JSON under /explorer/api/. Lists come from the index;
what holds at the head (a device's warranty, a member's keys and credit, a request's
escrow) is read from the chain by contract views at the time of the request.

`GET /explorer/api/header/N` answers any origin (CORS): a page served by one node checks a
Merkle proof against a header it fetches itself from another node, and a final header is
public, read-only data. Nothing else here answers another origin.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from client import ClientError, RpcCallError
from contracts.credit import parse_params as credit_params
from contracts.kmeans import nearest
from explorer.index import Index
from explorer.indexer import Indexer
from explorer.source import ChainSource, LocalSource
from vm import fixedpoint

if TYPE_CHECKING:
    from runtime.node import Node

log = logging.getLogger("gridchain.explorer")
STATIC = Path(__file__).parent / "static"
PAGE_DEFAULT = 25  # rows per page when the request names no limit
CONSENSUS_BLOCKS_MAX = 200  # blocks behind the consensus page's charts
METRICS_TIMEOUT_S = 5  # the node's /metrics, read for the consensus page
FIRST_CATCH_UP_WAIT_MS = 10_000  # a first visit waits this long at most for the index to be built
METRICS_BYTES_MAX = 1 << 20
# what the consensus page shows of the node's own /metrics (runtime/metrics.py), by sample name
NODE_METRICS = {"gridchain_view_changes_total": "viewChanges", "gridchain_suspects_total": "suspects",
                "gridchain_commit_latency_seconds_sum": "commitLatencySum",
                "gridchain_commit_latency_seconds_count": "commitLatencyCount",
                "gridchain_committed_transactions_total": "committedTransactions",
                "gridchain_loop_stall_max_seconds": "loopStallMaxS", "gridchain_peers": "peers",
                "gridchain_mempool_transactions": "mempool"}
HEX_32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
HEX_20 = re.compile(r"^0x[0-9a-fA-F]{40}$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MetricsReader = Callable[[], Awaitable[str | None]]  # the node's /metrics text, None when unavailable


def serve_in(node: Node) -> Explorer | None:
    """GET / on `node`'s RPC listener ([explorer] enabled): the explorer over the node's own
    JSON-RPC, its index beside the chain, caught up after each final block."""
    config = node.config.explorer
    if not config.enabled:
        return None
    if node.config.rpc.public_auth:
        # Its pages read the chain in-process, without a token: they would open what
        # [rpc] public_auth closes. Run `node.py explorer --rpc URL` with a token instead.
        log.warning("explorer off: [rpc] public_auth is set and the explorer's pages need no token")
        return None
    # The node's counters read in-process: no HTTP request to its own listener (which may
    # speak TLS, or bind an address this host cannot dial back), no token needed.
    explorer = Explorer(LocalSource(node.rpc), node.config.data_dir / config.index_file, config.header_rpc,
                        on_demand=True, metrics=lambda: _in_process(node.rpc.metrics_text))
    explorer.mount(node.rpc.app)
    node.final_listeners.append(explorer.indexer.poke)
    return explorer


class Explorer:
    """Pages and APIs over one index, kept level with `source` by its Indexer.
    `header_rpc` is the other node's explorer the proof page fetches headers from; with
    `follow` False the index is served as it is (an archived copy), never updated; with
    `on_demand` the index is built and followed from the first request that reads it (a
    node nobody browses spends nothing on it: benchmarks, agents' nodes)."""

    def __init__(self, source: ChainSource, index_path: Path, header_rpc: str = "", follow: bool = True,
                 on_demand: bool = False, metrics: MetricsReader | None = None) -> None:
        self.source = source
        self.follow = follow
        self.on_demand = on_demand
        self.metrics = metrics  # the node's /metrics text, or None when it does not answer
        self.header_rpc = header_rpc.rstrip("/")
        self.indexer = Indexer(index_path, source)
        self._reader_pool = ThreadPoolExecutor(1, thread_name_prefix="explorer-read")
        self._reader: Index | None = None
        self._genesis: dict[str, Any] | None = None

    # lifecycle --------------------------------------------------------------------------
    def mount(self, app: web.Application) -> None:
        routes = [("/", self.page), ("/explorer/static/{name}", self.static),
                  ("/explorer/api/status", self.status), ("/explorer/api/blocks", self.blocks),
                  ("/explorer/api/block/{id}", self.block), ("/explorer/api/tx/{hash}", self.tx),
                  ("/explorer/api/search", self.search), ("/explorer/api/address/{address}", self.address),
                  ("/explorer/api/proof/{kind}/{hash}", self.proof), ("/explorer/api/header/{number}", self.header),
                  ("/explorer/api/consortium", self.consortium), ("/explorer/api/auctions", self.auctions),
                  ("/explorer/api/auction/{id}", self.auction), ("/explorer/api/credit/{address}", self.credit),
                  ("/explorer/api/policies", self.policies), ("/explorer/api/consensus", self.consensus),
                  ("/explorer/api/labels", self.labels)]
        for path, handler in routes:
            app.router.add_get(path, self._answer(handler))
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)

    async def _start(self, _: web.Application) -> None:
        if not self.follow:
            await self.indexer.load()
        elif not self.on_demand:
            self.indexer.start()

    async def _wanted(self) -> None:
        """A request reads the index: from now on it follows the chain; the first such
        request waits (bounded) until the index has what the chain had then."""
        if self.follow:
            self.indexer.start()
            await self.indexer.wait_caught_up(FIRST_CATCH_UP_WAIT_MS)

    async def _stop(self, _: web.Application) -> None:
        await self.indexer.stop()
        if self._reader is not None:
            await self._read(Index.close)
        self._reader_pool.shutdown(wait=False, cancel_futures=True)

    def _answer(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except RpcCallError as exc:
                return _json({"error": exc.message, "code": exc.code}, 502)
            except ClientError as exc:  # the chain's node is down
                return _json({"error": str(exc)}, 503)

        return guarded

    async def _read(self, work: Callable[..., Any], *args: Any) -> Any:
        await self._wanted()

        def run() -> Any:
            if self._reader is None:
                self._reader = Index(self.indexer.path)
            return work(self._reader, *args)

        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, run)

    async def _indexed(self, request: web.Request) -> None:
        """`?after=N`: wait (bounded) until block N is indexed, so a page that heard of a
        final block over the node's WebSocket reads it right away."""
        await self._wanted()
        after = _int(request, "after")
        if after is not None:
            await self.indexer.wait_for(after, _int(request, "wait_ms") or 5_000)

    async def genesis(self) -> dict[str, Any]:
        if self._genesis is None:
            self._genesis = await self.source.call("chain_genesis")
        return self._genesis

    async def view(self, contract: str, method: str, *args: Any) -> Any:
        return await self.source.call("contract_call", contract, method, list(args))

    # pages ------------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    # chain ------------------------------------------------------------------------------
    async def status(self, request: web.Request) -> web.StreamResponse:
        status = await self.source.call("chain_status")
        counts = await self._read(Index.counts)
        return _json({"chain": status, "index": {"height": self.indexer.height, **counts,
                                                 "error": self.indexer.last_error},
                      "headerRpc": self.header_rpc})

    async def blocks(self, request: web.Request) -> web.StreamResponse:
        await self._indexed(request)
        rows = await self._read(Index.blocks, _int(request, "before"), _limit(request))
        return _json({"blocks": rows, "height": self.indexer.height})

    async def block(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["id"]
        number = int(key) if key.isdigit() else await self._read(Index.block_number, key)
        found = await self._read(Index.block, number) if number is not None else None
        if found is None:
            return _json({"error": f"no block {key} in the index"}, 404)
        txs = await self._read(Index.block_txs, number)
        end = await self._read(Index.events_of_block_end, number, found["tx_count"])
        return _json({"block": found, "transactions": txs, "endOfBlockEvents": end})

    async def tx(self, request: web.Request) -> web.StreamResponse:
        await self._indexed(request)
        found = await self._read(Index.tx, request.match_info["hash"])
        if found is None:
            pending = await self.source.call("tx_get", request.match_info["hash"])
            if pending is None:
                return _json({"error": "no such transaction"}, 404)
            return _json({"transaction": pending, "events": [], "pending": True})
        events = await self._read(Index.events_of_tx, found["block"], found["idx"])
        return _json({"transaction": found, "events": events, "pending": False})

    async def search(self, request: web.Request) -> web.StreamResponse:
        query = request.query.get("q", "").strip()
        lowered = query.lower()
        if query.isdigit():
            hit: dict[str, Any] | None = {"kind": "block", "id": int(query)}
        elif HEX_32.match(query):
            number = await self._read(Index.block_number, lowered)
            in_index = await self._read(Index.tx, lowered) if number is None else None
            hit = ({"kind": "block", "id": number} if number is not None else
                   {"kind": "tx", "id": lowered} if in_index is not None else None)
        elif HEX_20.match(query):
            hit = {"kind": "address", "id": lowered}
        elif lowered.startswith(("request ", "#")) and lowered.lstrip("#").removeprefix("request ").isdigit():
            hit = {"kind": "auction", "id": int(lowered.lstrip("#").removeprefix("request "))}
        else:
            hit = None
        if hit is None:
            return _json({"error": f"nothing matches {query[:80]!r}: a block number or hash, a transaction "
                                   "hash, an address or device id (0x + 40 hex), or #request"}, 404)
        return _json(hit)

    async def address(self, request: web.Request) -> web.StreamResponse:
        address = request.match_info["address"].lower()
        if not HEX_20.match(address):
            return _json({"error": "an address is 0x and 40 hex digits"}, 400)
        before = _int(request, "before")
        account = await self.source.call("account_get", address)
        member = await self.view("registry", "member", address)
        device = await self.view("registry", "device", address)
        found: dict[str, Any] = {"address": address, "account": account, "member": _member(member),
                                 "device": _device(device) if device else None,
                                 "credit": await self.view("credit", "credit_of", address),
                                 "endpoint": await self.view("registry", "endpoint", address),
                                 "transactions": await self._read(Index.txs_of, address, before, _limit(request)),
                                 "events": await self._read(Index.events_mentioning, address, before,
                                                            _limit(request))}
        if device:
            found["device"]["inWarranty"] = await self.view("registry", "in_warranty", address)
            found["requests"] = await self._read(Index.requests, None, _limit(request), None, address)
        if member and member[0] == "smartphone":
            found["devices"] = await self.view("registry", "devices_of", address)
        return _json(found)

    async def proof(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        if kind not in ("tx", "receipt"):
            return _json({"error": "proofs of tx or receipt"}, 404)
        return _json(await self.source.call(f"proof_{kind}", request.match_info["hash"]))

    async def header(self, request: web.Request) -> web.StreamResponse:
        number = request.match_info["number"]
        if not number.isdigit():
            return _json({"error": "a block number"}, 400)
        found = await self.source.call("chain_getBlock", int(number))
        response = _json(found if found is not None else {"error": f"no block {number}"},
                         200 if found is not None else 404)
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    # consortium -------------------------------------------------------------------------
    async def consortium(self, request: web.Request) -> web.StreamResponse:
        genesis = await self.genesis()
        registry = genesis["contracts"].get("registry", {})
        members = [a.lower() for a in registry.get("admins", [])] + [m["address"].lower()
                                                                      for m in registry.get("members", [])]
        devices = [d["address"].lower() for d in registry.get("devices", [])]
        for event in await self._read(Index.events_named, ("MemberRegistered", "DeviceRegistered"), None, 100):
            fields = event["fields"]
            (devices if event["name"] == "DeviceRegistered" else members).append(
                fields.get("device") or fields.get("member"))
        by_role: dict[str, list[dict[str, Any]]] = {}
        for address in dict.fromkeys(members):
            record = _member(await self.view("registry", "member", address))
            if record is not None and record["role"] != "device":
                record.update(address=address, endpoint=await self.view("registry", "endpoint", address),
                              credit=await self.view("credit", "credit_of", address))
                by_role.setdefault(record["role"], []).append(record)
        device_rows = []
        for address in dict.fromkeys(devices):
            record = await self.view("registry", "device", address)
            if record:
                row = _device(record)
                row.update(address=address, inWarranty=await self.view("registry", "in_warranty", address),
                           active=await self.view("registry", "is_member", address))
                device_rows.append(row)
        status = await self.source.call("chain_status")
        head = await self.source.call("chain_getBlock", "latest")
        group = [v["replica"] for v in (head.get("commit") or {}).get("votes", [])] if head else []
        return _json({"bookkeepers": status["bookkeepers"], "view": status["view"], "primary": status["primary"],
                      "group": group, "members": by_role, "devices": device_rows,
                      "genesisTimeMs": genesis["timestampMs"]})

    async def labels(self, request: web.Request) -> web.StreamResponse:
        """address -> what it is (a contract, a bookkeeper's name, a member's role, a device's
        type), from genesis and the registrations indexed: the pages name what they show."""
        genesis = await self.genesis()
        found = {c["address"]: "contract " + c["name"] for c in await self.source.call("contract_list")}
        found.update({b["address"]: "bookkeeper " + b["name"] for b in genesis["bookkeepers"]})
        registry = genesis["contracts"].get("registry", {})
        found.update({a.lower(): "administrator" for a in registry.get("admins", [])})
        found.update({m["address"].lower(): m["role"] for m in registry.get("members", [])})
        found.update({d["address"].lower(): "device " + d["device_type"] for d in registry.get("devices", [])})
        for event in await self._read(Index.registrations):
            fields = event["fields"]
            if event["name"] == "DeviceRegistered":
                found[fields["device"]] = "device " + fields["device_type"]
            else:
                found.setdefault(fields["member"], fields["role"])  # a device's own MemberRegistered says "device"
        return _json(found)

    # auctions ---------------------------------------------------------------------------
    async def auctions(self, request: web.Request) -> web.StreamResponse:
        await self._indexed(request)
        rows = await self._read(Index.requests, _int(request, "before"), _limit(request),
                                request.query.get("type") or None)
        return _json({"requests": rows, "height": self.indexer.height})

    async def auction(self, request: web.Request) -> web.StreamResponse:
        await self._indexed(request)
        key = request.match_info["id"]
        if not key.isdigit():
            return _json({"error": "a request id"}, 400)
        row = await self._read(Index.request, int(key))
        if row is None:
            return _json({"error": f"no request {key} in the index"}, 404)
        events = await self._read(Index.events_of_request, int(key))
        state = await self.view("dsc", "request", int(key))
        terms = await self.view("dsc", "terms", row["device_type"])
        closed = next((e for e in events if e["name"] == "AuctionClosed"), None)
        return _json({"request": row, "state": state, "terms": terms, "timeline": events,
                      "analysis": await self._analysis(events, closed) if closed else None,
                      "settlement": await self._settlement(events)})

    async def _settlement(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The token side of the request: every escrow locked, paid, released or forfeited
        by the transactions that moved it (deposits, bids, the price)."""
        calls = dict.fromkeys((e["block"], e["tx_index"]) for e in events)
        moves = []
        for block, tx_index in calls:
            moves += [e for e in await self._read(Index.events_of_tx, block, tx_index)
                      if e["contract"] == "token" and e["name"].startswith("Escrow")]
        return moves

    async def _analysis(self, events: list[dict[str, Any]], closed: dict[str, Any]) -> dict[str, Any]:
        """The close of one auction spelled out: each valid bid's k-means class (the nearest
        of the final centroids, ties to the lower, as contracts/kmeans.py assigns), the mean
        of centres, the ranking O_i = P_i - d_i, and each bidder's w_i and d_i before and
        after (the BidderUpdated before this close, or zero)."""
        fields = closed["fields"]
        centroids: list[int] = fields["centroids"]
        mean = fixedpoint.mean(centroids) if centroids else None
        suspects = set(fields["suspects"])
        bids = []
        for event in events:
            if event["name"] != "BidRevealed":
                continue
            bid = event["fields"]
            price_fp = fixedpoint.from_int(bid["price"])
            bids.append({**bid, "class": nearest(price_fp, centroids) if bid["valid"] and centroids else None,
                         "suspect": bid["bidder"] in suspects})
        # the close's own BidderUpdated events: same transaction, after AuctionClosed
        after = {e["fields"]["bidder"]: e["fields"] for e in
                 await self._read(Index.events_of_tx, closed["block"], closed["tx_index"])
                 if e["name"] == "BidderUpdated" and e["id"] > closed["id"]}
        before = {bidder: await self._read(_previous_state, bidder, closed["id"]) for bidder in after}
        ranking = [{"bidder": b, "price": p, "o": o, "coupon": fixedpoint.from_int(p) - o}
                   for b, p, o in fields["ranking"]]
        return {"centroids": centroids, "meanOfCentres": mean, "bids": bids, "ranking": ranking,
                "winner": fields["winner"], "price": fields["price"], "suspects": sorted(suspects),
                "states": [{"bidder": b, "before": before[b], "after": after[b]} for b in after]}

    # credit and policies ----------------------------------------------------------------
    async def credit(self, request: web.Request) -> web.StreamResponse:
        address = request.match_info["address"].lower()
        if not HEX_20.match(address):
            return _json({"error": "an address is 0x and 40 hex digits"}, 400)
        genesis = await self.genesis()
        history_max, alpha_percent, credit_initial = credit_params(genesis["contracts"].get("credit", {}))
        ratings: list[int] = await self.view("credit", "ratings", address)
        n = len(ratings)
        cut = (alpha_percent * n) // 200  # n_c = floor(alpha/100 * n/2), eq. (8); as vm/fixedpoint.trimmed_mean
        ordered = sorted(ratings)
        updates = await self._read(Index.events_mentioning, address, None, 100)
        return _json({"address": address, "ratings": ratings, "alphaPercent": alpha_percent,
                      "historyMax": history_max, "creditInitial": credit_initial, "cutEachEnd": cut,
                      "cutLow": ordered[:cut], "cutHigh": ordered[n - cut:] if cut else [],
                      "kept": ordered[cut:n - cut],
                      "credit": await self.view("credit", "credit_of", address),
                      "updates": [e for e in updates if e["name"] in ("CreditUpdated", "Rated", "RatingIgnored")]})

    async def policies(self, request: web.Request) -> web.StreamResponse:
        await self._indexed(request)
        published = await self._read(Index.events_named, ("PolicyPublished",), _int(request, "before"),
                                     _limit(request))
        for event in published:
            tx = await self._read(Index.tx, event["tx_hash"]) if event["tx_hash"] else None
            event["rules"] = tx["args"][1] if tx and tx["method"] == "publish" and len(tx["args"]) > 1 else None
        executed = await self._read(Index.events_named, ("PolicyExecuted",), _int(request, "before"),
                                    _limit(request))
        return _json({"published": published, "executed": executed})

    # consensus --------------------------------------------------------------------------
    async def consensus(self, request: web.Request) -> web.StreamResponse:
        await self._indexed(request)
        status = await self.source.call("chain_status")
        rows = await self._read(Index.blocks, None, min(_limit(request, CONSENSUS_BLOCKS_MAX), CONSENSUS_BLOCKS_MAX))
        rows.reverse()
        blocks = [{"number": r["number"], "view": r["view"], "proposer": r["proposer"],
                   "timestampMs": r["timestamp_ms"], "txCount": r["tx_count"],
                   "signers": [v["replica"] for v in (r["commit"] or {}).get("votes", [])]} for r in rows]
        changes = [{"number": b["number"], "from": a["view"], "to": b["view"]}
                   for a, b in zip(blocks, blocks[1:], strict=False) if b["view"] != a["view"]]
        return _json({"status": status, "blocks": blocks, "viewChanges": changes, "metrics": await self._metrics()})

    async def _metrics(self) -> dict[str, float] | None:
        """The node's own counters (view changes entered, suspicions, commit latency from
        admission to finality, the longest loop stall), or None when it does not answer."""
        text = await self.metrics() if self.metrics is not None else None
        if text is None:
            return None
        found: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in NODE_METRICS:
                    found[NODE_METRICS[sample.name]] = sample.value
        return found


async def _in_process(render: Callable[[], bytes]) -> str | None:
    return render().decode()


async def fetch_metrics(session: aiohttp.ClientSession, url: str, headers: dict[str, str],
                        tls: ssl.SSLContext | bool) -> str | None:
    """GET `url` (a node's /metrics) with the client's token and TLS settings; None when the
    node does not answer it (down, refused, not permitted)."""
    try:
        async with session.get(url, headers=headers, ssl=tls,
                               timeout=aiohttp.ClientTimeout(total=METRICS_TIMEOUT_S)) as response:
            if response.status != 200:
                return None
            return (await response.content.read(METRICS_BYTES_MAX)).decode()
    except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError):
        return None


def _previous_state(index: Index, bidder: str, before_id: int) -> dict[str, Any]:
    event = index.last_event("BidderUpdated", bidder, before_id)
    return event["fields"] if event else {"bidder": bidder, "w": 0, "d": 0, "suspect_count": 0}


def _member(raw: Any) -> dict[str, Any] | None:
    if not raw:
        return None
    role, bls_key, paillier_n, registrar, active = raw
    return {"role": role, "blsKey": bls_key, "paillierN": paillier_n, "registrar": registrar, "active": active}


def _device(raw: Any) -> dict[str, Any]:
    device_type, warranty_end_s, vendor, phone = raw
    return {"deviceType": device_type, "warrantyEndS": warranty_end_s, "vendor": vendor, "phone": phone or None}


def _int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name, "")
    return int(value) if value.isdigit() else None


def _limit(request: web.Request, default: int = PAGE_DEFAULT) -> int:
    return _int(request, "limit") or default


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)
