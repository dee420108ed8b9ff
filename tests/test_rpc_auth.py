"""RPC access (issue 15): operator methods only on the operator listener and only under a
token permitting them; optional token on the public listener; TLS; CORS; calls per client
address. A real node in this process, its listeners on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ipaddress
import json
import logging
import os
import ssl
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from client import GridClient, NodeUnavailable, RpcCallError
from explorer import serve_in
from explorer.standalone import StandaloneExplorer
from rpc.auth import Grant, SecretFileError, create_secret, issue_token, load_secret
from rpc.errors import LIMIT_EXCEEDED, UNAUTHORIZED
from rpc.ratelimit import ClientRates
from runtime.cluster import free_base_port, init_cluster
from runtime.config import NodeConfig, RpcConfig
from runtime.node import Node

pytestmark = pytest.mark.timeout(180)
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=20)


@pytest.fixture
async def start_node(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[tuple[Node, asyncio.Task[None]]] = []

    async def start(**rpc: Any) -> Node:
        layout = init_cluster(tmp_path / f"cluster{len(started)}", 3, free_base_port())
        config = NodeConfig.load(layout.node_dir(0) / "node.toml")
        node = Node(dataclasses.replace(config, rpc=dataclasses.replace(config.rpc, **rpc)))
        serve_in(node)  # as node.py start does
        task = asyncio.create_task(node.run())
        started.append((node, task))
        deadline = asyncio.get_running_loop().time() + 60
        while not node.rpc.listening:
            assert asyncio.get_running_loop().time() < deadline, "RPC never listened"
            await asyncio.sleep(0.05)
        return node

    try:
        yield start
    finally:
        for node, task in started:
            node.stop()
            await asyncio.wait_for(task, 30)


async def post(url: str, body: Any, token: str | None = None, origin: str | None = None,
               local_host: str | None = None) -> tuple[int, Any, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if origin:
        headers["Origin"] = origin
    connector = aiohttp.TCPConnector(local_addr=(local_host, 0) if local_host else None)
    async with aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT) as session:
        async with session.post(url, json=body, headers=headers) as response:
            return response.status, await response.json(content_type=None), dict(response.headers)


def call(method: str, *params: Any, request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}


def secret_of(node: Node) -> bytes:
    return load_secret(node.config.rpc.jwt_secret_file)


def operator_url(node: Node) -> str:
    return f"http://127.0.0.1:{node.rpc.operator_port}/"


# pure parts --------------------------------------------------------------------------------
@pytest.mark.parametrize(("permissions", "method", "allowed"), [
    (("admin:*",), "admin_peers", True),
    (("admin:peers",), "admin_peers", True),
    (("admin:peers",), "admin_setLogLevel", False),
    (("chain:*",), "admin_peers", False),
    (("*:*",), "admin_setLogLevel", True),
    (("*:status",), "chain_status", True),
    (("subscribe:*",), "subscribe", True),
    (("chain:*",), "subscribe", False),
])
def test_permissions_match_module_and_method(permissions: tuple[str, ...], method: str, allowed: bool) -> None:
    assert Grant(permissions, "t").allows(method) is allowed


def test_tokens_need_well_formed_permissions_and_a_lifetime() -> None:
    secret = os.urandom(32)
    for bad in ([], ["admin"], ["admin:"], [":x"], [3]):
        with pytest.raises(ValueError, match="permission"):
            issue_token(secret, bad, 60)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lifetime"):
        issue_token(secret, ["admin:*"], 0)


def test_the_rate_is_per_address_refills_and_spares_the_exempt() -> None:
    rates = ClientRates(per_s_max=10, burst_max=20, exempt=["127.0.0.1"])
    assert rates.take("10.0.0.1", 20, now=0.0) == 0.0
    assert rates.take("10.0.0.1", 1, now=0.0) == pytest.approx(0.1)  # empty: one call in 0.1 s
    assert rates.take("10.0.0.2", 20, now=0.0) == 0.0  # another address has its own bucket
    assert rates.take("10.0.0.1", 5, now=0.5) == 0.0  # 0.5 s refilled 5
    assert rates.take("127.0.0.1", 10_000, now=0.5) == 0.0
    rates.take("10.0.0.3", 1, now=100.0)  # a prune: full buckets are forgotten
    assert set(rates.buckets) == {"10.0.0.3"}


def test_the_secret_is_created_private_and_refused_when_others_may_read_it(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "rpc.secret"
    assert create_secret(path) and not create_secret(path)  # never overwritten
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(load_secret(path)) == 32
    path.chmod(0o644)
    with pytest.raises(SecretFileError, match="accessible by others"):
        load_secret(path)


# a running node ----------------------------------------------------------------------------
async def test_operator_methods_only_on_the_operator_listener_under_a_permitting_token(start_node) -> None:
    node = await start_node()
    public = f"http://127.0.0.1:{node.rpc.port}/"
    status, reply, _ = await post(public, call("admin_peers"))
    assert reply["error"]["code"] == UNAUTHORIZED and reply["error"]["data"]["reason"] == "operator-only"
    status, reply, _ = await post(public, call("chain_status"))
    assert status == 200 and reply["result"]["name"] == "node0"
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as browser:
        async with browser.get(public) as page:
            assert page.status == 200  # the explorer, on the public listener

    secret = secret_of(node)
    status, reply, _ = await post(operator_url(node), call("admin_peers"))
    assert status == 401 and reply["error"]["data"]["reason"] == "no-token"
    status, reply, _ = await post(operator_url(node), call("admin_peers"), token=issue_token(os.urandom(32),
                                                                                              ["admin:*"], 60))
    assert status == 401 and reply["error"]["data"]["reason"] == "invalid-token"
    expired = issue_token(secret, ["admin:*"], 60, now=0)
    status, reply, _ = await post(operator_url(node), call("admin_peers"), token=expired)
    assert status == 401 and reply["error"]["data"]["reason"] == "expired-token"
    reader = issue_token(secret, ["chain:*"], 60)
    status, reply, _ = await post(operator_url(node), [call("chain_status"), call("admin_peers", request_id=2)],
                                  token=reader)
    assert reply[0]["result"]["name"] == "node0"
    assert reply[1]["error"]["code"] == UNAUTHORIZED and reply[1]["error"]["data"]["reason"] == "not-permitted"

    async with GridClient(operator_url(node), token=issue_token(secret, ["admin:*"], 60)) as admin:
        peers = await admin.rpc.call("admin_peers")
        assert {p["name"] for p in peers} == {"node1", "node2"}  # configured, not running here
        assert not any(p["connected"] for p in peers)
        info = await admin.rpc.call("admin_nodeInfo")
        assert info["name"] == "node0" and info["operator"] == operator_url(node).rstrip("/")
        before = await admin.rpc.call("admin_logLevel")
        assert await admin.rpc.call("admin_setLogLevel", "error") == before
        assert await admin.rpc.call("admin_logLevel") == "error" and logging.getLogger().level == logging.ERROR
        assert await admin.rpc.call("admin_setLogLevel", before) == "error"
        with pytest.raises(RpcCallError) as refused:
            await admin.rpc.call("admin_setLogLevel", "verbose")
        assert refused.value.code == -32602


async def test_public_auth_and_tls(start_node, tmp_path: Path) -> None:
    cert, key, ca = self_signed(tmp_path)
    node = await start_node(public_auth=True, tls_cert_file=cert, tls_key_file=key)
    url = f"https://127.0.0.1:{node.rpc.port}"
    token = issue_token(secret_of(node), ["chain:*", "subscribe:*"], 60)
    async with GridClient(url, token=token, ca_file=ca) as client:
        assert (await client.status())["name"] == "node0"
        with pytest.raises(RpcCallError) as refused:
            await client.contracts()  # contract:list is not in the token
        assert refused.value.data["reason"] == "not-permitted"
    async with GridClient(url, ca_file=ca) as anonymous:
        with pytest.raises(RpcCallError) as refused:
            await anonymous.status()
        assert refused.value.data["reason"] == "no-token"
    async with GridClient(url, token=token) as unverified:  # a certificate no CA of the system signed
        with pytest.raises(NodeUnavailable):
            await unverified.status()
    async with GridClient(f"http://127.0.0.1:{node.rpc.port}", token=token) as plain:
        with pytest.raises(NodeUnavailable):
            await plain.status()
    # the explorer's pages read the chain without a token: off under public_auth
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as browser:
        async with browser.get(url + "/", ssl=ssl.create_default_context(cafile=str(ca))) as page:
            assert page.status != 200


async def test_cors_and_rate_limit_per_client_address(start_node) -> None:
    node = await start_node(cors_origins=("https://explorer.example",), batch_max=10,
                            client_calls_per_s_max=2, client_calls_burst_max=10)
    public = f"http://127.0.0.1:{node.rpc.port}/"
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
        async with session.options(public, headers={"Origin": "https://explorer.example",
                                                    "Access-Control-Request-Method": "POST"}) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == "https://explorer.example"
            assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
        async with session.options(public, headers={"Origin": "https://evil.example"}) as response:
            assert response.status == 403 and "Access-Control-Allow-Origin" not in response.headers
    _, _, headers = await post(public, call("chain_status"), origin="https://explorer.example")
    assert headers["Access-Control-Allow-Origin"] == "https://explorer.example"
    _, _, headers = await post(public, call("chain_status"), origin="https://evil.example")
    assert "Access-Control-Allow-Origin" not in headers

    # 127.0.0.2 is another client address (127.0.0.1, the node host's own tools, is exempt)
    batch = [call("chain_status", request_id=i) for i in range(10)]
    status, reply, _ = await post(public, batch, local_host="127.0.0.2")
    assert status == 200 and len(reply) == 10
    status, reply, headers = await post(public, call("chain_status"), local_host="127.0.0.2")
    assert status == 429 and reply["error"]["code"] == LIMIT_EXCEEDED
    assert reply["error"]["data"]["limit"] == "client_calls_per_s_max" and int(headers["Retry-After"]) >= 1
    for _ in range(30):
        status, _, _ = await post(public, call("chain_status"))
        assert status == 200  # the exempt address is never limited


async def closed_without_bytes(reader: asyncio.StreamReader, timeout_s: float) -> bool:
    """The server closed the connection (a FIN, or a reset) without sending anything."""
    try:
        return await asyncio.wait_for(reader.read(), timeout_s) == b""
    except ConnectionResetError:
        return True


async def test_tls_handshakes_count_against_the_connection_caps(start_node, tmp_path: Path) -> None:
    """A client that opens TCP connections and never finishes the TLS handshake holds them
    under the caps from the accept on, and each is closed when the handshake times out."""
    cert, key, ca = self_signed(tmp_path)
    node = await start_node(tls_cert_file=cert, tls_key_file=key, connections_per_client_max=2,
                            header_timeout_ms=3_000)
    guard, closed = node.rpc.guard, node.metrics.rpc_connections_closed
    silent = [await asyncio.open_connection("127.0.0.1", node.rpc.port, local_addr=("127.0.0.2", 0))
              for _ in range(2)]
    deadline = asyncio.get_running_loop().time() + 20
    while guard.per_client["127.0.0.2"] < 2:
        assert asyncio.get_running_loop().time() < deadline, "the silent handshakes were never counted"
        await asyncio.sleep(0.05)
    reader, writer = await asyncio.open_connection("127.0.0.1", node.rpc.port, local_addr=("127.0.0.2", 0))
    assert await closed_without_bytes(reader, 20)  # closed at once, no handshake
    writer.close()
    assert closed.labels(reason="connections_per_client_max")._value.get() == 1
    for silent_reader, _ in silent:  # the handshake timeout (header_timeout_ms) ends them
        assert await closed_without_bytes(silent_reader, 30)
    while guard.per_client["127.0.0.2"]:
        assert asyncio.get_running_loop().time() < deadline + 30, "a timed-out handshake stayed counted"
        await asyncio.sleep(0.05)
    assert closed.labels(reason="tls-handshake")._value.get() == 2
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0), ssl=ssl.create_default_context(cafile=str(ca)))
    async with aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT) as session:
        async with session.post(f"https://127.0.0.1:{node.rpc.port}/", json=call("chain_status")) as response:
            assert (await response.json())["result"]["name"] == "node0"  # the slots came back


async def test_health_is_open_and_metrics_want_a_token_where_the_listener_does(start_node, tmp_path: Path) -> None:
    cert, key, ca = self_signed(tmp_path)
    node = await start_node(public_auth=True, tls_cert_file=cert, tls_key_file=key)
    tls = ssl.create_default_context(cafile=str(ca))
    public, operator = f"https://127.0.0.1:{node.rpc.port}", f"https://127.0.0.1:{node.rpc.operator_port}"
    scraper = issue_token(secret_of(node), ["metrics:read"], 60)
    reader = issue_token(secret_of(node), ["chain:*"], 60)
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
        async def get(url: str, token: str | None = None) -> tuple[int, str]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with session.get(url, headers=headers, ssl=tls) as response:
                return response.status, await response.text()

        status, body = await get(public + "/health")  # no token: a load balancer's probe
        assert status in (200, 503) and set(json.loads(body)) == {"status", "reason", "height"}
        status, body = await get(operator + "/health")
        assert "storage" in json.loads(body) and "rpcConnections" in json.loads(body)
        for url in (public, operator):
            status, body = await get(url + "/metrics")
            assert status == 401 and json.loads(body)["error"]["data"]["reason"] == "no-token"
            status, body = await get(url + "/metrics", reader)
            assert status == 403 and json.loads(body)["error"]["data"]["reason"] == "not-permitted"
            status, body = await get(url + "/metrics", scraper)
            assert status == 200 and "gridchain_peers" in body
    # the standalone explorer reads them with its token and CA
    standalone = StandaloneExplorer([public], tmp_path / "explorer.sqlite", token=scraper, ca_file=ca)
    try:
        assert "peers" in (await standalone.explorer._metrics() or {})
    finally:
        await standalone.client.close()


async def test_the_explorer_in_the_node_reads_its_metrics_under_tls(start_node, tmp_path: Path) -> None:
    cert, key, ca = self_signed(tmp_path)
    node = await start_node(tls_cert_file=cert, tls_key_file=key)
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
        async with session.get(f"https://127.0.0.1:{node.rpc.port}/explorer/api/consensus",
                               ssl=ssl.create_default_context(cafile=str(ca))) as response:
            metrics = (await response.json())["metrics"]
    assert metrics is not None and "peers" in metrics  # it fetched http:// from an https listener before


def test_the_burst_must_hold_a_full_batch() -> None:
    with pytest.raises(ValueError, match="client_calls_burst_max"):
        RpcConfig(batch_max=100, client_calls_burst_max=50)


def self_signed(directory: Path) -> tuple[Path, Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (the CA file is the certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gridchain test node")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "rpc.crt", directory / "rpc.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file, cert_file
