"""Every mistake an operator was seen making (issue 12), made through `python node.py ...`:
one clear line on stderr, a non-zero exit status, no traceback, and nothing changed or
left running. The cluster is a real `node.py cluster` (its supervisor is under test too)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chain import ChainStore
from chain.chain import Chain
from chain.genesis import Genesis
from contracts import build_contracts
from crypto.keystore import DEV_PASSPHRASE, ENV_PASSPHRASE
from runtime.cluster import free_base_port, init_cluster, port_free, rpc_health
from vm import Engine

ROOT = Path(__file__).resolve().parent.parent
NODE_PY = str(ROOT / "node.py")
START_TIMEOUT_S = 120
VERB_TIMEOUT_S = 120


@dataclass
class Cluster:
    work: Path  # the cwd of the verbs: its var/cluster is the cluster
    directory: Path
    base_port: int
    supervisor: subprocess.Popen[bytes]
    output: Path

    def manifest(self) -> dict:
        return json.loads((self.directory / "cluster.json").read_text())

    def said(self, text: str, timeout_s: float = 60) -> str:
        """Wait until the supervisor's output holds `text`; return the output."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            out = self.output.read_text()
            if text in out:
                return out
            time.sleep(0.2)
        raise AssertionError(f"supervisor never said {text!r}:\n{self.output.read_text()}")


def run(*args: str, cwd: Path, env: dict[str, str] | None = None, flags: tuple[str, ...] = ()
        ) -> subprocess.CompletedProcess[str]:
    # the development clusters' passphrase opens every key these tests make (crypto/keystore.py)
    environment = {**{k: v for k, v in os.environ.items() if k != "GRIDCHAIN_RPC"}, ENV_PASSPHRASE: DEV_PASSPHRASE}
    return subprocess.run([sys.executable, *flags, NODE_PY, *args], cwd=cwd, capture_output=True, text=True,
                          env={**environment, **(env or {})}, timeout=VERB_TIMEOUT_S)


def refused(result: subprocess.CompletedProcess[str], verb: str, *texts: str, status: int) -> str:
    """The one-line error contract: exit status, one line on stderr naming the verb, the texts."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith(("usage:", " "))]  # usage, wrapped
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"node.py {verb}: "), lines[0]
    for text in texts:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def nonce(cluster: Cluster, address: str) -> int:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "account_get", "params": [address]}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{cluster.base_port}/", body,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(json.loads(response.read())["result"]["pendingNonce"])


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("operator")
    base_port = free_base_port()
    output = work / "supervisor.out"
    with output.open("wb") as out:
        supervisor = subprocess.Popen([sys.executable, NODE_PY, "cluster", "--dir", "var/cluster", "--base-port",
                                       str(base_port)], cwd=work, stdout=out, stderr=subprocess.STDOUT)
    running = Cluster(work, work / "var" / "cluster", base_port, supervisor, output)
    try:
        running.said("cluster up:", START_TIMEOUT_S)
        yield running
    finally:
        supervisor.send_signal(signal.SIGINT)
        supervisor.wait(60)


@pytest.fixture(scope="module")
def accounts(cluster: Cluster) -> list[dict]:
    return json.loads((cluster.directory / "accounts.json").read_text())


# finding the cluster ---------------------------------------------------------------------
def test_client_verbs_find_the_cluster_from_its_directory_and_below(cluster: Cluster) -> None:
    for cwd in (cluster.work, cluster.directory, cluster.directory / "node1"):
        result = run("status", cwd=cwd)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["height"] >= 0


def test_cluster_option_and_environment_variable(cluster: Cluster, tmp_path: Path) -> None:
    result = run("status", "--cluster", str(cluster.directory), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    node1 = f"http://127.0.0.1:{cluster.base_port + 1}"
    result = run("status", cwd=tmp_path, env={"GRIDCHAIN_RPC": node1})
    assert json.loads(result.stdout)["name"] == "node1"
    refused(run("status", cwd=tmp_path, env={"GRIDCHAIN_RPC": "127.0.0.1:1"}), "status",
            "GRIDCHAIN_RPC", "write it as http://127.0.0.1:1", status=2)
    refused(run("status", "--cluster", str(tmp_path), cwd=tmp_path), "status", "no cluster.json", status=2)


def test_the_readme_send_works_on_any_base_port(cluster: Cluster, accounts: list[dict]) -> None:
    result = run("send", "--key", "var/cluster/accounts/account0.key", "--to", "token", "--method", "transfer",
                 "--args", json.dumps([accounts[1]["address"], 12345]), cwd=cluster.work)
    assert result.returncode == 0, result.stderr
    assert '"status": 1' in result.stdout


# malformed or unreachable --rpc ----------------------------------------------------------
def test_rpc_without_scheme_with_a_path_or_out_of_range(cluster: Cluster) -> None:
    port = cluster.base_port
    refused(run("status", "--rpc", f"127.0.0.1:{port}", cwd=cluster.work), "status",
            f"write it as http://127.0.0.1:{port}", status=2)
    refused(run("status", "--rpc", f"http://127.0.0.1:{port}/abc", cwd=cluster.work), "status",
            f"a node URL has no path; use http://127.0.0.1:{port}", status=2)
    refused(run("status", "--rpc", "http://127.0.0.1:99999", cwd=cluster.work), "status", "0..65535", status=2)


def test_rpc_on_the_p2p_port_or_where_nothing_listens(cluster: Cluster) -> None:
    p2p = cluster.base_port + 100
    refused(run("status", "--rpc", f"http://127.0.0.1:{p2p}", cwd=cluster.work), "status",
            f"http://127.0.0.1:{p2p}: not a gridchain JSON-RPC endpoint", "is it the RPC port?", status=1)
    closed = free_base_port()
    refused(run("block", "--rpc", f"http://127.0.0.1:{closed}", cwd=cluster.work), "block",
            "connection refused", "is the node running?", status=1)


# send and call ---------------------------------------------------------------------------
TO = '"0x' + "11" * 20 + '"'


@pytest.mark.parametrize("args, texts", [
    (["--args", '["0x12", 5'], ["--args", "is not JSON"]),
    (["--args", '{"to": 1}'], ["must be a JSON list"]),
    (["--args", '["0xzz", 5]'], ["--args", "hex"]),
    (["--to", "tokn"], ["no contract named 'tokn' (did you mean 'token'?)", "known: "]),
    (["--method", "tranfer"], ["token has no method 'tranfer' (did you mean 'transfer'?)"]),
    (["--method", "balance_of", "--args", f"[{TO}]"], ["token.balance_of is a view (use `call`)"]),
    (["--args", f'[{TO}, "many"]'], ["token.transfer(to: bytes, amount: int): amount must be int"]),
    (["--args", f"[{TO}]"], ["takes 2 arguments, got 1"]),
])
def test_bad_sends_are_refused_before_signing(cluster: Cluster, accounts: list[dict], args: list[str],
                                              texts: list[str]) -> None:
    before = nonce(cluster, accounts[2]["address"])
    default_args = [] if "--args" in args else ["--args", json.dumps([accounts[1]["address"], 1])]
    result = run("send", "--key", accounts[2]["key_file"], *args, *default_args, cwd=cluster.work)
    refused(result, "send", *texts, status=2)
    assert nonce(cluster, accounts[2]["address"]) == before, "a refused send spent a nonce"


def test_a_view_with_the_wrong_name_is_refused_with_the_right_one(cluster: Cluster, accounts: list[dict]) -> None:
    refused(run("call", "token", "balanceOf", "--args", json.dumps([accounts[0]["address"]]), cwd=cluster.work),
            "call", "token has no view 'balanceOf' (did you mean 'balance_of'?)", status=2)


def test_contracts_lists_methods_views_and_types(cluster: Cluster) -> None:
    result = run("contracts", cwd=cluster.work)
    assert result.returncode == 0, result.stderr
    assert "  method transfer(to: bytes, amount: int)" in result.stdout
    assert "  view   balance_of(" in result.stdout
    listing = json.loads(run("contracts", "--json", cwd=cluster.work).stdout)
    assert {c["name"] for c in listing} >= {"token", "registry", "dsc", "credit", "policy", "records"}


def test_missing_key_file_and_bad_proof_subject(cluster: Cluster, tmp_path: Path) -> None:
    refused(run("send", "--key", str(tmp_path / "nope.key"), cwd=cluster.work), "send",
            f"--key {tmp_path / 'nope.key'}: no such key file", "keys new", status=2)
    refused(run("keys", "show", str(tmp_path / "nope.key"), cwd=cluster.work), "keys", "no such key file", status=2)
    assert not (tmp_path / "nope.key").exists()
    refused(run("proof", "account", "0xnothex", cwd=cluster.work), "proof",
            "account address '0xnothex' is not 20 bytes of 0x-hex", status=2)
    refused(run("receipt", "0x1234", cwd=cluster.work), "receipt", "is not 32 bytes", status=2)


def test_an_unknown_sender_is_refused_and_the_node_logs_why(cluster: Cluster, tmp_path: Path) -> None:
    key = tmp_path / "stranger.key"
    made = run("keys", "new", "--dev", str(key), cwd=tmp_path)
    assert made.returncode == 0 and key.stat().st_mode & 0o777 == 0o600
    assert run("keys", "show", str(key), cwd=tmp_path).stdout == made.stdout.splitlines()[-1] + "\n"
    refused(run("keys", "new", "--dev", str(key), cwd=tmp_path), "keys", "the file exists", status=2)
    result = run("send", "--key", str(key), "--args", json.dumps(["0x" + "22" * 20, 1]), cwd=cluster.work)
    refused(result, "send", "the node refused it: error -32000", "unknown-sender", status=1)
    logs = "".join((cluster.directory / f"node{i}" / "node.log").read_text() for i in range(3))
    assert "from RPC rejected" in logs and "unknown-sender" in logs


# node verbs ------------------------------------------------------------------------------
def test_start_on_a_port_in_use_says_which(cluster: Cluster) -> None:
    config = cluster.directory / "node0" / "node.toml"
    refused(run("start", "--config", str(config), cwd=cluster.work), "start",
            f"[rpc] port 127.0.0.1:{cluster.base_port} is in use by another process", status=1)
    assert rpc_health(f"http://127.0.0.1:{cluster.base_port}")[0] == 200


def test_a_config_mistake_is_one_line(cluster: Cluster, tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text((cluster.directory / "node0" / "node.toml").read_text().replace("[rpc]", "[rcp]"))
    refused(run("start", "--config", str(config), cwd=tmp_path), "start", f"{config}: table [rcp]: unknown",
            status=1)
    assert not (tmp_path / "data").exists()


def test_a_data_dir_of_another_chain_is_named(tmp_path: Path) -> None:
    ours = init_cluster(tmp_path / "ours", 3, free_base_port())
    theirs = init_cluster(tmp_path / "theirs", 3, free_base_port())
    genesis = Genesis.load(theirs.directory / "genesis.toml")
    store = ChainStore(theirs.node_dir(0) / "data" / "chain")
    Chain(store, genesis, Engine(build_contracts(genesis.contract_params)))
    store.close()
    data = ours.node_dir(0) / "data"
    shutil.copytree(theirs.node_dir(0) / "data", data)
    before = (data / "chain" / "data.mdb").read_bytes()
    refused(run("start", "--config", str(ours.node_dir(0) / "node.toml"), cwd=tmp_path), "start",
            f"data_dir {data} holds a chain from another genesis", status=1)
    refused(run("verify", "--data-dir", str(data), cwd=tmp_path), "verify",
            f"--data-dir {data} holds a chain from another genesis", status=1)
    assert (data / "chain" / "data.mdb").read_bytes() == before


def test_verify_without_a_store_creates_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "node0" / "data"
    refused(run("verify", "--data-dir", str(empty), cwd=tmp_path), "verify",
            f"--data-dir {empty}: no chain store there", status=1)
    assert not empty.exists()


@pytest.mark.parametrize("flags", [(), ("-O",)])
def test_init_on_an_initialised_directory_keeps_its_keys(tmp_path: Path, flags: tuple[str, ...]) -> None:
    directory = tmp_path / "c"
    assert run("init", "--dir", str(directory), "--base-port", str(free_base_port()), cwd=tmp_path).returncode == 0
    keys = {p: p.read_bytes() for p in directory.rglob("*.key")}
    genesis = (directory / "genesis.toml").read_bytes()
    refused(run("init", "--dir", str(directory), cwd=tmp_path, flags=flags), "init",
            f"{directory} is already initialised", status=2)
    assert {p: p.read_bytes() for p in directory.rglob("*.key")} == keys
    assert (directory / "genesis.toml").read_bytes() == genesis


def test_start_refuses_a_key_file_others_may_read_and_a_wrong_passphrase(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    init_cluster(directory, 3, free_base_port())
    config, key = directory / "node0" / "node.toml", directory / "node0" / "node.key"
    key.chmod(0o640)
    refused(run("start", "--config", str(config), cwd=tmp_path), "start",
            f"{key} is readable by group or others (mode 640)", "chmod 600", status=1)
    key.chmod(0o600)
    (directory / "passphrase").write_text("not the one\n")
    refused(run("start", "--config", str(config), cwd=tmp_path), "start", f"{key}: wrong passphrase", status=1)
    assert not (directory / "node0" / "data" / "chain").exists()  # refused before anything was written


def test_init_refuses_an_even_cluster_and_ports_out_of_range(tmp_path: Path) -> None:
    refused(run("init", "--dir", str(tmp_path / "a"), "--nodes", "4", cwd=tmp_path), "init", "2t+1", status=2)
    refused(run("init", "--dir", str(tmp_path / "b"), "--base-port", "65500", cwd=tmp_path), "init",
            "within 1..65535", status=2)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cluster_on_taken_ports_starts_nothing(cluster: Cluster, tmp_path: Path) -> None:
    other = tmp_path / "other"
    refused(run("cluster", "--dir", str(other), "--base-port", str(cluster.base_port), cwd=tmp_path), "cluster",
            f"ports in use by another process: {cluster.base_port} (node0 RPC)", status=1)
    assert not other.exists()
    assert processes_mentioning(str(other)) == []


def test_cluster_refuses_a_second_supervisor_and_a_new_shape(cluster: Cluster) -> None:
    refused(run("cluster", "--dir", "var/cluster", cwd=cluster.work), "cluster", "already running", status=2)
    refused(run("cluster", "--dir", "var/cluster", "--nodes", "5", cwd=cluster.work), "cluster",
            "refusing --nodes 5 (it has 3)", "new --dir", status=2)
    other_port = cluster.base_port + 10
    refused(run("cluster", "--dir", "var/cluster", "--base-port", str(other_port), cwd=cluster.work), "cluster",
            f"refusing --base-port {other_port} (it has {cluster.base_port})", status=2)


def test_another_chain_on_the_ports_is_not_reported_up(tmp_path: Path) -> None:
    """A stranger answers on node0's RPC port once our nodes start (the port was free at the
    check): the supervisor must not call it up, and must leave nothing running."""
    from runtime.cluster import ClusterProcesses

    base = free_base_port()
    ours = init_cluster(tmp_path / "ours", 3, base)
    stranger = init_cluster(tmp_path / "stranger", 3, free_base_port())
    config = stranger.node_dir(0) / "node.toml"
    config.write_text(config.read_text().replace(f"port = {stranger.rpc_port(0)}", f"port = {base}"))
    processes = ClusterProcesses(stranger)
    processes.start_node(0)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while rpc_health(f"http://127.0.0.1:{base}")[0] is None and time.monotonic() < deadline:
            time.sleep(0.2)
        checker = ClusterProcesses(ours)
        checker.start_node(0)
        try:
            with pytest.raises(RuntimeError, match=f"port {base} answers for another chain|node0 exited"):
                deadline = time.monotonic() + START_TIMEOUT_S
                while not checker.ready(0) and time.monotonic() < deadline:
                    time.sleep(0.2)
        finally:
            checker.stop_all()
    finally:
        processes.stop_all()
    assert port_free(base)


def test_help_documents_every_option_with_its_default() -> None:
    sys.path.insert(0, str(ROOT))
    import argparse

    import node

    parser = argparse.ArgumentParser(formatter_class=node.HelpFormatter)
    verbs = parser.add_subparsers(parser_class=node.VerbParser)
    from cli import commands

    commands.register(verbs)
    missing = []
    for name, sub in verbs.choices.items():
        text = sub.format_help()
        for action in sub._actions:
            if not action.option_strings or action.dest == "help":
                continue
            if not action.help:
                missing.append(f"{name} {action.option_strings[0]}: no help")
            elif action.default is not None and action.default is not False and \
                    f"(default: {action.default})" not in " ".join(text.split()):
                missing.append(f"{name} {action.option_strings[0]}: default {action.default} not shown")
    assert missing == []
    assert {"init", "start", "cluster", "node", "verify", "status", "keys", "contracts", "send", "call",
            "receipt", "block", "proof"} <= set(verbs.choices)


# the supervisor ---------------------------------------------------------------------------
def test_sigkill_of_one_node_leaves_the_others_and_says_how_to_restart(cluster: Cluster) -> None:
    pid = cluster.manifest()["nodes"][2]["pid"]
    os.kill(pid, signal.SIGKILL)
    out = cluster.said(f"node2 (pid {pid}) exited with signal SIGKILL; the other nodes keep running")
    assert "node.py node restart --cluster var/cluster --node 2" in out
    assert cluster.supervisor.poll() is None
    for i in (0, 1):
        assert rpc_health(f"http://127.0.0.1:{cluster.base_port + i}")[0] is not None
    deadline = time.monotonic() + 30
    while cluster.manifest()["nodes"][2].get("state") != "exited" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cluster.manifest()["nodes"][2]["state"] == "exited"
    result = run("node", "restart", "--node", "2", cwd=cluster.work)
    assert result.returncode == 0, result.stderr
    assert "node2 up" in result.stdout
    assert cluster.manifest()["nodes"][2]["pid"] != pid


def test_node_verbs_stop_kill_and_restart_one_node(cluster: Cluster, accounts: list[dict]) -> None:
    result = run("node", "kill", "--cluster", "var/cluster", "--node", "0", cwd=cluster.work)
    assert result.returncode == 0 and "node0 killed (signal SIGKILL)" in result.stdout, result.stderr
    assert cluster.manifest()["nodes"][0]["state"] == "killed"
    # the primary is gone: the survivors change view and commit
    sent = run("send", "--key", accounts[3]["key_file"], "--args", json.dumps([accounts[4]["address"], 7]),
               cwd=cluster.work, env={"GRIDCHAIN_RPC": f"http://127.0.0.1:{cluster.base_port + 1}"})
    assert sent.returncode == 0 and '"status": 1' in sent.stdout, sent.stderr
    assert run("node", "restart", "--node", "0", cwd=cluster.work).returncode == 0
    result = run("node", "stop", "--node", "1", cwd=cluster.work)
    assert result.returncode == 0 and "node1 stopped" in result.stdout
    assert run("node", "restart", "--node", "1", cwd=cluster.work).returncode == 0
    assert [n["state"] for n in cluster.manifest()["nodes"]] == ["up", "up", "up"]
    refused(run("node", "stop", "--node", "7", cwd=cluster.work), "node", "has nodes 0..2", status=2)


def test_node_verbs_without_a_supervisor(tmp_path: Path) -> None:
    init_cluster(tmp_path / "idle", 3, free_base_port())
    refused(run("node", "stop", "--cluster", str(tmp_path / "idle"), "--node", "0", cwd=tmp_path), "node",
            "no `node.py cluster` runs", status=1)


# the README ------------------------------------------------------------------------------
def readme_walkthrough() -> list[str]:
    """The commands of the README's cluster walkthrough, after the one that starts it."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## A cluster, a transaction"):readme.index("## CLI")]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    commands = [line for block in blocks[1:] for line in block.splitlines()
                if line.startswith(".venv/bin/python node.py ") or re.match(r"[A-Z0-9]+=\$\(", line)]
    assert commands and all(" cluster " not in c for c in commands)
    return commands


def test_the_readme_walkthrough_works_by_copy_and_paste_on_this_base_port(cluster: Cluster) -> None:
    script = "set -euo pipefail\n" + "\n".join(
        line.replace(".venv/bin/python node.py", f"{sys.executable} {NODE_PY}") for line in readme_walkthrough())
    result = subprocess.run(["bash", "-c", script], cwd=cluster.work, capture_output=True, text=True,
                            timeout=600, env={k: v for k, v in os.environ.items() if k != "GRIDCHAIN_RPC"})
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    assert '"verified": true' in result.stdout and "node0 up" in result.stdout
    assert "blocks checked, 0 problems" in result.stdout
    assert [n["state"] for n in cluster.manifest()["nodes"]] == ["up", "up", "up"]


def test_a_node_that_fails_to_start_fails_the_cluster_and_stops_the_rest(tmp_path: Path) -> None:
    layout = init_cluster(tmp_path / "broken", 3, free_base_port())
    config = layout.node_dir(1) / "node.toml"
    config.write_text(config.read_text().replace('log_level = "info"', 'log_level = "verbose"'))
    result = run("cluster", "--dir", str(layout.directory), "--health-timeout", "90", cwd=tmp_path)
    refused(result, "cluster", "cluster did not start: node1 exited with status 1",
            str(layout.node_dir(1) / "node.log"), status=1)
    assert "cluster up" not in result.stdout
    assert "log_level: 'verbose' is not one of" in (layout.node_dir(1) / "node.log").read_text()
    assert processes_mentioning(str(layout.directory)) == []
    assert [n["state"] for n in json.loads((layout.directory / "cluster.json").read_text())["nodes"]] == \
        ["stopped"] * 3


def test_a_consortium_too_large_for_its_inbox_ports_is_one_line(tmp_path: Path) -> None:
    # 1 vendor, its crew, 300 devices and 300 smartphones: 602 inboxes, 600 ports in the span
    result = run("consortium", "init", str(tmp_path / "c"), "--vendors", "1", "--suppliers", "0", "--devices", "300",
                 cwd=tmp_path)
    refused(result, "consortium", "602 parties' inboxes do not fit", status=2)
    assert not (tmp_path / "c" / "cluster" / "genesis.toml").exists()  # refused before keys and cluster


def test_an_unknown_fault_scenario_is_one_line(tmp_path: Path) -> None:
    refused(run("faults", "--scenario", "nope", "--workdir", str(tmp_path / "w"), cwd=tmp_path), "faults",
            "unknown scenario(s) nope", status=2)
    assert not (tmp_path / "w").exists()


# operator verbs ---------------------------------------------------------------------------
def test_admin_verbs_use_the_operator_listener_and_the_nodes_secret(cluster: Cluster, tmp_path: Path) -> None:
    result = run("admin", "peers", "--cluster", str(cluster.directory), "--node", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {p["name"] for p in json.loads(result.stdout) if p["connected"]} == {"node0", "node2"}
    config = cluster.directory / "node2" / "node.toml"
    result = run("admin", "log-level", "warning", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0 and json.loads(result.stdout) == "info", result.stderr
    result = run("admin", "info", "--config", str(config), cwd=tmp_path)
    assert json.loads(result.stdout)["logLevel"] == "warning"
    run("admin", "log-level", "info", "--config", str(config), cwd=tmp_path)
    operator = cluster.manifest()["nodes"][0]["operator"]
    refused(run("admin", "peers", "--operator", operator, cwd=tmp_path), "admin", "--secret", status=2)
    refused(run("admin", "peers", "--operator", operator, "--token", "x.y.z", cwd=tmp_path), "admin",
            "-32003", "invalid-token", status=1)
    token = run("rpc-token", "--config", str(config), "--permissions", "chain:*", cwd=tmp_path).stdout.strip()
    refused(run("admin", "peers", "--operator", cluster.manifest()["nodes"][2]["operator"], "--token", token,
                cwd=tmp_path), "admin", "not-permitted", status=1)
