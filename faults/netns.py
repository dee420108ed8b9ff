"""Each node on a host of its own: one Linux network namespace per node with its own
address, joined by a veth pair to one bridge in the caller's namespace. The caller (the
harness, its link proxies, the clients) has the bridge's address; nodes reach each other
only through the proxies (faults/proxy.py) listening there, so latency, jitter and loss
come from the proxies (the kernel's netem qdisc is not available on these machines).

    node i   namespace gc<tag>n<i>, eth0 = <subnet>.<i+1>/24, lo up (its operator listener)
    caller   bridge gc<tag>br = <subnet>.254/24, veth gc<tag>v<i> on the bridge per node

Needs root and iproute2 (`available()` says why not otherwise). Everything is named with a
per-run tag and removed by `close()`, which also runs for a half-built set.
"""

from __future__ import annotations

import os
import shutil
import subprocess

BRIDGE_OCTET = 254
NODES_MAX = 200  # addresses .1 .. .200 of the /24
COMMAND_TIMEOUT_S = 20


class NamespaceError(Exception):
    """An `ip` command failed; the message has its output."""


def available() -> str | None:
    """None when namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "no ip command (iproute2)"
    probe = f"gcprobe{os.getpid() % 100_000}"
    try:
        _ip("netns", "add", probe)
    except NamespaceError as exc:
        return f"ip netns add is not permitted here: {exc}"
    try:
        _ip("netns", "del", probe)
    except NamespaceError:
        pass
    return None


def _ip(*args: str, namespace: str | None = None) -> str:
    command = ["ip", *(["-n", namespace] if namespace else []), *args]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NamespaceError(f"{' '.join(command)}: {exc}") from exc
    if result.returncode != 0:
        raise NamespaceError(f"{' '.join(command)}: {result.stderr.strip()}")
    return result.stdout


def _subnet_free(prefix: str) -> bool:
    return f"{prefix}." not in _ip("-4", "addr", "show")


class Hosts:
    """`count` namespaces on one bridge; `up()` builds them, `close()` removes them."""

    def __init__(self, count: int, tag: str | None = None) -> None:
        assert 0 < count <= NODES_MAX
        self.count = count
        self.tag = tag or f"{os.getpid() % 100_000}"
        # 10.213.X.0/24, X from the tag: concurrent runs get their own subnet
        self.subnet = f"10.213.{int(self.tag) % 250}"
        self.bridge = f"gc{self.tag}br"
        self._made: list[tuple[str, str]] = []  # ("netns" | "link", name), in creation order

    def namespace(self, i: int) -> str:
        return f"gc{self.tag}n{i}"

    def address(self, i: int) -> str:
        return f"{self.subnet}.{i + 1}"

    @property
    def bridge_address(self) -> str:
        return f"{self.subnet}.{BRIDGE_OCTET}"

    def exec_prefix(self, i: int) -> list[str]:
        """The command prefix that runs a program in node i's namespace."""
        return ["ip", "netns", "exec", self.namespace(i)]

    def up(self) -> None:
        if not _subnet_free(self.subnet):
            raise NamespaceError(f"{self.subnet}.0/24 is in use on this machine")
        try:
            self._link("add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.bridge_address}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i in range(self.count):
                self._node(i)
        except NamespaceError:
            self.close()
            raise

    def _link(self, *args: str) -> None:
        _ip("link", *args)
        self._made.append(("link", args[1]))

    def _node(self, i: int) -> None:
        namespace, veth = self.namespace(i), f"gc{self.tag}v{i}"
        _ip("netns", "add", namespace)
        self._made.append(("netns", namespace))
        self._link("add", veth, "type", "veth", "peer", "name", f"{veth}p")
        _ip("link", "set", f"{veth}p", "netns", namespace)
        _ip("link", "set", f"{veth}p", "name", "eth0", namespace=namespace)
        _ip("addr", "add", f"{self.address(i)}/24", "dev", "eth0", namespace=namespace)
        _ip("link", "set", "eth0", "up", namespace=namespace)
        _ip("link", "set", "lo", "up", namespace=namespace)
        _ip("link", "set", veth, "master", self.bridge)
        _ip("link", "set", veth, "up")

    def close(self) -> None:
        """Remove what `up` made, newest first; a veth goes with its namespace's end."""
        for kind, name in reversed(self._made):
            try:
                _ip(*(("netns", "del", name) if kind == "netns" else ("link", "del", name)))
            except NamespaceError:
                pass  # gone with its peer already
        self._made.clear()

    def remaining(self) -> list[str]:
        """Namespaces and links of this tag still present (empty after `close`)."""
        names = [n.split()[0] for n in _ip("netns", "list").splitlines() if n.startswith(f"gc{self.tag}")]
        links = [line.split(":")[1].strip().split("@")[0] for line in _ip("-o", "link", "show").splitlines()
                 if f" gc{self.tag}" in line]
        return names + links
