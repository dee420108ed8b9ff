"""The agent processes of a consortium directory (`consortium init` wrote `agents/*.toml`):
start one `node.py agent ROLE --config FILE` process per party, SIGKILL or stop them, and
read what each serves on its loopback port (`/health`, `/metrics`, `/events`). Used by the
demo, the process tests and whoever runs a consortium from Python; nothing here acts for a
party, it only starts processes and reads them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import aiohttp

from diagnosis.agentconfig import AgentConfig
from diagnosis.errors import DiagnosisError

REPO = Path(__file__).resolve().parent.parent
STOP_WAIT_S = 15  # SIGTERM, then this long before SIGKILL
HTTP_TIMEOUT_S = 10
LOG_TAIL_LINES = 8


class Fleet:
    def __init__(self, agents_dir: Path) -> None:
        self.directory = agents_dir
        self.configs = {p.stem: AgentConfig.load(p) for p in sorted(agents_dir.glob("*.toml"))}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self._session: aiohttp.ClientSession | None = None

    def names(self, role: str | None = None) -> list[str]:
        return [n for n, c in self.configs.items() if role is None or c.role == role]

    def url(self, name: str, path: str = "") -> str:
        config = self.configs[name]
        return f"http://{config.inbox_host}:{config.inbox_port}{path}"

    def log_path(self, name: str) -> Path:
        return self.directory / f"{name}.log"

    def start(self, name: str) -> None:
        assert name not in self.processes, f"{name} runs already"
        config = self.configs[name]
        if name not in self._logs:
            self._logs[name] = open(self.log_path(name), "ab")  # noqa: SIM115 - closed in close()
        self.processes[name] = subprocess.Popen(
            [sys.executable, str(REPO / "node.py"), "agent", config.role, "--config",
             str(self.directory / f"{name}.toml")], cwd=REPO, stdout=self._logs[name], stderr=subprocess.STDOUT)

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash would: nothing of the process's memory survives."""
        process = self.processes.pop(name)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(STOP_WAIT_S)

    def exited(self) -> dict[str, int]:
        """Processes that ended by themselves, with their exit status."""
        return {n: p.returncode for n, p in self.processes.items() if p.poll() is not None}

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_WAIT_S)
        self.processes.clear()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        for log in self._logs.values():
            log.close()
        self._logs.clear()

    def tail(self, name: str, lines: int = LOG_TAIL_LINES) -> str:
        path = self.log_path(name)
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # what each process serves ------------------------------------------------------------
    async def _get(self, name: str, path: str) -> aiohttp.ClientResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S))
        return await self._session.get(self.url(name, path))

    async def health(self, name: str) -> dict[str, Any]:
        async with await self._get(name, "/health") as response:
            reply: dict[str, Any] = await response.json()
            return reply

    async def ready(self, name: str) -> bool:
        """Listening and done with its first-start registrations."""
        try:
            return bool((await self.health(name))["ready"])
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def fail(self, name: str, kind: str, detail: str) -> int:
        """A fault reported to device `name` (POST /fail, as `node.py agent device ... fail`):
        the request it opened or joined. DiagnosisError when the agent refuses it."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S))
        async with self._session.post(self.url(name, "/fail"), json={"kind": kind, "detail": detail}) as response:
            reply = await response.json()
        if response.status != 200:
            raise DiagnosisError(f"{name} refused the fault: {reply.get('error', response.status)}")
        return int(reply["request"])

    async def events(self, name: str, since: int) -> tuple[list[dict[str, Any]], int]:
        """Its events after sequence number `since` (one page), and the cursor to go on from."""
        async with await self._get(name, f"/events?since={since}") as response:
            reply = await response.json()
        return list(reply["events"]), int(reply["next"])

    async def metrics(self, name: str) -> dict[str, float]:
        """Its Prometheus samples: `name{labels}` -> value (comments dropped)."""
        async with await self._get(name, "/metrics") as response:
            text = await response.text()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                samples[key] = float(value)
        return samples


def metric_sum(samples: dict[str, float], metric: str) -> float:
    """The sum of `gridchain_agent_<metric>` over its label sets."""
    return sum(v for k, v in samples.items() if k.startswith(f"gridchain_agent_{metric}{{"))
