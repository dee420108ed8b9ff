"""The parties as services reacting to the chain (diagnosis/services.py), in one process
on the in-process ledger: a device's fault opens a request and everything after it
happens because each service reacts — the vendor serves in warranty; out of warranty the
nodes bid from their own policy, anyone closes, the winner serves; the smartphone
publishes the policy. A node restarted from its store between commit and reveal reveals
and does not commit again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from client.contracts import Dsc, Policy, Token
from contracts import dsc_records
from contracts.addresses import DSC
from diagnosis import SealedMessage, seal
from diagnosis.agents import DeviceAgent, DiagnosisNodeAgent, Identity, now_ms
from diagnosis.channel import Payload, RemoteRejection
from diagnosis.errors import Refusal
from diagnosis.ledger import LocalChain, TransactionRefused
from diagnosis.lightclient import TrustAnchor
from diagnosis.protocol import DEVICE, PHONE, VENDOR
from diagnosis.services import (
    CrewService,
    DeviceService,
    NodePolicy,
    NodeService,
    Operation,
    PhoneService,
    Service,
)
from diagnosis.store import AgentStore
from tests.diagnosis_support import NODES, Consortium, build_consortium, local_chain

pytestmark = pytest.mark.timeout(120)
WAIT_S = 60


def _rules() -> list[list[Any]]:
    return [Policy.rule("report", "power_w", ">=", 1500, "set_mode", "power-saving")]


class Running:
    def __init__(self, c: Consortium, local: LocalChain, directory: Path) -> None:
        self.c, self.local, self.directory = c, local, directory
        self.services: dict[str, Service] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.held: list[AgentStore] = []

    def start(self, name: str, make: Callable[[AgentStore], Service]) -> Service:
        service = make(AgentStore(self.directory / f"{name}.sqlite"))
        self.services[name] = service
        self.tasks[name] = asyncio.create_task(service.run())
        return service

    async def stop(self, name: str) -> None:
        task = self.tasks.pop(name)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # its reactions end before its store closes
        service = self.services.pop(name)
        service.store.close()

    async def hold(self, name: str) -> None:
        """Stop the service's loop but not its agent: its inbox still accepts messages into
        its store (a process whose loop stalls); a service started later resumes them."""
        task = self.tasks.pop(name)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.held.append(self.services.pop(name).store)

    async def until(self, predicate: Callable[[], bool]) -> None:
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while not predicate():
            assert asyncio.get_running_loop().time() < deadline, "condition not reached"
            await asyncio.sleep(0.05)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    local = local_chain()
    c = await build_consortium(local)
    r = Running(c, local, tmp_path)
    for spec in NODES:
        node = c.nodes[spec.name]
        assert node.crew is not None
        r.start(spec.name, lambda store, node=node, spec=spec: NodeService(node, store, NodePolicy(spec.prices),
                                                                         poll_ms=200, crew=node.crew.address))
    for name, crew in c.crews.items():
        r.start(name, lambda store, crew=crew: CrewService(crew, store, poll_ms=200))
    for name, phone in c.phones.items():
        r.start(name, lambda store, phone=phone: PhoneService(phone, store, _rules, poll_ms=200))
    for name, device in c.devices.items():
        r.start(name, lambda store, device=device: DeviceService(device, store, poll_ms=200))
    try:
        yield r
    finally:
        for name in list(r.tasks):
            await r.stop(name)
        for store in r.held:
            store.close()
        await c.stop()
        local.close()


def _done(service: Service, request_id: int) -> bool:
    return bool(service.store.request(request_id).get("done"))


async def test_in_warranty_fault_is_served_by_the_vendor_without_a_script(running: Running) -> None:
    device = running.services["meter-A"]
    assert isinstance(device, DeviceService)
    request_id = await device.fail("firmware-fault", "metering-firmware")
    await running.until(lambda: _done(running.services["phone-1"], request_id))
    request = await Dsc.request(running.local.ledger(), request_id)
    assert request.status == "completed" and request.node == running.c.nodes["vendor-A"].address
    assert running.c.devices["meter-A"].firmware == "1.0.1"
    assert (await Policy.policy(running.local.ledger(), running.c.devices["meter-A"].address))
    kinds = [k for _, k, _ in device.store.messages(request_id)]
    assert kinds == ["fault", "repair_policy", "package"]


async def test_out_of_warranty_nodes_bid_from_their_policy_and_the_winner_serves(running: Running) -> None:
    device = running.services["meter-B"]
    assert isinstance(device, DeviceService)
    request_id = await device.fail("firmware-fault", "comm-module")
    await running.until(lambda: _done(running.services["phone-2"], request_id))
    ledger = running.local.ledger()
    request = await Dsc.request(ledger, request_id)
    bidders = await Dsc.bids(ledger, request_id)
    assert request.status == "completed" and len(bidders) == len(NODES)  # every node serves meters
    # no coupons yet (d_i = 0): the lowest quotation wins, at its price
    cheapest = min(NODES, key=lambda spec: spec.prices["meter"])
    assert request.node == running.c.nodes[cheapest.name].address and request.price == cheapest.prices["meter"]
    assert all(_done(running.services[spec.name], request_id) for spec in NODES)  # losers stop polling it
    assert running.c.devices["meter-B"].firmware == "1.0.1"


async def test_a_node_restarted_between_commit_and_reveal_reveals_and_never_commits_twice(
        running: Running) -> None:
    name = "supplier-1"
    node = running.c.nodes[name]
    device = running.services["meter-C"]
    assert isinstance(device, DeviceService)
    request_id = await device.fail("firmware-fault", "comm-module")
    await running.until(lambda: "bid" in running.services[name].store.request(request_id)
                        and running.services[name].counters.bids == 1)
    await running.stop(name)  # killed after its commit, before the reveal window
    spec = next(s for s in NODES if s.name == name)
    fresh = DiagnosisNodeAgent(node.identity, running.local.ledger(), node.directory.credit_initial,
                               running.c.tally, role=spec.role, prices=spec.prices)
    fresh.crew = node.crew
    await fresh.start()
    await fresh.tx(fresh.endpoint_call(), "")
    assert node.crew is not None
    restarted = running.start(name, lambda store: NodeService(fresh, store, NodePolicy(spec.prices), poll_ms=200,
                                                              crew=node.crew.address))
    try:
        await running.until(lambda: _done(running.services["phone-2"], request_id))
        bid = await Dsc.bid(running.local.ledger(), request_id, node.address)
        assert bid.status == "valid"  # revealed after the restart with the stored salt
        assert restarted.counters.bids == 0  # the chain had its commit: none sent again
    finally:
        await fresh.inbox.stop()
        await fresh.courier.close()


async def test_a_winner_that_never_serves_is_expired_by_the_device_and_nothing_stays_in_escrow(
        running: Running) -> None:
    """supplier-1 (cheapest, so it wins) cannot do remote repairs by its policy: it never
    serves, the device settles through the contract's expiry path after the deadline."""
    name = "supplier-1"
    await running.stop(name)
    spec = next(s for s in NODES if s.name == name)
    running.start(name, lambda store: NodeService(running.c.nodes[name], store,
                                                  NodePolicy(spec.prices, remote=False), poll_ms=200))  # no crew
    ledger = running.local.ledger()
    device = running.services["meter-D"]
    assert isinstance(device, DeviceService)
    address = running.c.devices["meter-D"].address
    before = await Token.balance_of(ledger, address)
    request_id = await device.fail("firmware-fault", "comm-module")
    await running.until(lambda: _done(device, request_id))
    request = await Dsc.request(ledger, request_id)
    terms = await Dsc.terms(ledger, "meter")
    assert request.status == "defaulted" and request.node == running.c.nodes[name].address
    assert device.counters.flows_failed == {"defaulted": 1}
    # deposit and payment guarantee back, plus the defaulting winner's bid deposit
    assert await Token.balance_of(ledger, address) == before + terms.bid_deposit
    for escrow in (dsc_records.deposit_escrow(request_id), dsc_records.payment_escrow(request_id),
                   *(dsc_records.bid_escrow(request_id, n.address) for n in running.c.nodes.values())):
        assert not await Token.escrow(ledger, DSC, escrow)


@pytest.mark.parametrize(("device_name", "phone_name", "symptom", "flow"),
                         [("relay-A", "phone-1", "physical-damage", "SMW"),
                          ("relay-B", "phone-2", "burnt-terminal", "SOW")])
async def test_on_site_repairs_happen_by_reaction(running: Running, device_name: str, phone_name: str,
                                                  symptom: str, flow: str) -> None:
    """SMW and SOW: the node sends Spot, the device picks t_k and tells its smartphone, the
    node briefs its registered crew, the crew repairs at t_k, the device logs it, the node
    reports done, the smartphone confirms, both rate, the smartphone publishes the policy."""
    device = running.services[device_name]
    assert isinstance(device, DeviceService)
    request_id = await device.fail(symptom, "trip-coil")
    await running.until(lambda: _done(running.services[phone_name], request_id))
    ledger = running.local.ledger()
    assigned = (await Dsc.request(ledger, request_id)).node
    winner = next(n for n in running.c.nodes.values() if n.address == assigned)
    await running.until(lambda: _done(running.services[winner.name], request_id))  # it rates after completion
    request = await Dsc.request(ledger, request_id)
    assert request.status == "completed" and request.mode == "on-site" and request.node_done
    assert request.rated_by_requester and request.rated_by_node
    assert winner.crew is not None
    crew = running.services[winner.crew.name]
    assert _done(crew, request_id)
    assert running.c.devices[device_name].repairs[-1] == {"action": "replace-module", "module": "trip-coil"}
    sent = {(d, k) for d, k, _ in device.store.messages(request_id)}
    assert sent == {("sent", "fault"), ("received", "spot"), ("sent", "time"), ("sent", "diagnosis_notice"),
                    ("received", "onsite_repair"), ("sent", "maintenance_report")}
    logged_steps = sorted({step for step, _, _ in await Dsc.messages(ledger, request_id)})
    expected = [2, 4, 5, 6, 7, 9] if flow == "SMW" else [6, 7, 10]
    assert logged_steps == expected


async def test_the_device_runs_by_the_policy_in_force(running: Running) -> None:
    """After RMW the smartphone's policy is in force: the device's next draw report (1.6 kW)
    meets the power rule, which switches it to power saving at block end; the report after
    that shows the lower draw."""
    name = "meter-A"
    await running.stop(name)
    device_agent = running.c.devices[name]
    device = running.start(name, lambda store: DeviceService(device_agent, store, poll_ms=200,
                                                           operation=Operation(report_s=0.3)))
    assert isinstance(device, DeviceService)
    request_id = await device.fail("firmware-fault", "metering-firmware")
    await running.until(lambda: _done(running.services["phone-1"], request_id))
    await running.until(lambda: (device.store.get("operation") or {}).get("power_w") == 900)
    assert device.store.get("operation")["mode"] == "power-saving"
    ledger = running.local.ledger()
    assert await Policy.last_report(ledger, device_agent.address, "power_w") == [900]


def _clone(agent: Any) -> Any:
    """The same party with a fresh process's memory: same identity, new objects."""
    kwargs: dict[str, Any] = {}
    if isinstance(agent, DiagnosisNodeAgent):
        kwargs = {"role": agent.role, "prices": agent.prices}
    elif isinstance(agent, DeviceAgent):
        kwargs = {"device_type": agent.device_type}
    fresh = type(agent)(agent.identity, agent.ledger, agent.directory.credit_initial, agent.tally, **kwargs)
    if isinstance(agent, DiagnosisNodeAgent):
        fresh.crew = agent.crew
    return fresh


@pytest.mark.parametrize(("name", "progress"), [("relay-A", "fault_sent"), ("vendor-A", "spot_sent"),
                                                 ("crew-vendor-A", "inbox"), ("phone-1", "inbox")])
async def test_each_role_stopped_mid_flow_resumes_from_its_store(running: Running, name: str,
                                                                 progress: str) -> None:
    """An on-site repair in warranty (SMW) involves every role; one of them loses its
    memory mid-flow (its service stops, a new agent object starts on the same store and
    publishes its new endpoint): the flow completes, and nothing is paid or sent twice."""
    ledger = running.local.ledger()
    device = running.services["relay-A"]
    assert isinstance(device, DeviceService)
    address = running.c.devices["relay-A"].address
    before = await Token.balance_of(ledger, address)
    request_id = await device.fail("physical-damage", "trip-coil")
    await running.until(lambda: bool(running.services[name].store.request(request_id).get(progress)))
    old = running.services[name]
    make = {NodeService: lambda agent, store: NodeService(agent, store, old.policy, poll_ms=200,  # type: ignore[attr-defined]
                                                          crew=old.crew),  # type: ignore[attr-defined]
            DeviceService: lambda agent, store: DeviceService(agent, store, poll_ms=200),
            CrewService: lambda agent, store: CrewService(agent, store, poll_ms=200),
            PhoneService: lambda agent, store: PhoneService(agent, store, _rules, poll_ms=200)}[type(old)]
    await old.agent.inbox.stop()  # the process dies: its inbox and its service at once
    await running.stop(name)
    fresh = _clone(old.agent)
    if name == "relay-A":
        running.c.devices[name] = fresh
    # its store before its inbox, as in a process (diagnosis/process.py build): a message
    # accepted in between would go to the agent's in-memory store, and be lost with it
    running.start(name, lambda store: make(fresh, store))
    await fresh.start()
    await fresh.tx(fresh.endpoint_call(), "")
    try:
        await running.until(lambda: _done(running.services["phone-1"], request_id))
        request = await Dsc.request(ledger, request_id)
        assert request.status == "completed" and request.node_done
        assert await Token.balance_of(ledger, address) == before  # one deposit, returned
        logged = [step for step, _, _ in await Dsc.messages(ledger, request_id)]
        assert sorted(logged) == [2, 4, 5, 6, 6, 7, 9]  # each step's hash once
    finally:
        await fresh.inbox.stop()
        await fresh.courier.close()


async def test_a_collusion_ring_is_a_policy_and_the_auction_flags_it(running: Running) -> None:
    """Two suppliers whose policies bid far below the market (IV.B "some nodes may conspire
    to bid low for several auction rounds"): over three auctions that happen by reaction,
    k-means puts them in the suspect class each time and their suspect index w rises at
    the threshold; the honest bidders' does not."""
    ring = {"supplier-2": 15, "supplier-3": 16}
    for name, price in ring.items():
        await running.stop(name)
        node = running.c.nodes[name]
        assert node.crew is not None
        running.start(name, lambda store, node=node, price=price: NodeService(
            node, store, NodePolicy({"meter": price, "relay": 250}), poll_ms=200, crew=node.crew.address))
    device = running.services["meter-D"]
    assert isinstance(device, DeviceService)
    ledger = running.local.ledger()
    for _ in range(3):
        request_id = await device.fail("firmware-fault", "comm-module")
        await running.until(lambda request_id=request_id: _done(device, request_id))
    states = {name: await Dsc.bidder_state(ledger, running.c.nodes[name].address) for name in running.c.nodes}
    assert all(states[name].w == 1 for name in ring), states
    assert all(state.w == 0 for name, state in states.items() if name not in ring), states


# who may send what, and messages that are not what they claim -------------------------------
async def _verdict(sender: Any, to: Any, payload: Payload, counterpart: str) -> str:
    """Seal `payload` for `to` and deliver it: the receiver's verdict ("accepted" or its reason)."""
    try:
        await sender.deliver(to.address, await sender.seal(to.address, payload, counterpart), payload, counterpart)
    except RemoteRejection as exc:
        return exc.reason
    return "accepted"


async def _raw_verdict(sender: Any, to: Any, data: bytes) -> str:
    try:
        await sender.courier.deliver(await sender.directory.endpoint(to.address), data)
    except RemoteRejection as exc:
        return exc.reason
    return "accepted"


async def test_messages_the_protocol_does_not_allow_are_refused_and_the_flow_goes_on(running: Running) -> None:
    """meter-A's in-warranty request is assigned to vendor-A, whose service is held back:
    while it is assigned, a node that is not assigned sends the device a repair policy, a
    crew of another node an on-site repair, foreign and unbound devices send smartphones a
    package, a fault arrives at a step of another figure. Each is refused with its typed
    reason; then vendor-A's service starts, the flow completes with its repair, and a
    repeated step (fresh seal) and the same bytes again are refused too."""
    c = running.c
    await running.hold("vendor-A")
    device_service = running.services["meter-A"]
    assert isinstance(device_service, DeviceService)
    device, vendor, other = c.devices["meter-A"], c.nodes["vendor-A"], c.nodes["supplier-1"]
    request_id = await device_service.fail("firmware-fault", "metering-firmware")
    await running.until(lambda: bool(device_service.store.request(request_id).get("fault_sent")))
    attack = {"action": "firmware-update", "firmware": "6.6.6-attacker"}
    assert other.crew is not None
    observed = {
        "losing_bidder_repair": await _verdict(other, device, Payload(request_id, "4", "repair_policy", attack),
                                               DEVICE),
        "crew_of_other_node": await _verdict(other.crew, device, Payload(request_id, "7", "onsite_repair",
                                                                         {"policy": attack}), DEVICE),
        "package_from_foreign_device": await _verdict(c.devices["meter-B"], c.phones["phone-1"],
                                                      Payload(request_id, "7", "package", {}), PHONE),
        "package_from_unbound_device": await _verdict(device, c.phones["phone-2"],
                                                      Payload(request_id, "7", "package", {}), PHONE),
        "wrong_step": await _verdict(device, vendor, Payload(request_id, "6.2", "fault", {}), VENDOR),
    }
    assert observed == {"losing_bidder_repair": "sender_not_assigned", "crew_of_other_node": "crew_not_of_assigned",
                        "package_from_foreign_device": "not_requester",
                        "package_from_unbound_device": "not_bound_device", "wrong_step": "wrong_step"}
    running.start("vendor-A", lambda store: NodeService(vendor, store, NodePolicy(NODES[0].prices), poll_ms=200,
                                                        crew=vendor.crew.address if vendor.crew else None))
    await running.until(lambda: _done(running.services["phone-1"], request_id))
    assert device.firmware == "1.0.1" and "6.6.6-attacker" not in [r.get("firmware") for r in device.repairs]
    policy = running.services["vendor-A"].store.request(request_id)["decision"]["policy"]
    again = Payload(request_id, "4", "repair_policy", policy)
    assert await _verdict(vendor, device, again, DEVICE) == "request_not_active"  # completed by now
    refused = {str(k): v for k, v in device.refusals.items()}
    assert refused == {"sender_not_assigned": 1, "crew_not_of_assigned": 1, "request_not_active": 1}


async def test_a_repeated_step_is_refused_and_the_same_bytes_change_nothing(running: Running) -> None:
    """While a request is assigned, its device accepts one repair policy: the assigned
    node sealing it again is `step_repeated` (naming the copy the device holds), the same
    bytes again are answered with their first verdict and change nothing."""
    c = running.c
    await running.hold("vendor-A")  # the test speaks for vendor-A
    device_service = running.services["meter-A"]
    assert isinstance(device_service, DeviceService)
    device, vendor = c.devices["meter-A"], c.nodes["vendor-A"]
    request_id = await device_service.fail("firmware-fault", "metering-firmware")
    await running.until(lambda: bool(device_service.store.request(request_id).get("fault_sent")))
    await running.hold("meter-A")  # the request stays assigned while the test sends
    await vendor.tx(Dsc.set_mode(request_id, "remote"), "4")
    policy = Payload(request_id, "4", "repair_policy", {"action": "firmware-update", "firmware": "1.0.1"})
    key = await vendor.paillier_of(device.address)
    first = vendor.seal_for(policy, device.address, key, DEVICE)
    assert await _raw_verdict(vendor, device, first.encode()) == "accepted"
    inbox = device_service.store.request(request_id)["inbox"]
    with pytest.raises(RemoteRejection) as repeated:
        await vendor.deliver(device.address, await vendor.seal(device.address, policy, DEVICE), policy, DEVICE)
    assert repeated.value.reason == "step_repeated" and repeated.value.held == first.hash
    assert await _raw_verdict(vendor, device, first.encode()) == "accepted"
    assert device.duplicates == 1 and device.refusals == {Refusal.STEP_REPEATED: 1}
    assert device_service.store.request(request_id)["inbox"] == inbox
    assert [k for d, k, _ in device_service.store.messages(request_id) if d == "received"] == ["repair_policy"]
    resumed = running.start("meter-A", lambda store: DeviceService(device, store, poll_ms=200))
    await running.until(lambda: _done(resumed, request_id))  # the device completes on the first one
    assert (await Dsc.request(running.local.ledger(), request_id)).status == "completed"


async def test_forged_tampered_replayed_stale_and_unregistered_are_refused(running: Running) -> None:
    c = running.c
    device, vendor, attacker = c.devices["meter-A"], c.nodes["vendor-A"], c.nodes["supplier-3"]
    rogue = Identity.from_seed("rogue-meter", b"gridchain-test/rogue-meter", 1024)
    key = await device.paillier_of(vendor.address)
    free = Payload(0, "", "free_service", {"symptom": "firmware-fault"})
    forged = seal(free.to_bytes(), recipient_paillier_public=key, sender_id=device.address,
                  receiver_id=vendor.address, sender_bls_key=attacker.identity.bls_key, timestamp_ms=now_ms())
    genuine = device.seal_for(free, vendor.address, key, VENDOR)
    flipped = bytearray(genuine.ciphertext)
    flipped[len(flipped) // 2] ^= 0x01
    tampered = SealedMessage(bytes(flipped), genuine.receiver_id, genuine.sender_id, genuine.timestamp_ms,
                             genuine.signature)
    stale = device.seal_for(free, vendor.address, key, VENDOR, timestamp_ms=now_ms() - 120_000)
    unregistered = seal(free.to_bytes(), recipient_paillier_public=key, sender_id=rogue.address,
                        receiver_id=vendor.address, sender_bls_key=rogue.bls_key, timestamp_ms=now_ms())
    verdicts = [await _raw_verdict(attacker, vendor, m.encode()) for m in (forged, tampered)]
    verdicts += [await _raw_verdict(device, vendor, genuine.encode()), await _raw_verdict(attacker, vendor,
                                                                                         genuine.encode())]
    verdicts += [await _raw_verdict(attacker, vendor, m.encode()) for m in (stale, unregistered)]
    # the genuine bytes replayed by another party: their verdict again, and nothing done twice
    assert verdicts == ["bad_signature", "bad_signature", "accepted", "accepted", "stale", "unknown_sender"]
    assert vendor.duplicates == 1 and vendor.opener.opened == 1
    with pytest.raises(TransactionRefused):  # the mempool refuses an unknown sender's request
        await device.ledger.transact(Dsc.open_request(rogue.address).with_value(100), rogue.key)


async def test_endpoints_come_from_the_registry_by_proof(running: Running) -> None:
    """The vendor moves its inbox (a new endpoint on chain): the device reads the new one by
    proof after a failed delivery, and the flow completes."""
    c = running.c
    device, vendor = c.devices["meter-A"], c.nodes["vendor-A"]
    assert await device.directory.endpoint(vendor.address) == vendor.inbox.url
    await vendor.inbox.stop()
    await vendor.inbox.start()
    await vendor.tx(vendor.endpoint_call(), "")
    device_service = running.services["meter-A"]
    assert isinstance(device_service, DeviceService)
    request_id = await device_service.fail("firmware-fault", "metering-firmware")
    await running.until(lambda: _done(running.services["phone-1"], request_id))
    assert await device.directory.endpoint(vendor.address) == vendor.inbox.url


class GatedLedger:
    """A receiver's ledger whose batched proof reads (the facts it decides a message by)
    wait until the test opens the gate: a node slow to answer proofs, for as long as the
    test likes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.waiting = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def storage_many(self, slots: Any) -> Any:
        self.waiting += 1
        await self.gate.wait()
        return await self.inner.storage_many(slots)


def _meter_to_gated_vendor(running: Running) -> tuple[Any, Any, GatedLedger, DeviceService]:
    """meter-A, vendor-A with its proof reads behind a gate, GatedLedger, meter-A's service."""
    c = running.c
    device, vendor = c.devices["meter-A"], c.nodes["vendor-A"]
    gated = GatedLedger(vendor.directory.ledger)
    vendor.directory.ledger = gated  # type: ignore[assignment]
    device_service = running.services["meter-A"]
    assert isinstance(device_service, DeviceService)
    return device, vendor, gated, device_service


async def test_a_receiver_slower_to_prove_than_its_sender_waits_gets_one_message(
        running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 100-device run's spiral (docs/diagnosis.md): a receiver proved its facts before
    answering, the sender gave up after its timeout and sealed the step again, and the
    copies were refused as `stale` or `step_repeated`. Here vendor-A's proofs wait until
    meter-A has posted its fault three times, each post given up after the sender's
    timeout (the receiver would wait longer for its verdict, so every one times out):
    the device sends the one copy it sealed again and again, the vendor decides it once
    the proofs come, accepts it, and the device logs that copy's hash once — no second
    seal, no refusal, no rejection."""
    monkeypatch.setattr("diagnosis.channel.SEND_TIMEOUT_S", 1)
    monkeypatch.setattr("diagnosis.agents.ANSWER_WAIT_S", 30.0)  # past the sender's timeout, always
    device, vendor, gated, device_service = _meter_to_gated_vendor(running)
    request_id = await device_service.fail("firmware-fault", "metering-firmware")
    await running.until(lambda: vendor.duplicates >= 2)  # the first post and two more, each timed out
    assert gated.waiting == 1 and not device_service.store.request(request_id).get("fault_sent")
    gated.gate.set()
    await running.until(lambda: bool(device_service.store.request(request_id).get("fault_sent")))
    sent = [h for d, k, h in device_service.store.messages(request_id) if d == "sent" and k == "fault"]
    received = [h for d, k, h in running.services["vendor-A"].store.messages(request_id) if d == "received"]
    assert len(sent) == 1 and received == sent and device.sealed["fault"] == 1
    assert vendor.refusals == {} and not vendor.opener.rejections and vendor.opener.opened == 1
    proven = await running.local.ledger().storage(DSC, dsc_records.messages_key(request_id))
    assert isinstance(proven.value, list)
    assert [e[2] for e in proven.value if e[0] == 2] == [bytes.fromhex(sent[0][2:])]  # step 2's hash, once


async def test_a_message_held_when_its_receiver_stops_is_decided_by_its_next_life(running: Running) -> None:
    """vendor-A holds meter-A's fault (authentic, answered `pending`) and stops before its
    proofs come (its decision is cancelled, as a SIGKILL would end it); its next life, a
    new agent on the same store, decides it at start, and the device's next post of the
    same copy, to the endpoint the new life published, gets that verdict."""
    device, vendor, gated, device_service = _meter_to_gated_vendor(running)
    vendor_store = running.services["vendor-A"].store
    request_id = await device_service.fail("firmware-fault", "metering-firmware")
    await running.until(lambda: gated.waiting == 1 and vendor_store.undecided_count() == 1)
    await running.stop("vendor-A")
    await vendor.stop()
    anchor = TrustAnchor.of(running.local.genesis)
    again = DiagnosisNodeAgent(vendor.identity, running.local.ledger(), anchor.credit_initial, running.c.tally,
                               role=VENDOR, prices=dict(NODES[0].prices))
    running.start("vendor-A", lambda store: NodeService(again, store, NodePolicy(NODES[0].prices), poll_ms=200,
                                                        crew=vendor.crew.address if vendor.crew else None))
    await again.start()
    await again.tx(again.endpoint_call(), "")
    await running.until(lambda: bool(device_service.store.request(request_id).get("fault_sent")))
    sent = [h for d, k, h in device_service.store.messages(request_id) if d == "sent" and k == "fault"]
    received = [h for d, k, h in running.services["vendor-A"].store.messages(request_id) if d == "received"]
    assert len(sent) == 1 and received == sent and device.sealed["fault"] == 1
    assert running.services["vendor-A"].store.undecided_count() == 0 and again.refusals == {}
