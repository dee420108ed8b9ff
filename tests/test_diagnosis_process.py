"""Agents as OS processes (`node.py agent ROLE --config FILE`) on a real 3-node cluster:
`consortium init` writes the cluster and the configs, each party runs in its own process,
registers what the registry lets it register, publishes its endpoint, and the flows
happen because the processes react — an in-warranty damage repaired on site by the
vendor's crew (SMW), an out-of-warranty fault auctioned and repaired remotely (ROW). A
supplier SIGKILLed right after its sealed bid is restarted, reveals from its store and
never commits again. Plus config validation."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from client.contracts import Dsc
from client.sdk import GridClient
from diagnosis.agentconfig import AgentConfig, BadAgentConfig, consortium_init
from diagnosis.demo import demo_contract_params
from runtime.cluster import ClusterProcesses, discover

REPO = Path(__file__).resolve().parent.parent
WAIT_S = 240  # a loaded 2-core box starts Python processes slowly


def test_agent_config_refuses_what_cannot_run(tmp_path: Path) -> None:
    good = {"role": "vendor", "name": "v", "rpc": ["http://127.0.0.1:1"], "genesis": "g.toml", "keys": "k.json",
            "state": "s.sqlite", "policy": {"prices": {"meter": 100}}}
    assert AgentConfig.from_dict(good, tmp_path).state == tmp_path / "s.sqlite"
    bad = [({"role": "bookkeeper"}, "role"), ({"rpc": []}, "rpc"), ({"inbox_port": 70_000}, "inbox_port"),
           ({"poll_ms": 1}, "poll_ms"), ({"inbox_host": "0.0.0.0"}, "inbox_host"),
           ({"policy": {"prices": {"meter": -1}}}, "policy.prices")]
    for change, setting in bad:
        with pytest.raises(BadAgentConfig) as caught:
            AgentConfig.from_dict({**good, **change}, tmp_path)
        assert caught.value.setting == setting
    with pytest.raises(BadAgentConfig):
        AgentConfig.from_dict({k: v for k, v in good.items() if k != "keys"}, tmp_path)


class Agents:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def config(self, name: str) -> dict[str, Any]:
        return tomllib.loads((self.directory / f"{name}.toml").read_text())

    def url(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.config(name)['inbox_port']}{path}"

    def start(self, name: str) -> None:
        role = self.config(name)["role"]
        log = open(self.directory / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        self.processes[name] = subprocess.Popen(
            [sys.executable, "node.py", "agent", role, "--config", str(self.directory / f"{name}.toml")],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()

    async def get(self, name: str, path: str) -> Any:
        async with aiohttp.ClientSession() as session, session.get(self.url(name, path)) as response:
            return await (response.json() if path == "/health" else response.text())

    async def metric(self, name: str, metric: str) -> int:
        text = await self.get(name, "/metrics")
        return sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(f"gridchain_agent_{metric}{{"))

    async def until(self, what: str, check: Any) -> None:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                if await check():
                    return
            except (aiohttp.ClientError, OSError):
                pass  # not listening yet
            exited = [n for n, p in self.processes.items() if p.poll() is not None]
            assert not exited and time.monotonic() < deadline, f"{what} not reached ({exited} exited)\n{self.tails()}"
            await asyncio.sleep(0.5)

    def tails(self) -> str:
        return "\n".join(f"== {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-8:])
                         for log in sorted(self.directory.glob("*.log")))


@pytest.mark.timeout(600)
async def test_consortium_of_processes_reacts_and_a_killed_bidder_resumes(tmp_path: Path) -> None:
    params = demo_contract_params()
    params.pop("registry")
    # windows long enough for a SIGKILLed process to start again on a loaded box
    params["dsc"].update(commit_ms=25_000, reveal_ms=60_000, service_ms=120_000)
    consortium_init(tmp_path, vendors=1, suppliers=2, devices=2, contracts=params, paillier_bits=1024)
    cluster = ClusterProcesses(discover(tmp_path / "cluster"))
    agents = Agents(tmp_path / "agents")
    cluster.start_all()
    try:
        cluster.wait_healthy()
        for name in ("vendor-A", "crew-vendor-A", "supplier-1", "supplier-2", "device-1", "device-2", "phone-1",
                     "phone-2"):
            agents.start(name)
        for name in list(agents.processes):
            await agents.until(f"{name} ready", lambda name=name: _ready(agents.get(name, "/health")))
        async with aiohttp.ClientSession() as session:
            requests = {}
            # device-1 in warranty, damaged: on site by vendor-A's crew (SMW); device-2 out of warranty,
            # a firmware fault: auctioned, repaired remotely (ROW)
            for device, kind in (("device-1", "physical-damage"), ("device-2", "firmware-fault")):
                async with session.post(agents.url(device, "/fail"), json={"kind": kind, "detail": "E42"}) as response:
                    requests[device] = (await response.json())["request"]
        await agents.until("supplier-1 committed", lambda: _ge(agents.metric("supplier-1", "bids_total"), 1))
        agents.kill("supplier-1")  # SIGKILL inside the commit window, after its sealed bid
        agents.start("supplier-1")
        for phone in ("phone-1", "phone-2"):
            await agents.until(f"{phone} got its package",
                               lambda phone=phone: _ge(agents.metric(phone, "flows_finished_total"), 1))
        assert await agents.metric("supplier-1", "bids_total") == 0  # the restarted process committed nothing
        config = agents.config("supplier-1")
        keys = json.loads((agents.directory / config["keys"]).read_text())
        supplier = bytes.fromhex(keys["public"]["address"].removeprefix("0x"))  # the key file's clear part
        async with GridClient(config["rpc"]) as client:
            for device, request_id in requests.items():
                assert (await Dsc.request(client, request_id)).status == "completed", device
            assert (await Dsc.request(client, requests["device-1"])).mode == "on-site"
            bid = await Dsc.bid(client, requests["device-2"], supplier)
            assert bid.status == "valid"  # revealed by the restarted process with the stored salt
    finally:
        agents.stop_all()
        cluster.stop_all()


async def _ready(health: Any) -> bool:
    return bool((await health)["ready"])


async def _ge(value: Any, at_least: int) -> bool:
    return bool(await value >= at_least)
