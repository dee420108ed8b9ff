"""An in-process consortium for the diagnosis tests (LocalChain, one process): an
administrator in genesis registers vendors, suppliers and smartphones, each vendor its
devices (binding the owner's smartphone), each node its crew; every account is funded and
every agent publishes its inbox endpoint. Tests then run the reacting services on it
(tests/test_diagnosis_services.py). The demo's own consortium is registered by the agents
themselves (diagnosis/demo.py, tests/test_diagnosis_consortium.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chain.genesis import Genesis
from client.contracts import ContractCall, Registry, Token
from contracts.addresses import REGISTRY
from contracts.registry import registration_consent
from contracts.testing import key_of
from crypto import KeyPair, keccak256
from diagnosis.agents import Agent, CrewAgent, DeviceAgent, DiagnosisNodeAgent, Identity, SmartphoneAgent, Tally, now_ms
from diagnosis.demo import demo_contract_params
from diagnosis.ledger import Ledger, LocalChain
from diagnosis.lightclient import TrustAnchor
from diagnosis.protocol import PHONE, SUPPLIER, VENDOR

FUNDER = "funder"
FUNDS = 100_000
NODE_ROLES = {VENDOR: "vendor", SUPPLIER: "supplier"}  # paper label -> registry role


def admin_key() -> KeyPair:
    return KeyPair.from_seed(keccak256(b"gridchain-test/registry-admin"))


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
    DeviceSpec("meter-A", "meter", "vendor-A", True, "phone-1"),
    DeviceSpec("relay-A", "relay", "vendor-A", True, "phone-1"),
    DeviceSpec("meter-B", "meter", "vendor-B", False, "phone-2"),
    DeviceSpec("relay-B", "relay", "vendor-B", False, "phone-2"),
    DeviceSpec("meter-C", "meter", "vendor-A", False, "phone-2"),
    DeviceSpec("meter-D", "meter", "vendor-B", False, "phone-1"),
)
PHONES = ("phone-1", "phone-2")


def local_chain() -> LocalChain:
    params = demo_contract_params()
    params["registry"] = {"admins": ["0x" + admin_key().address.hex()]}
    # auction windows long enough that a loaded box still commits and reveals inside them
    params["dsc"].update(commit_ms=2_000, reveal_ms=1_500, service_ms=15_000)
    return LocalChain(Genesis.from_dict({
        "chain_id": 7, "t": 1, "timestamp_ms": 1_700_000_000_000,
        "bookkeepers": [{"name": f"b{i}", "public_key": key_of(f"bookkeeper-{i}").public_key.hex()}
                        for i in range(3)],
        "accounts": [{"public_key": key_of(FUNDER).public_key.hex(), "balance": 10**9}],
        "contracts": params}))


@dataclass
class Consortium:
    tally: Tally
    nodes: dict[str, DiagnosisNodeAgent] = field(default_factory=dict)
    devices: dict[str, DeviceAgent] = field(default_factory=dict)
    phones: dict[str, SmartphoneAgent] = field(default_factory=dict)
    crews: dict[str, CrewAgent] = field(default_factory=dict)

    def agents(self) -> list[Agent]:
        return [*self.nodes.values(), *self.devices.values(), *self.phones.values(), *self.crews.values()]

    async def stop(self) -> None:
        for agent in self.agents():
            await agent.stop()


async def _setup(admin: Ledger, calls: list[tuple[ContractCall, KeyPair]]) -> list[dict[str, Any]]:
    receipts = await admin.transact_many(calls)
    failed = [r for r in receipts if not r.ok]
    assert not failed, f"setup transaction failed: {failed[0].get('error')}"
    return receipts


async def build_consortium(local: LocalChain, paillier_bits: int = 1024) -> Consortium:
    """Identities, agents and their registrations; every inbox started and published."""
    admin, anchor = local.ledger(), TrustAnchor.of(local.genesis)
    tally = Tally()
    c = Consortium(tally)
    names = [*(n.name for n in NODES), *(d.name for d in DEVICES), *PHONES, *(f"crew-{n.name}" for n in NODES)]
    ids = {name: Identity.from_seed(name, f"gridchain-test/{name}".encode(), paillier_bits) for name in names}
    for spec in NODES:
        node = DiagnosisNodeAgent(ids[spec.name], local.ledger(), anchor.credit_initial, tally, role=spec.role,
                                  prices=spec.prices)
        node.crew = CrewAgent(ids[f"crew-{spec.name}"], local.ledger(), anchor.credit_initial, tally)
        c.nodes[spec.name], c.crews[node.crew.name] = node, node.crew
    for d in DEVICES:
        c.devices[d.name] = DeviceAgent(ids[d.name], local.ledger(), anchor.credit_initial, tally,
                                        device_type=d.device_type)
    for p in PHONES:
        c.phones[p] = SmartphoneAgent(ids[p], local.ledger(), anchor.credit_initial, tally)
    administrator = admin_key()
    # every registration carries the member key's consent to its registrar (a fresh ID: nonce 0)
    await _setup(admin, [(Registry.register(a.identity.key.public_key,
                                            "smartphone" if a.role == PHONE else NODE_ROLES[a.role],
                                            a.identity.bls_public, a.identity.paillier_public.to_bytes(),
                                            registration_consent(a.identity.key, anchor.chain_id, REGISTRY, 0)),
                          administrator) for a in [*c.nodes.values(), *c.phones.values()]])
    now_s = now_ms() // 1000
    devices = []
    for d in DEVICES:
        device, vendor = c.devices[d.name], c.nodes[d.vendor]
        consent = registration_consent(device.identity.key, anchor.chain_id, vendor.address, 0)
        devices.append((Registry.register_device(device.identity.key.public_key, d.device_type,
                                                 now_s + 365 * 86_400 if d.in_warranty else now_s - 86_400,
                                                 device.identity.bls_public, device.identity.paillier_public.to_bytes(),
                                                 consent), vendor.identity.key))
    crews = [(Registry.register(n.crew.identity.key.public_key, "crew", n.crew.identity.bls_public,
                                n.crew.identity.paillier_public.to_bytes(),
                                registration_consent(n.crew.identity.key, anchor.chain_id, n.address, 0)),
              n.identity.key) for n in c.nodes.values() if n.crew is not None]
    funding = [(Token.transfer(a.address, FUNDS), key_of(FUNDER))
               for a in [*c.nodes.values(), *c.devices.values(), *c.phones.values()]]
    await _setup(admin, devices + crews + funding)
    await _setup(admin, [(Registry.bind_smartphone(c.devices[d.name].address, c.phones[d.phone].address),
                          c.nodes[d.vendor].identity.key) for d in DEVICES])
    try:
        for agent in c.agents():
            await agent.start()
        await _setup(admin, [(a.endpoint_call(), a.identity.key) for a in c.agents()])
    except BaseException:
        await c.stop()
        raise
    return c
