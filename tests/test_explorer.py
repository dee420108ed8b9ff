"""The explorer on a live 3-process cluster, in headless Chromium (tests/browser_support.py):
a device fails and its auction appears and updates live over the node's WebSocket (sealed
commits, reveals, the k-means classes, the winner, the deposits returned and the price
paid), a transaction hash typed into the search finds its page, and its Merkle proof,
checked by the browser against a header fetched from another node, shows verified.
Accessibility basics and a phone-width viewport are checked on every page; the index is
rebuilt when it belongs to another chain, and a standalone explorer relays the node's
WebSocket. The first meaningful render is measured on a synthetic index of 10,000 blocks
and 1,000 auctions (bounded, made by the test: a real chain of that length takes too long
to make on the shared box)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from chain import Value
from client import GridClient, Receipt, TransactionFailed
from client.contracts import Credit, Dsc, Registry
from contracts.addresses import REGISTRY
from contracts.dsc_records import bid_commitment
from contracts.registry import registration_consent
from crypto import KeyPair, keccak256
from diagnosis.demo import demo_contract_params
from explorer.index import Index, IndexedBlock
from explorer.standalone import StandaloneExplorer
from tests.browser_support import (
    CONTRAST_JS,
    UNLABELLED_JS,
    browser_page,
    require_chromium,
    screenshot,
)
from tests.cluster_support import rpc_urls, running_cluster
from tests.diagnosis_support import admin_key

pytestmark = pytest.mark.timeout(300)
COMMIT_MS, REVEAL_MS = 8_000, 8_000  # auction windows wide enough for a loaded box (load average 25 seen)
BIDS = (120, 90, 95)  # vendor, supplier-1, supplier-2 (meter: P_min 10, P_max 200)
RENDER_BLOCKS, RENDER_AUCTIONS = 10_000, 1_000
RENDER_TRIES, RENDER_MS_MAX = 3, 3_000
PAGES = {"#/": "blocks", "#/auctions": "auctions", "#/consortium": "consortium", "#/policies": "policies",
         "#/consensus": "consensus"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    params = demo_contract_params()
    params["dsc"] = {**params["dsc"], "commit_ms": COMMIT_MS, "reveal_ms": REVEAL_MS}
    params["registry"] = {"admins": ["0x" + admin_key().address.hex()]}  # who admits the test's members
    directory = tmp_path_factory.mktemp("explorer")
    with running_cluster(directory, contracts=params) as (processes, accounts):
        yield rpc_urls(processes), accounts, directory


async def _consortium(client: GridClient, accounts: list[KeyPair]) -> tuple[list[KeyPair], KeyPair, KeyPair]:
    """A vendor and two suppliers admitted by the demo administrator, a smartphone, and an
    out-of-warranty meter the vendor sold, bound to that smartphone."""
    vendor, supplier1, supplier2, phone = accounts[:4]
    for member, role in ((vendor, "vendor"), (supplier1, "supplier"), (supplier2, "supplier"),
                         (phone, "smartphone")):
        await _admit(client, member, role)
    device = KeyPair.from_seed(keccak256(b"explorer-test-meter"))
    consent = registration_consent(device, await client.chain_id(), vendor.address, 0)
    await Registry.register_device(device.public_key, "meter", 0, b"", b"", consent).transact(client, vendor)
    await Registry.bind_smartphone(device.address, phone.address).transact(client, vendor)
    return [vendor, supplier1, supplier2], phone, device


async def _admit(client: GridClient, member: KeyPair, role: str) -> None:
    """The demo administrators admit `member` (its key consents, registrar = the registry)."""
    consent = registration_consent(member, await client.chain_id(), REGISTRY, 0)
    await Registry.register(member.public_key, role, b"", b"", consent).transact(client, admin_key())


async def _when_open(send: Any, after_ms: int, deadline_s: float = 60) -> Receipt:
    """Send a call whose window opens at block time `after_ms` (block time is a proposer's
    wall clock): refused while early, so it is sent again until it lands."""
    await asyncio.sleep(max(0.0, (after_ms - time.time() * 1000) / 1000))
    give_up = time.monotonic() + deadline_s
    while True:
        try:
            receipt: Receipt = await send()
            return receipt
        except TransactionFailed:
            if time.monotonic() > give_up:
                raise
            await asyncio.sleep(0.5)


def _fields(receipt: Receipt, name: str) -> Mapping[str, Value]:
    return receipt.event(name).fields


async def test_a_failing_device_is_auctioned_live_and_its_proof_verifies(cluster) -> None:
    require_chromium()
    urls, accounts, _ = cluster
    async with GridClient(urls[0]) as client:
        bidders, phone, device = await _consortium(client, accounts)
        terms = await Dsc.terms(client, "meter")
        async with browser_page() as page:
            await page.goto(urls[0] + "/#/auctions")
            await page.wait_for_selector("#requests")
            # the device fails: its smartphone opens the request (deposit + P_max escrowed)
            opened = await Dsc.open_request(device.address).with_value(terms.request_deposit + terms.p_max) \
                .transact(client, phone)
            request = _fields(opened, "RequestOpened")
            request_id = request["request"]
            row = page.get_by_role("link", name=f"request {request_id}", exact=True)
            await row.wait_for()  # appeared without a reload: the dsc events subscription
            await row.click()
            await page.wait_for_selector("#timeline")
            credits = [await Credit.credit_of(client, b.address) for b in bidders]
            salts = [keccak256(b"salt" + bytes([i])) for i in range(len(bidders))]
            await asyncio.gather(*(
                Dsc.commit(request_id, bid_commitment(request_id, b.address, price, credit, salt))
                .with_value(terms.bid_deposit).transact(client, b)
                for b, price, credit, salt in zip(bidders, BIDS, credits, salts, strict=True)))
            await page.locator("#timeline li", has_text="BidCommitted").nth(len(bidders) - 1).wait_for()
            assert await page.locator("#timeline li", has_text="sealed commit by supplier").count() == 2  # labels
            reveals = [(Dsc.reveal(request_id, price, credit, salt), b)
                       for b, price, credit, salt in zip(bidders, BIDS, credits, salts, strict=True)]
            await asyncio.gather(*(_when_open(lambda r=r, b=b: r.transact(client, b), request["commit_end_ms"])
                                   for r, b in reveals))
            await page.locator("#timeline li", has_text="BidRevealed").nth(len(bidders) - 1).wait_for()
            closed = await _when_open(lambda: Dsc.close(request_id).transact(client, phone), request["reveal_end_ms"])
            winner = page.locator("#winner")
            await winner.wait_for()
            assert "winner at 90" in await winner.text_content()
            assert _fields(closed, "AuctionClosed")["winner"] == bidders[1].address
            settlement = page.locator("#settlement")
            await settlement.get_by_text("returned", exact=True).first.wait_for()  # the losers' bid deposits
            await settlement.get_by_text("surplus returned", exact=True).wait_for()  # P_max - price to the payer
            await page.get_by_text("k-means classes").wait_for()
            await screenshot(page, "explorer-auction.png")
            await Dsc.set_mode(request_id, "remote").transact(client, bidders[1])
            await Dsc.complete(request_id, keccak256(b"meter fault")).transact(client, phone)
            await page.locator("#timeline li", has_text="ServiceCompleted").wait_for()
            await settlement.get_by_text("paid", exact=True).wait_for()  # the agreed price to the winner
            assert await page.text_content("#auction-status") == "completed"

            close_hash = closed.tx
            await page.fill("#q", close_hash)
            await page.press("#q", "Enter")
            await page.wait_for_url(f"**#/tx/{close_hash}")
            await page.locator("main h1", has_text="Transaction").wait_for()
            for kind in ("tx", "receipt"):
                await page.select_option("#proof-kind", kind)
                assert (await page.input_value("#header-rpc")) != urls[0]  # another node's header
                await page.click("#check-proof")
                result = page.locator("#proof-result")
                await result.wait_for()
                assert await result.text_content() == "Proof verified", await page.text_content("#proof")
            await screenshot(page, "explorer-proof.png")
            await page.goto(urls[0] + f"/#/address/0x{device.address.hex()}")
            await page.get_by_text("out of warranty").first.wait_for()
            await screenshot(page, "explorer-device.png")


async def test_pages_have_labels_contrast_keyboard_and_fit_a_phone(cluster) -> None:
    require_chromium()
    urls, accounts, _ = cluster
    async with browser_page() as page:
        for route, name in PAGES.items():
            await page.goto(urls[0] + "/" + route)
            await page.wait_for_selector("main h1")
            if name != "consensus":  # taken below, once its charts have data
                await screenshot(page, f"explorer-{name}.png")
            assert await page.evaluate(UNLABELLED_JS) == [], route
            low = [c for c in await page.evaluate(CONTRAST_JS, "main, main *, header a, header label, footer, .live")
                   if c["ratio"] < 4.5]
            assert not low, f"{route}: text below WCAG AA contrast: {low[:5]}"
        await page.goto(urls[0] + "/#/")
        await page.wait_for_selector("#blocks tbody tr")
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
        for _ in range(8):  # brand, then the section links in order
            await page.keyboard.press("Tab")
            if await page.evaluate("document.activeElement.textContent") == "Consensus & health":
                break
        else:
            raise AssertionError("the section links are not reachable by Tab")
        await page.keyboard.press("Enter")
        await page.wait_for_url("**#/consensus")
        await page.wait_for_selector("figure svg")
        await page.wait_for_selector("#m-view-changes")  # from the node's own /metrics
        async with GridClient(urls[1]) as client:  # blocks while the page is open: its charts grow
            for amount in (1, 2, 3):
                await client.transact(accounts[9], "token", "transfer", [accounts[8].address, amount])
        for chart in ("c-latency", "c-commit", "c-mempool"):
            await page.locator(f"figure:has(#{chart}) polyline").wait_for(state="attached")  # a flat line is "hidden"
        await screenshot(page, "explorer-consensus.png")
    async with browser_page(width=375, height=740) as phone:
        for route in PAGES:
            await phone.goto(urls[0] + "/" + route)
            await phone.wait_for_selector("main h1")
            overflow = await phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{route} is {overflow} px wider than a phone"
        await phone.goto(urls[0] + "/#/")
        await phone.wait_for_selector("#blocks tbody tr")
        await screenshot(phone, "explorer-phone.png")


async def test_standalone_explorer_rebuilds_a_foreign_index_and_relays_the_websocket(cluster, tmp_path) -> None:
    urls, accounts, directory = cluster
    index_path = tmp_path / "explorer.sqlite"
    foreign = Index(index_path)  # an index of another chain (id 7) left in the file
    foreign.reset(7, "0x" + "ab" * 32)
    foreign.close()
    standalone = StandaloneExplorer(urls[1:2], index_path, header_rpc=urls[2])
    runner = web.AppRunner(standalone.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        async with GridClient(urls[0]) as client, aiohttp.ClientSession() as session:
            async with session.ws_connect(base + "/ws") as ws:
                await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": ["newHeads"]})
                assert "result" in await ws.receive_json(timeout=30)
                sent = await client.send(accounts[5], "token", "transfer", [accounts[6].address, 1])
                head = json.loads((await ws.receive(timeout=60)).data)["params"]["result"]
            receipt = await client.wait_receipt(sent)
            assert head["number"] <= receipt.block_number
            async with session.get(f"{base}/explorer/api/tx/{sent}?after={receipt.block_number}") as response:
                found = await response.json()
            assert found["transaction"]["block"] == receipt.block_number
            async with session.get(base + "/explorer/api/status") as response:
                status = await response.json()
            async with session.get(urls[0] + "/explorer/api/blocks") as response:  # node0's own explorer, read
                assert response.status == 200
        assert status["index"]["height"] >= receipt.block_number
        rebuilt = Index(index_path)
        assert rebuilt.meta("chain_id") == str(status["chain"]["chainId"]) and rebuilt.block_hash(0) is not None
        rebuilt.close()
        # node2 only ever served headers to other nodes' proof pages: it built no index
        assert (directory / "node0" / "data" / "explorer.sqlite").exists()
        assert not (directory / "node2" / "data" / "explorer.sqlite").exists()
    finally:
        await runner.cleanup()


def _hex(value: int, size: int) -> str:
    return "0x" + value.to_bytes(size, "big").hex()


def _synthetic_index(path: Path, blocks: int, auctions: int) -> None:
    """`blocks` blocks of one transfer each and `auctions` DSC requests with their
    reveals and close, written through Index.add as the indexer writes real ones."""
    index = Index(path)
    index.reset(1337, "0x" + "00" * 32)
    every = blocks // auctions
    batch: list[IndexedBlock] = []
    for number in range(blocks):
        digest = _hex(number + 1, 32)
        block = {"number": number, "hash": digest, "parentHash": _hex(number, 32), "timestampMs": 1_000 * number,
                 "proposer": number % 3, "view": 0, "stateRoot": digest, "transactionRoot": digest,
                 "receiptRoot": digest, "gasUsed": 5_700, "rawHeader": "0x", "commit": {
                     "view": 0, "votes": [{"replica": 0, "signature": "0x"}, {"replica": 1, "signature": "0x"}],
                     "finality": []}}
        sender, to = _hex(1 + number % 7, 20), _hex(2 + number % 5, 20)
        txs: list[dict[str, Any]] = [{"hash": _hex(number << 16, 32), "from": sender, "to": "0x" + "00" * 19 + "02",
                                      "method": "transfer", "args": [to, 1], "value": 0}]
        receipts: list[dict[str, Any]] = [{
            "status": 1, "gasUsed": 1_900, "error": None, "index": 0, "transactionHash": txs[0]["hash"],
            "events": [{"contract": "0x" + "00" * 19 + "02", "name": "Transfer",
                        "fields": {"sender": sender, "to": to, "amount": 1}}]}]
        if number % every == 0 and number // every < auctions:
            request, dsc = number // every + 1, "0x" + "00" * 19 + "03"  # the DSC counts from 1
            bidders = [_hex(100 + b, 20) for b in range(3)]
            events = [{"contract": dsc, "name": "RequestOpened", "fields": {
                "request": request, "device": _hex(1000 + request % 50, 20), "device_type": "meter",
                "in_warranty": False, "payer": _hex(9, 20), "commit_end_ms": 0, "reveal_end_ms": 0}}]
            events += [{"contract": dsc, "name": "BidRevealed", "fields": {
                "request": request, "bidder": b, "price": 90 + i, "credit": 60_000_000, "valid": True, "reason": ""}}
                for i, b in enumerate(bidders)]
            events.append({"contract": dsc, "name": "AuctionClosed", "fields": {
                "request": request, "winner": bidders[0], "price": 90, "suspects": [],
                "ranking": [[b, 90 + i, (90 + i) * 10**6] for i, b in enumerate(bidders)],
                "centroids": [90_000_000, 91_000_000, 92_000_000]}})
            events.append({"contract": dsc, "name": "Assigned", "fields": {
                "request": request, "node": bidders[0], "price": 90, "deadline_ms": 0}})
            receipts.append({"status": 1, "gasUsed": 0, "error": None, "index": len(txs), "transactionHash": None,
                             "events": events})
        batch.append(IndexedBlock(block, txs, receipts))
        if len(batch) == 500:
            index.add(batch, {"0x" + "00" * 19 + "02": "token", "0x" + "00" * 19 + "03": "dsc"})
            batch = []
    index.add(batch, {"0x" + "00" * 19 + "02": "token", "0x" + "00" * 19 + "03": "dsc"})
    assert index.counts()["requests"] == auctions and index.height() == blocks - 1
    index.close()


async def test_first_meaningful_render_with_10k_blocks_and_1k_auctions(cluster, tmp_path) -> None:
    require_chromium()
    urls, _, _ = cluster
    index_path = tmp_path / "synthetic.sqlite"
    _synthetic_index(index_path, RENDER_BLOCKS, RENDER_AUCTIONS)
    standalone = StandaloneExplorer(urls[:1], index_path, follow=False)  # the index served as it is
    runner = web.AppRunner(standalone.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    figures: dict[str, float] = {}
    try:
        async with browser_page() as page:
            await page.goto(base + "/#/")  # a started browser: its cold start is not the page's
            await page.wait_for_selector("#blocks tbody tr")
            for route, ready in (("#/", "#blocks tbody tr"), ("#/auctions", "#requests tbody tr")):
                loads = []
                for _ in range(RENDER_TRIES):
                    await page.goto("about:blank")
                    await page.goto(base + "/" + route)
                    await page.wait_for_selector(ready)
                    loads.append(await page.evaluate("performance.getEntriesByName('rendered')[0].startTime"))
                    assert await page.locator(ready).count() >= 20
                figures[route] = min(loads)
    finally:
        await runner.cleanup()
    print(f"first meaningful render (best of {RENDER_TRIES}), synthetic index of {RENDER_BLOCKS} blocks and "
          f"{RENDER_AUCTIONS} auctions: " + ", ".join(f"{route} {ms:.0f} ms" for route, ms in figures.items()))
    # The target is 1 s (issue 17; measured well below it, docs/explorer.md). The bound here
    # is looser so that a CI box loaded by other suites does not fail on noise; a page that
    # read the whole index would still miss it by far.
    assert all(ms < RENDER_MS_MAX for ms in figures.values()), figures


async def test_the_owners_phone_app_shows_devices_notifications_proven_history_rating_and_policy(cluster) -> None:
    """The smartphone agent's own app (diagnosis/phone_app.py) on the same cluster: the
    owner publishes a rule in the app and sees it fire, a service on their device arrives
    as notifications, its maintenance record shows proven and is rated from the app."""
    require_chromium()
    from diagnosis.agents import Identity, SmartphoneAgent, Tally
    from diagnosis.ledger import RpcLedger
    from diagnosis.lightclient import TrustAnchor
    from diagnosis.phone_app import PhoneApp, app_url
    from diagnosis.process import default_rules
    from diagnosis.services import PhoneService
    from diagnosis.store import AgentStore

    urls, accounts, directory = cluster
    vendor, funder = accounts[7], accounts[8]
    identity = Identity.from_seed("phone-of-ada", b"explorer-test-phone", paillier_bits=1024)
    anchor = TrustAnchor.from_genesis(directory / "genesis.toml")
    agent = SmartphoneAgent(identity, RpcLedger(urls[1:], anchor), anchor.credit_initial, Tally())
    service = PhoneService(agent, AgentStore(directory / "phone-of-ada.sqlite"), default_rules)
    app = PhoneApp(agent, service, directory / "phone-of-ada.sqlite")
    app.mount()
    device = KeyPair.from_seed(keccak256(b"explorer-test-relay"))
    async with GridClient(urls[0]) as client:
        await _admit(client, vendor, "vendor")
        await _admit(client, identity.key, "smartphone")
        await client.transact(funder, "token", "transfer", [identity.address, 10_000])  # deposits
        consent = registration_consent(device, await client.chain_id(), vendor.address, 0)
        warranty_end_s = int(time.time()) + 365 * 86_400
        await Registry.register_device(device.public_key, "relay", warranty_end_s, b"", b"",
                                       consent).transact(client, vendor)
        await Registry.bind_smartphone(device.address, identity.address).transact(client, vendor)
        await agent.start()
        url = app.started()
        try:
            assert app_url(directory / "phone-of-ada.sqlite") == url
            async with aiohttp.ClientSession() as session:  # no token, no answer
                async with session.get(url.split("/app/")[0] + "/app/api/overview") as response:
                    assert response.status == 403
                async with session.get(url.split("/app/")[0] + "/app/api/overview",
                                       headers={"X-App-Token": app.token}) as response:
                    overview = await response.json()
                    assert response.status == 200, overview
                assert [d["address"] for d in overview["devices"]] == ["0x" + device.address.hex()]
            async with browser_page(width=390, height=844) as page:
                await page.goto(url)
                card = page.locator(f'[data-device="0x{device.address.hex()}"]')
                await card.wait_for()
                assert "in warranty" in await card.text_content()
                assert await page.evaluate(UNLABELLED_JS) == []
                assert await page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
                await page.fill("#threshold-1", "1500")
                await page.click("#publish")
                await page.get_by_text("Published version 1").wait_for()
                await client.transact(device, "policy", "report", ["power_w", 1600])  # the device's running report
                await page.locator("#fired li", has_text="your policy fired").wait_for()
                await card.locator(".mode", has_text="power-saving").wait_for()

                # the phone's own transactions go through its agent (one nonce sequence)
                opened = await agent.tx(Dsc.open_request(device.address).with_value(100), "")
                request_id = _fields(opened, "RequestOpened")["request"]
                await page.locator("#feed li", has_text="a maintenance request was opened").wait_for()
                await Dsc.set_mode(request_id, "remote").transact(client, vendor)
                await agent.tx(Dsc.complete(request_id, keccak256(b"relay fault")), "")
                await page.locator("#feed li", has_text="service completed").wait_for()
                row = page.locator(f'#records tr[data-request="{request_id}"]')
                await row.get_by_text("proven at block").wait_for()
                await row.get_by_label(f"Rate #{request_id} (0-100)").fill("95")
                await row.get_by_role("button", name="Rate").click()
                await page.locator(f'#records tr[data-request="{request_id}"] td', has_text="95").wait_for()
                await screenshot(page, "phone-app.png")
            record = await client.view("records", "record", [request_id])
            assert record[8] == 95  # the owner's rating, signed by the agent
        finally:
            await agent.stop()
            service.store.close()


class _HeldFrom:
    """The cluster's node0 as a node that keeps blocks from `base` on (pruned, or joined by
    a snapshot at `base`) answers: -32004 below the base, -32001 for the base's receipts."""

    def __init__(self, client: Any, base: int) -> None:
        self.client, self.base = client, base

    async def call(self, method: str, *params: Any) -> Any:
        from client.errors import RpcCallError
        from rpc.errors import BLOCK_PRUNED, NOT_FOUND

        if method in ("chain_getBlock", "chain_getBlockReceipts") and isinstance(params[0], int):
            if 0 < params[0] < self.base:
                raise RpcCallError(BLOCK_PRUNED, f"block {params[0]} is not held here",
                                   {"reason": "pruned", "height": params[0], "baseHeight": self.base})
            if method == "chain_getBlockReceipts" and params[0] == self.base:
                raise RpcCallError(NOT_FOUND, f"no receipt 0 in block {self.base}")
        return await self.client.call(method, *params)


async def test_an_index_of_a_node_holding_blocks_from_a_base_height_skips_what_it_never_held(cluster,
                                                                                             tmp_path) -> None:
    from client import RpcClient
    from explorer.indexer import Indexer

    urls, accounts, _ = cluster
    async with GridClient(urls[0]) as client:
        while (await client.status())["height"] < 4:  # enough blocks for a base at 2
            await client.transact(accounts[9], "token", "transfer", [accounts[8].address, 1])
    rpc = RpcClient(urls[:1])
    try:
        indexer = Indexer(tmp_path / "held.sqlite", _HeldFrom(rpc, base=2))
        await indexer.catch_up()
        height = (await rpc.call("chain_status"))["height"]
        await indexer.stop()
    finally:
        await rpc.close()
    index = Index(tmp_path / "held.sqlite")
    held = [b["number"] for b in index.blocks(None, 100)]
    index.close()
    assert held == list(range(height, 2, -1)) + [0]  # genesis, then from the base on (its receipts never came)
