"""The credit pump on a live 3-process cluster (issue 13): a vendor admits its own
smartphone and a device it holds the key of, serves itself in warranty and rates itself
100; its credit does not move. The same vendor rated by an independently admitted owner
does move: the rule separates the two on the real chain, not only in-process."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from chain import Value
from client import GridClient, Receipt
from client.contracts import Credit, Dsc, Registry
from contracts.addresses import REGISTRY
from contracts.registry import registration_consent
from crypto import KeyPair, keccak256
from diagnosis.demo import demo_contract_params
from tests.cluster_support import rpc_urls, running_cluster
from vm.fixedpoint import SCALE

pytestmark = pytest.mark.timeout(240)
SERVICES = 4


def _event(receipt: Receipt, name: str) -> Mapping[str, Value]:
    return receipt.event(name).fields


async def _own_device(client: GridClient, vendor: KeyPair, phone: KeyPair, seed: bytes, end_s: int) -> KeyPair:
    device = KeyPair.from_seed(keccak256(seed))
    consent = registration_consent(device, await client.chain_id(), vendor.address, 0)
    await Registry.register_device(device.public_key, "meter", end_s, b"", b"", consent).transact(client, vendor)
    await Registry.bind_smartphone(device.address, phone.address).transact(client, vendor)
    return device


async def _serve(client: GridClient, vendor: KeyPair, phone: KeyPair, device: KeyPair,
                 rating: int) -> Mapping[str, Value]:
    opened = await Dsc.open_request(device.address).with_value(100).transact(client, phone)
    request_id = int(_event(opened, "RequestOpened")["request"])
    await Dsc.set_mode(request_id, "remote").transact(client, vendor)
    await Dsc.complete(request_id, keccak256(b"fault")).transact(client, phone)
    return _event(await Dsc.rate(request_id, rating).transact(client, phone), "Rated")


async def test_credit_pump_fails_on_a_cluster(tmp_path: Path) -> None:
    admin = KeyPair.from_seed(keccak256(b"gridchain-test/registry-admin"))
    params = {**demo_contract_params(), "registry": {"admins": ["0x" + admin.address.hex()]}}
    with running_cluster(tmp_path, contracts=params) as (processes, accounts):
        vendor, own_phone, independent_phone = accounts[:3]
        async with GridClient(rpc_urls(processes)[0]) as client:
            head = await client.block("latest")
            assert head is not None
            end_s = head["timestampMs"] // 1000 + 10**6  # in warranty: free service by the vendor
            chain_id = await client.chain_id()
            for member, role, sender in ((vendor, "vendor", admin), (own_phone, "smartphone", vendor),  # its own
                                         (independent_phone, "smartphone", admin)):
                registrar = REGISTRY if sender is admin else sender.address  # the administrators' decision
                consent = registration_consent(member, chain_id, registrar, 0)
                await Registry.register(member.public_key, role, b"", b"", consent).transact(client, sender)
            pumped = await _own_device(client, vendor, own_phone, b"pump-device", end_s)
            before = await Credit.credit_of(client, vendor.address)
            for _ in range(SERVICES):
                rated = await _serve(client, vendor, own_phone, pumped, 100)
                assert rated["counted"] is False
            assert await Credit.credit_of(client, vendor.address) == before == 60 * SCALE
            honest = await _own_device(client, vendor, independent_phone, b"customer-device", end_s)
            assert (await _serve(client, vendor, independent_phone, honest, 90))["counted"] is True
            assert await Credit.credit_of(client, vendor.address) == 90 * SCALE
            assert (await _serve(client, vendor, independent_phone, honest, 100))["counted"] is False  # same day
