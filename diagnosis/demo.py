"""The demonstration run by `node.py demo`: a consortium of 2 vendors, 3 suppliers, 6
devices of two types and 2 smartphones on a live cluster; the four flows RMW, SMW, ROW,
SOW; a supplier ring bidding low over several auctions; and the failure paths. Prints a
readable report as it goes and returns the JSON report (`"ok"` only if everything
behaved as expected).

Determinism: identities come from fixed seeds (stable addresses; these keys are public and
for the demo only), prices and ratings are fixed, flows run one after the other. What
varies between runs: Paillier keys (fresh), timestamps, block numbers, timings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.contracts import ContractCall, Credit, Dsc, Registry, Token
from client.errors import TransactionFailed
from contracts.addresses import REGISTRY
from contracts.registry import registration_consent
from crypto.hashing import keccak256
from crypto.keys import KeyPair
from diagnosis import flows as fl
from diagnosis.agents import (
    Agent,
    CrewAgent,
    DeviceAgent,
    DiagnosisNodeAgent,
    Identity,
    SmartphoneAgent,
    Tally,
    now_ms,
)
from diagnosis.channel import Payload, RemoteRejection
from diagnosis.errors import Refusal, RejectReason
from diagnosis.flows import NO_REVEAL, FlowReport, FlowRun, run_auction
from diagnosis.ledger import Ledger, RpcLedger, TransactionRefused
from diagnosis.lightclient import TrustAnchor
from diagnosis.message import SealedMessage, seal
from diagnosis.overhead import FLOWS, PAPER_TABLE3, PAPER_TABLE4, TABLE3_REASONS, TABLE4_REASONS, gridchain_table3
from diagnosis.protocol import CREW, DEVICE, PHONE, SUPPLIER, SYMBOLS, VENDOR
from runtime.cluster import account_keys
from vm.fixedpoint import SCALE

ADMIN_SEED = b"gridchain-demo/admin"
FUNDS = 100_000
PRICES = {"meter": {"p_min": 10, "p_max": 200}, "relay": {"p_min": 20, "p_max": 400}}
SERVICE_MS = 8_000


def admin_key() -> KeyPair:
    return KeyPair.from_seed(keccak256(ADMIN_SEED))


def demo_contract_params() -> dict[str, Any]:
    """Genesis parameters: the demo administrator, two device types, short windows; the
    auction rules are the contract's shipped defaults (docs/auction.md)."""
    return {
        "registry": {"admins": ["0x" + admin_key().address.hex()]},
        "dsc": {"request_deposit": 100, "bid_deposit": 50,
                "commit_ms": 2_000, "reveal_ms": 1_500, "service_ms": SERVICE_MS, "prices": PRICES},
        "credit": {"alpha_percent": 20, "credit_initial": 60},
    }


@dataclass(frozen=True)
class NodeSpec:
    name: str
    role: str
    prices: dict[str, int]


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    device_type: str
    vendor: str
    in_warranty: bool
    phone: str


NODES = (
    NodeSpec("vendor-A", VENDOR, {"meter": 120, "relay": 300}),
    NodeSpec("vendor-B", VENDOR, {"meter": 110, "relay": 280}),
    NodeSpec("supplier-1", SUPPLIER, {"meter": 90, "relay": 250}),
    NodeSpec("supplier-2", SUPPLIER, {"meter": 100, "relay": 230}),
    NodeSpec("supplier-3", SUPPLIER, {"meter": 105, "relay": 260}),
)
DEVICES = (
    DeviceSpec("meter-A", "meter", "vendor-A", True, "phone-1"),  # RMW
    DeviceSpec("relay-A", "relay", "vendor-A", True, "phone-1"),  # SMW
    DeviceSpec("meter-B", "meter", "vendor-B", False, "phone-2"),  # ROW
    DeviceSpec("relay-B", "relay", "vendor-B", False, "phone-2"),  # SOW
    DeviceSpec("meter-C", "meter", "vendor-A", False, "phone-2"),  # failure paths
    DeviceSpec("meter-D", "meter", "vendor-B", False, "phone-1"),  # collusion rounds
)
PHONES = ("phone-1", "phone-2")
RING = ("supplier-2", "supplier-3")
RING_PRICES = {"vendor-A": 120, "vendor-B": 125, "supplier-1": 118, "supplier-2": 15, "supplier-3": 16}
COLLUSION_ROUNDS = 3
NODE_ROLES = {VENDOR: "vendor", SUPPLIER: "supplier"}  # paper label -> registry role


@dataclass
class Consortium:
    tally: Tally
    nodes: dict[str, DiagnosisNodeAgent] = field(default_factory=dict)
    devices: dict[str, DeviceAgent] = field(default_factory=dict)
    phones: dict[str, SmartphoneAgent] = field(default_factory=dict)
    crews: dict[str, CrewAgent] = field(default_factory=dict)
    names: dict[bytes, str] = field(default_factory=dict)

    def agents(self) -> list[Agent]:
        return [*self.nodes.values(), *self.devices.values(), *self.phones.values(), *self.crews.values()]

    async def stop(self) -> None:
        for agent in self.agents():
            await agent.stop()


class Printer:
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def __call__(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)


async def _setup(admin: Ledger, calls: list[tuple[ContractCall, KeyPair]]) -> list[dict[str, Any]]:
    receipts = await admin.transact_many(calls)
    failed = [r for r in receipts if r["status"] != 1]
    assert not failed, f"setup transaction failed: {failed[0].get('error')}"
    return receipts


LedgerFactory = Callable[[int], Ledger]  # agent index -> that agent's own ledger adapter


async def build_consortium(make_ledger: LedgerFactory, admin: Ledger, funder: KeyPair, anchor: TrustAnchor,
                           say: Printer, paillier_bits: int = 2048) -> Consortium:
    """Identities and agents; on chain: the administrator registers vendors, suppliers and
    smartphones, each vendor its devices (and binds the owner's smartphone), each node its
    crew; every account is funded. The agents publish their endpoints in `start_consortium`."""
    credit_initial = anchor.credit_initial
    tally = Tally()
    c = Consortium(tally)
    started = time.perf_counter()
    identities = await asyncio.to_thread(
        lambda: {name: Identity.from_seed(name, f"gridchain-demo/{name}".encode(), paillier_bits)
                 for name in [*(n.name for n in NODES), *(d.name for d in DEVICES), *PHONES,
                              *(f"crew-{n.name}" for n in NODES)]})
    say(f"  identities: {len(identities)} (Ed25519 + BLS12-381 + Paillier-{paillier_bits}) in "
        f"{time.perf_counter() - started:.1f}s")
    index = iter(range(len(identities)))
    for spec in NODES:
        node = DiagnosisNodeAgent(identities[spec.name], make_ledger(next(index)), credit_initial, tally,
                                  role=spec.role, prices=spec.prices)
        crew = CrewAgent(identities[f"crew-{spec.name}"], make_ledger(next(index)), credit_initial, tally)
        node.crew = crew
        c.nodes[spec.name], c.crews[crew.name] = node, crew
    for d in DEVICES:
        c.devices[d.name] = DeviceAgent(identities[d.name], make_ledger(next(index)), credit_initial, tally,
                                        device_type=d.device_type)
    for p in PHONES:
        c.phones[p] = SmartphoneAgent(identities[p], make_ledger(next(index)), credit_initial, tally)
    c.names = {a.address: a.name for a in c.agents()}
    administrator = admin_key()
    if not await Registry.is_member(admin, administrator.address):
        raise RuntimeError("this cluster's genesis does not list the demo administrator "
                           "(start it with `node.py demo`, or init it with the demo's contract parameters)")
    members = [(Registry.register(a.identity.key.public_key, "smartphone" if a.role == PHONE else NODE_ROLES[a.role],
                                  a.identity.bls_public, a.identity.paillier_public.to_bytes(),
                                  registration_consent(a.identity.key, anchor.chain_id, REGISTRY, 0)),
                 administrator)
               for a in [*c.nodes.values(), *c.phones.values()]]
    receipts = await _setup(admin, members)
    now_s = now_ms() // 1000
    devices = []
    for d in DEVICES:
        device, vendor = c.devices[d.name], c.nodes[d.vendor]
        warranty_end_s = now_s + 365 * 86_400 if d.in_warranty else now_s - 86_400
        consent = registration_consent(device.identity.key, anchor.chain_id, vendor.address, 0)  # new IDs: nonce 0
        devices.append((Registry.register_device(device.identity.key.public_key, d.device_type, warranty_end_s,
                                                 device.identity.bls_public, device.identity.paillier_public.to_bytes(),
                                                 consent), vendor.identity.key))
    binds = [(Registry.bind_smartphone(c.devices[d.name].address, c.phones[d.phone].address),
              c.nodes[d.vendor].identity.key) for d in DEVICES]
    crews = [(node.crew_registration(anchor.chain_id), node.identity.key) for node in c.nodes.values()]
    funding = [(Token.transfer(a.address, FUNDS), funder)
               for a in [*c.nodes.values(), *c.devices.values(), *c.phones.values()]]
    receipts += await _setup(admin, devices + crews + funding)
    receipts += await _setup(admin, binds)
    say(f"  registered {len(NODES)} diagnosis nodes with a crew each, {len(PHONES)} smartphones, "
        f"{len(DEVICES)} devices; funded {len(c.nodes) + len(c.devices) + len(c.phones)} accounts with {FUNDS} "
        f"(blocks {min(r['blockNumber'] for r in receipts)}-{max(r['blockNumber'] for r in receipts)})")
    return c


async def start_consortium(c: Consortium, admin: Ledger, say: Printer) -> None:
    """Start every inbox; each agent publishes its endpoint in the registry (its own
    signed transaction): that is where senders find it, by proof."""
    try:
        for agent in c.agents():
            await agent.start()
        receipts = await _setup(admin, [(a.endpoint_call(), a.identity.key) for a in c.agents()])
    except BaseException:
        await c.stop()
        raise
    say(f"  {len(receipts)} inbox endpoints published in the registry (blocks "
        f"{min(r['blockNumber'] for r in receipts)}-{max(r['blockNumber'] for r in receipts)})")


# failure paths -------------------------------------------------------------------------------
async def _expect_rejection(sender: Agent, to: Agent, data: bytes) -> str:
    """Post raw bytes to `to`'s published inbox; the receiver's verdict."""
    try:
        await sender.courier.deliver(await sender.directory.endpoint(to.address), data)
    except RemoteRejection as exc:
        return exc.reason
    return "accepted"


async def _refusal(sender: Agent, to: Agent, payload: Payload, counterpart: str) -> str:
    """Seal and send a message the receiver should refuse; its reason ("accepted" if not)."""
    try:
        await sender.send(to.address, payload, counterpart)
    except RemoteRejection as exc:
        return exc.reason
    return "accepted"


async def message_failures(c: Consortium, say: Printer) -> dict[str, Any]:
    """Forged, tampered, replayed and stale sealed messages; an unregistered device."""
    device, vendor, attacker = c.devices["meter-A"], c.nodes["vendor-A"], c.nodes["supplier-3"]
    rogue = Identity.from_seed("rogue-meter", b"gridchain-demo/rogue-meter")
    run = FlowRun("failures:messages", None, c.tally, say)
    results: dict[str, Any] = {}
    vendor_key = await device.paillier_of(vendor.address)
    free = Payload(0, "", "free_service", {"symptom": "firmware-fault"})

    with run.step("1", "attacker", "forged: supplier-3 signs a message claiming to be meter-A") as d:
        forged = seal(free.to_bytes(), recipient_paillier_public=vendor_key, sender_id=device.address,
                      receiver_id=vendor.address, sender_bls_key=attacker.identity.bls_key, timestamp_ms=now_ms())
        d["reason"] = await _expect_rejection(attacker, vendor, forged.encode())
        results["forged_message"] = {"expected": "bad_signature", "observed": d["reason"]}
    with run.step("2", "attacker", "tampered: one byte of a genuine message's C flipped in transit") as d:
        genuine = device.seal_for(free, vendor.address, vendor_key, vendor.role)
        ciphertext = bytearray(genuine.ciphertext)
        ciphertext[len(ciphertext) // 2] ^= 0x01
        tampered = SealedMessage(bytes(ciphertext), genuine.receiver_id, genuine.sender_id, genuine.timestamp_ms,
                                 genuine.signature)
        d["reason"] = await _expect_rejection(attacker, vendor, tampered.encode())
        results["tampered_message"] = {"expected": "bad_signature", "observed": d["reason"]}
    with run.step("3", "attacker", "replayed: a genuine message accepted once, then sent again") as d:
        first = await _expect_rejection(device, vendor, genuine.encode())
        d["reason"] = await _expect_rejection(attacker, vendor, genuine.encode())
        results["replayed_message"] = {"expected": "accepted then replay", "observed": f"{first} then {d['reason']}"}
    with run.step("4", "attacker", "stale: a genuine message whose T is 2 minutes old") as d:
        old = device.seal_for(free, vendor.address, vendor_key, vendor.role, timestamp_ms=now_ms() - 120_000)
        d["reason"] = await _expect_rejection(attacker, vendor, old.encode())
        results["stale_message"] = {"expected": "stale", "observed": d["reason"]}
    with run.step("5", "rogue", "unregistered device: its request and its sealed message") as d:
        try:
            await device.ledger.transact(Dsc.open_request(rogue.address).with_value(100), rogue.key)
            tx_outcome = "accepted"
        except (TransactionRefused, TransactionFailed) as exc:
            tx_outcome = str(exc)
        message = seal(free.to_bytes(), recipient_paillier_public=vendor_key, sender_id=rogue.address,
                       receiver_id=vendor.address, sender_bls_key=rogue.bls_key, timestamp_ms=now_ms())
        d["reason"] = await _expect_rejection(attacker, vendor, message.encode())
        results["unregistered_device"] = {"expected": "transaction refused by the mempool; unknown_sender",
                                          "observed": f"{tx_outcome}; {d['reason']}"}
    ok = {
        "forged_message": results["forged_message"]["observed"] == "bad_signature",
        "tampered_message": results["tampered_message"]["observed"] == "bad_signature",
        "replayed_message": results["replayed_message"]["observed"] == "accepted then replay",
        "stale_message": results["stale_message"]["observed"] == "stale",
        "unregistered_device": tx_outcome != "accepted" and d["reason"] == "unknown_sender",
    }
    for name in results:
        results[name]["ok"] = ok[name]
    report = run.finish(all(ok.values()), opener_rejections={str(k): v for k, v in vendor.opener.rejections.items()})
    return {"paths": results, "report": report.to_json()}


async def auction_failures(c: Consortium, say: Printer) -> dict[str, Any]:
    """An out-of-warranty device asks for free service (refused, goes to auction); a bidder
    commits and never reveals; the winner never completes and loses its deposit."""
    device, phone = c.devices["meter-C"], c.phones["phone-2"]
    vendor, quitter, absent = c.nodes["vendor-A"], c.nodes["supplier-1"], c.nodes["vendor-B"]
    run = FlowRun("failures:auction", None, c.tally, say)
    results: dict[str, Any] = {}
    terms = await Dsc.terms(device.ledger, "meter")
    balances_before = {a.name: await Token.balance_of(device.ledger, a.address) for a in (device, quitter, absent)}
    with run.step("1", DEVICE, "out of warranty, asks its vendor for free service over the channel") as d:
        d["reason"] = await _refusal(device, vendor, Payload(0, "", "free_service", {"symptom": "firmware-fault"}),
                                     VENDOR)
    with run.step("2", DEVICE, "asks the DSC for free service (request deposit only)") as d:
        refused = await device.tx(Dsc.open_request(device.address).with_value(terms.request_deposit), "2",
                                  expect_failure="bad-deposit")
        d.update(block=refused["blockNumber"], tx=refused["transactionHash"], reason="bad-deposit")
        results["out_of_warranty_free_service"] = {"expected": "out_of_warranty; bad-deposit; auction",
                                                   "observed_message": run.report.steps[0].detail["reason"],
                                                   "observed_tx": refused.get("error", "")}
    auction = await run_auction(run, device, {quitter: NO_REVEAL, absent: 105}, labels=("3", "4", "5", "6"))
    request = await device.request(auction.request_id)
    results["out_of_warranty_free_service"]["observed_auction"] = f"request {auction.request_id} auctioned"
    forfeits = {c.names.get(bytes.fromhex(f["party"][2:]), f["party"]): f["reason"] for f in auction.forfeited}
    results["bidder_no_reveal"] = {"expected": "supplier-1 forfeits its bid deposit (no-reveal)",
                                   "observed": forfeits}
    with run.step("7", SUPPLIER, f"winner {c.names.get(auction.winner)} never serves; after the deadline anyone "
                  "expires "
                  "the request") as d:
        await asyncio.sleep(max(0, request.deadline_ms - now_ms() + 300) / 1000)
        receipt = None
        for _ in range(40):
            try:
                receipt = await device.tx(Dsc.expire(auction.request_id), "7")
                break
            except Exception as exc:  # noqa: BLE001 - deadline-not-reached until the block time passes it
                if "deadline-not-reached" not in str(getattr(exc, "receipt", {}).get("error", exc)):
                    raise
                await asyncio.sleep(0.2)
        assert receipt is not None
        defaulted = next(e for e in receipt["events"] if e["name"] == "Defaulted")["fields"]
        d.update(block=receipt["blockNumber"], tx=receipt["transactionHash"],
                 reason=defaulted["reason"], party=c.names.get(bytes.fromhex(defaulted["party"][2:])))
    balances_after = {a.name: await Token.balance_of(device.ledger, a.address) for a in (device, quitter, absent)}
    delta = {k: balances_after[k] - balances_before[k] for k in balances_after}
    results["winner_never_completes"] = {"expected": f"{absent.name} defaults (no-completion) and forfeits "
                                                     f"{terms.bid_deposit} to the payer",
                                         "observed": {"defaulted": d["party"], "reason": d["reason"],
                                                      "balance_change": delta}}
    ok = {
        "out_of_warranty_free_service": run.report.steps[0].detail["reason"] == "out_of_warranty"
        and (refused.get("error") or "").startswith("bad-deposit") and auction.request_id > 0,
        "bidder_no_reveal": forfeits.get(quitter.name) == "no-reveal",
        "winner_never_completes": d["party"] == absent.name and d["reason"] == "no-completion"
        and delta == {device.name: 2 * terms.bid_deposit, quitter.name: -terms.bid_deposit,
                      absent.name: -terms.bid_deposit},
    }
    for name in results:
        results[name]["ok"] = ok[name]
    del phone
    report = run.finish(all(ok.values()))
    return {"paths": results, "report": report.to_json()}


async def authorisation_failures(c: Consortium, say: Printer) -> dict[str, Any]:
    """Messages that are authentic, fresh and well-formed but sent by a party the protocol
    does not allow for that request and step (diagnosis.authorise), in the middle of a
    live ROW flow: the losing bidder's repair policy, the losing bidder's crew, packages
    from a foreign and an unbound device, a message at the wrong step, a repeated step.
    Each is refused with its reason and the flow then completes with the winner."""
    device = c.devices["meter-C"]
    bidders = {c.nodes["supplier-1"]: 90, c.nodes["vendor-A"]: 120}
    run = FlowRun("failures:authorisation", None, c.tally, say)
    auction = await run_auction(run, device, bidders)
    request_id = auction.request_id
    winner = next(n for n in bidders if n.address == auction.winner)
    loser = next(n for n in bidders if n is not winner)
    assert loser.crew is not None
    observed: dict[str, str] = {}
    attack = {"action": "firmware-update", "firmware": "6.6.6-attacker"}
    with run.step("5", loser.role, f"losing bidder {loser.name} sends the device a repair policy") as d:
        d["reason"] = observed["losing_bidder_repair"] = await _refusal(
            loser, device, Payload(request_id, "6.4", "repair_policy", attack), DEVICE)
        d["firmware"] = device.firmware
    with run.step("6", CREW, f"{loser.crew.name} (crew of the losing bidder) claims the on-site repair") as d:
        d["reason"] = observed["crew_of_other_node"] = await _refusal(
            loser.crew, device, Payload(request_id, "7", "onsite_repair", {"policy": attack}), DEVICE)
    body = {"request": request_id, "node": "0x" + winner.address.hex(), "price": auction.price}
    with run.step("7", DEVICE, "meter-A (not the requester) sends phone-2 a package for meter-C's request") as d:
        d["reason"] = observed["package_from_foreign_device"] = await _refusal(
            c.devices["meter-A"], c.phones["phone-2"], Payload(request_id, "9", "package", body), PHONE)
    with run.step("8", DEVICE, "meter-C sends its package to phone-1, which it is not bound to") as d:
        d["reason"] = observed["package_from_unbound_device"] = await _refusal(
            device, c.phones["phone-1"], Payload(request_id, "9", "package", body), PHONE)
    fault = {"symptom": "firmware-fault", "component": "comm-module"}
    with run.step("9", DEVICE, "a fault message labelled with RMW's step 2 for an auctioned request") as d:
        d["reason"] = observed["wrong_step"] = await _refusal(
            device, winner, Payload(request_id, "2", "fault", fault), winner.role)
    with run.step("10", "k_i+nv_i", f"the flow goes on: fault to {winner.name}, its repair policy applied") as d:
        await device.send(winner.address, Payload(request_id, "6.2", "fault", fault), winner.role)
        await winner.expect(request_id, "fault")
        await winner.tx(Dsc.set_mode(request_id, "remote"), "6.4")
        policy = Payload(request_id, "6.4", "repair_policy", DiagnosisNodeAgent.diagnose(fault)["policy"])
        genuine = await winner.send(device.address, policy, DEVICE)
        repair, _ = await device.expect(request_id, "repair_policy")
        device.apply_repair(repair.body)
        d["firmware"] = device.firmware
    with run.step("11", winner.role, "the winner repeats the step: a fresh seal, then the same bytes") as d:
        observed["replayed_step"] = await _refusal(winner, device, policy, DEVICE)
        observed["replayed_message"] = await _expect_rejection(winner, device, genuine.encode())
        d["reason"] = f"{observed['replayed_step']}, {observed['replayed_message']}"
    with run.step("12", DEVICE, "completion: the winner is paid") as d:
        done = await device.tx(Dsc.complete(request_id, keccak256(b"authorisation-path")), "7")
        d.update(block=done["blockNumber"], tx=done["transactionHash"])
    expected = {"losing_bidder_repair": str(Refusal.SENDER_NOT_ASSIGNED),
                "crew_of_other_node": str(Refusal.CREW_NOT_OF_ASSIGNED),
                "package_from_foreign_device": str(Refusal.NOT_REQUESTER),
                "package_from_unbound_device": str(Refusal.NOT_BOUND_DEVICE),
                "wrong_step": str(Refusal.WRONG_STEP),
                "replayed_step": str(Refusal.STEP_REPEATED),
                "replayed_message": str(RejectReason.REPLAY)}
    paths: dict[str, Any] = {name: {"expected": want, "observed": observed[name], "ok": observed[name] == want}
                             for name, want in expected.items()}
    request = await device.request(request_id)
    paths["flow_goes_on"] = {"expected": "completed, firmware 1.0.1 from the winner",
                             "observed": f"{request.status}, firmware {device.firmware}",
                             "ok": request.status == "completed" and device.firmware == "1.0.1"}
    report = run.finish(all(p["ok"] for p in paths.values()), winner=winner.name, loser=loser.name)
    return {"paths": paths, "report": report.to_json()}


async def collusion(c: Consortium, say: Printer) -> dict[str, Any]:
    """A supplier ring bids far below the market over several auctions (IV.B): the k-means
    check flags it every round and its suspect index w_i rises at the threshold h."""
    device = c.devices["meter-D"]
    bidders = {c.nodes[name]: price for name, price in RING_PRICES.items()}
    before = {n.name: await Dsc.bidder_state(device.ledger, n.address) for n in bidders}
    rounds: list[dict[str, Any]] = []
    tx_hashes = []
    for number in range(1, COLLUSION_ROUNDS + 1):
        run = FlowRun(f"collusion:{number}", None, c.tally, say)
        auction = await run_auction(run, device, bidders)
        winner = next(n for n in bidders if n.address == auction.winner)
        await winner.tx(Dsc.set_mode(auction.request_id, "remote"), "5")
        await device.tx(Dsc.complete(auction.request_id, b"\x00" * 32), "5")
        report = run.finish(True)
        tx_hashes += [t["tx"] for t in report.to_json()["transactions"]]
        states = {n.name: await Dsc.bidder_state(device.ledger, n.address) for n in bidders}
        suspects = sorted(c.names.get(bytes.fromhex(s[2:]), s) for s in auction.closed["suspects"])
        rounds.append({"round": number, "request_id": auction.request_id, "winner": winner.name,
                       "price": auction.price, "suspects": suspects,
                       "centroids": [x / SCALE for x in auction.closed["centroids"]],
                       "ranking_O": {c.names.get(bytes.fromhex(b[2:]), b): o / SCALE
                                     for b, _, o in auction.closed["ranking"]},
                       "states": {k: {"w": v.w, "d": v.d / SCALE, "suspect_count": v.suspect_count}
                                  for k, v in states.items()}})
        say(f"      round {number}: winner {winner.name} at {auction.price}; suspects {suspects}; "
            + ", ".join(f"{k} w={v.w} n={v.suspect_count}" for k, v in states.items() if k in RING))
    after = {n.name: await Dsc.bidder_state(device.ledger, n.address) for n in bidders}
    ring_flagged = all(set(RING) <= set(r["suspects"]) for r in rounds)
    honest_clear = all(not (set(r["suspects"]) - set(RING)) for r in rounds)
    w_raised = all(after[name].w > before[name].w for name in RING)
    honest_w = all(after[n].w == before[n].w for n in RING_PRICES if n not in RING)
    return {"ring": list(RING), "rounds": rounds, "transactions": tx_hashes,
            "w_before": {k: v.w for k, v in before.items()}, "w_after": {k: v.w for k, v in after.items()},
            "ok": ring_flagged and honest_clear and w_raised and honest_w,
            "checks": {"ring_flagged_every_round": ring_flagged, "no_honest_suspect": honest_clear,
                       "ring_w_raised": w_raised, "honest_w_unchanged": honest_w}}


def suspicion(report: dict[str, Any]) -> dict[str, Any]:
    """Whom the k-means check flagged (docs/auction.md): in the normal auctions (the flows
    and the failure paths, every bidder honest) nobody should be; in the collusion rounds
    the ring should be, every round."""
    reports = [*report["flows"].values(), *report["failure_reports"]]
    normal = [{"flow": r["name"], "request": step.get("request", r.get("request_id")), "suspects": step["suspects"]}
              for r in reports for step in r["steps"] if "suspects" in step]
    flagged = sorted({name for auction in normal for name in auction["suspects"]})
    ring_flagged = report["collusion"]["checks"]["ring_flagged_every_round"]
    return {"normal_auctions": normal, "honest_flagged": flagged, "ring": report["collusion"]["ring"],
            "ring_flagged_every_round": ring_flagged, "ok": not flagged and ring_flagged}


# summary -------------------------------------------------------------------------------------
async def final_state(c: Consortium) -> dict[str, Any]:
    client = c.phones["phone-1"].ledger
    out: dict[str, Any] = {"balances": {}, "credits": {}, "bidder_states": {}}
    for agent in [*c.nodes.values(), *c.devices.values(), *c.phones.values()]:
        out["balances"][agent.name] = await Token.balance_of(client, agent.address)
        if agent.role in (VENDOR, SUPPLIER) or isinstance(agent, DeviceAgent):
            out["credits"][agent.name] = await Credit.credit_of(client, agent.address) / SCALE
        if agent.role in (VENDOR, SUPPLIER):
            state = await Dsc.bidder_state(client, agent.address)
            out["bidder_states"][agent.name] = {"w": state.w, "d": state.d / SCALE,
                                                "suspect_count": state.suspect_count}
    return out


def flow_ok(flow: dict[str, Any]) -> tuple[bool, list[str]]:
    """Completed; sent exactly what the protocol declares (message by message, transaction
    by transaction); every Table 3/4 cell equals our by-design count."""
    problems = list(flow["problems"])
    if not flow["completed"]:
        problems.append("not completed")
    for role, row in flow["tables"]["table3"].items():
        if row["gridchain"] != row["gridchain_by_design"]:
            problems.append(f"table 3 {role}: {row['gridchain']} vs by design {row['gridchain_by_design']}")
    for role, row in flow["tables"]["table4"].items():
        if row["gridchain"] != row["gridchain_by_design"]:
            problems.append(f"table 4 {role}: {row['gridchain']} vs by design {row['gridchain_by_design']}")
    return not problems, problems


def _legend(say: Printer) -> None:
    say("  symbols: " + "; ".join(f"{k} = {v}" for k, v in SYMBOLS.items()))
    say("  step labels are the figures' step numbers; n.m is part m of step n (SOW 6.1-6.6 = SMW 1-6, "
        "ROW 6.1-6.5 = RMW 1-5)")
    say("  tables: 'ours' = measured in this run, 'paper' = Zhang & Fan Table 3 (unicast/broadcast) and "
        "Table 4 (T_E/T_M/T_P); '-' = no such row in the paper")


def _cell(row: dict[str, int] | None, keys: tuple[str, ...]) -> str:
    return "-" if row is None else "/".join(str(row[k]) for k in keys)


def _print_flow_summary(say: Printer, flow: dict[str, Any]) -> None:
    t3, t4 = flow["tables"]["table3"], flow["tables"]["table4"]
    uni_b, ops = ("unicast", "broadcast"), ("T_E", "T_M", "T_P")
    say(f"    {'role':<11}{'ours u/b':>10}{'paper u/b':>11}   {'ours T_E/T_M/T_P':>17}{'paper':>9}")
    for role, row in t3.items():
        cost = t4.get(role)
        ops_text = f"{_cell(cost['gridchain'], ops):>17}{_cell(cost['paper_zhang_fan'], ops):>9}" if cost else ""
        say(f"    {role:<11}{_cell(row['gridchain'], uni_b):>10}{_cell(row['paper_zhang_fan'], uni_b):>11}   "
            f"{ops_text}")
    timings = flow["timings"]
    say(f"    time: flow {timings['flow_ms']:.0f} ms, crypto {timings['crypto_ms']:.1f} ms "
        + ", ".join(f"{op} x{v['count']} mean {v['mean_ms']:.2f} ms" for op, v in timings["per_operation"].items()))


async def demonstrate(make_ledger: LedgerFactory, admin: Ledger, funder: KeyPair, anchor: TrustAnchor,
                      say: Printer, paillier_bits: int = 2048) -> dict[str, Any]:
    """Everything the demo does, on any ledger adapter: the consortium, the four flows,
    the failure paths, the collusion rounds and the final state."""
    say("== consortium")
    _legend(say)
    c = await build_consortium(make_ledger, admin, funder, anchor, say, paillier_bits)
    await start_consortium(c, admin, say)
    report: dict[str, Any] = {"ok": False}
    report["consortium"] = {
        "nodes": [{"name": s.name, "role": s.role, "address": "0x" + c.nodes[s.name].address.hex(),
                   "crew": "0x" + c.crews[f"crew-{s.name}"].address.hex(), "prices": s.prices} for s in NODES],
        "devices": [{"name": d.name, "type": d.device_type, "vendor": d.vendor, "in_warranty": d.in_warranty,
                     "phone": d.phone, "address": "0x" + c.devices[d.name].address.hex()} for d in DEVICES],
        "smartphones": [{"name": p, "address": "0x" + c.phones[p].address.hex()} for p in PHONES],
        "prices": PRICES, "contract_params": demo_contract_params()}
    try:
        flows: dict[str, FlowReport] = {}
        say("== RMW: remote maintenance within warranty (Fig. 5)")
        flows["RMW"] = await fl.rmw(c.tally, c.devices["meter-A"], c.nodes["vendor-A"], c.phones["phone-1"], say)
        say("== SMW: on-site maintenance within warranty (Fig. 6)")
        flows["SMW"] = await fl.smw(c.tally, c.devices["relay-A"], c.nodes["vendor-A"], c.phones["phone-1"], say)
        bidders = {n: n.prices for n in c.nodes.values()}
        say("== ROW: remote maintenance out of warranty, auction (Fig. 7)")
        flows["ROW"] = await fl.row(c.tally, c.devices["meter-B"], c.phones["phone-2"],
                                    {n: p["meter"] for n, p in bidders.items()}, say)
        say("== SOW: on-site maintenance out of warranty, auction (Fig. 8)")
        flows["SOW"] = await fl.sow(c.tally, c.devices["relay-B"], c.phones["phone-2"],
                                    {n: p["relay"] for n, p in bidders.items()}, say)
        report["flows"] = {}
        for name in FLOWS:
            flow = flows[name].to_json()
            flow["ok"], flow["problems"] = flow_ok(flow)
            report["flows"][name] = flow
            say(f"  {name}: completed={flow['completed']} ok={flow['ok']} request {flow['request_id']} "
                f"blocks {flow['blocks'][0]}-{flow['blocks'][-1]} {flow['problems'] or ''}")
            _print_flow_summary(say, flow)
        say("== failure paths: messages")
        messages = await message_failures(c, say)
        say("== failure paths: auction")
        auction = await auction_failures(c, say)
        say("== failure paths: who may send what (authorisation read from the chain)")
        authorisation = await authorisation_failures(c, say)
        report["failure_paths"] = {**messages["paths"], **auction["paths"],
                                   **{f"authorisation:{k}": v for k, v in authorisation["paths"].items()}}
        report["failure_reports"] = [messages["report"], auction["report"], authorisation["report"]]
        for name, path in report["failure_paths"].items():
            observed = path.get("observed")
            say(f"  {name}: ok={path['ok']}" + (f" ({observed})" if isinstance(observed, str) else ""))
        say(f"== collusion: ring {', '.join(RING)} bids low over {COLLUSION_ROUNDS} auctions")
        report["collusion"] = await collusion(c, say)
        say(f"  collusion handled: ok={report['collusion']['ok']} w {report['collusion']['w_before']} -> "
            f"{report['collusion']['w_after']}")
        report["suspicion"] = suspicion(report)
        say(f"  k-means check: honest bidders flagged in normal auctions {report['suspicion']['honest_flagged']}; "
            f"ring flagged every round {report['suspicion']['ring_flagged_every_round']}")
        report["final"] = await final_state(c)
        say("== final balances and credits")
        for name, balance in report["final"]["balances"].items():
            credit = report["final"]["credits"].get(name)
            say(f"  {name:<12} balance {balance:>7}" + (f"  credit {credit:.2f}" if credit is not None else ""))
        report["tables_paper_zhang_fan"] = {"table3": PAPER_TABLE3, "table4": PAPER_TABLE4}
        report["tables_gridchain_by_design"] = {"table3": {name: gridchain_table3(name) for name in FLOWS}}
        report["table_reasons"] = {"table3": TABLE3_REASONS, "table4": TABLE4_REASONS}
        report["ok"] = (all(report["flows"][f]["ok"] for f in FLOWS)
                        and all(p["ok"] for p in report["failure_paths"].values()) and report["collusion"]["ok"]
                        and report["suspicion"]["ok"])
    finally:
        await c.stop()
    return report


async def run_demo(urls: list[str], accounts_path: Path, *, genesis_path: Path | None = None,
                   quiet: bool = False) -> dict[str, Any]:
    """The demo on a running cluster: each agent has its own RPC ledger (its own node
    first in its URL list) and light client anchored in genesis."""
    say = Printer(quiet)
    started = time.perf_counter()
    funder = account_keys(accounts_path.parent)[0]
    anchor = TrustAnchor.from_genesis(genesis_path or accounts_path.parent / "genesis.toml")

    def make_ledger(index: int) -> Ledger:
        first = index % len(urls)
        return RpcLedger(urls[first:] + urls[:first], anchor)

    admin = RpcLedger(urls, anchor)
    try:
        report = await demonstrate(make_ledger, admin, funder, anchor, say)
    finally:
        await admin.close()
    report["cluster"] = {"rpc": urls, "chain_id": anchor.chain_id, "bookkeepers": len(anchor.bookkeepers)}
    report["duration_s"] = round(time.perf_counter() - started, 1)
    say(f"== demo {'OK' if report['ok'] else 'NOT OK'} in {report['duration_s']} s")
    return report
