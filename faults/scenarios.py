"""The fault schedules. Each is an async function of a Ctx that injects faults while the
workload runs and returns with the cluster healed (every node running, honest, every link
clean); the runner checks that and heals whatever is left. Every random choice comes
from ctx.rng, which the seed fixes, so a seed reproduces the schedule.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import rlp

from chain import Transaction
from chain.certificate import synchronous_group
from client import ClientError, GridClient, RpcCallError
from client.contracts import Governance
from consensus import BYZANTINE_MODES
from crypto import KeyPair
from crypto.keystore import load_key
from faults.bigblock import insider_bigblock
from faults.cluster import FaultCluster
from faults.history import FAIL, INFO, OK, History
from faults.insider import insider_fuzz
from faults.proxy import LinkFault
from faults.workload import RateLoad, Workload, cause
from runtime.cluster import cluster_passphrase


@dataclass
class Ctx:
    cluster: FaultCluster
    history: History
    rng: random.Random
    duration: float  # seconds the fault phase should take
    iterations: int  # crash-loop: kill -9 count
    chain_id: int = 0
    token: bytes = b""
    down_windows: list[tuple[float, float]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # scenario-specific invariants and figures
    loads: list[Workload | RateLoad] = field(default_factory=list)  # what `quiesce` holds

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def view(self) -> int:
        """The view most running nodes report."""
        c = self.cluster
        statuses = await asyncio.gather(*(c.status(i) for i in range(c.nodes)
                                          if c.is_running(i) and i not in c.paused))
        views = Counter(s["view"] for s in statuses if s is not None and s["view"] is not None)
        return views.most_common(1)[0][0] if views else 0

    async def group(self) -> tuple[int, ...]:
        """The synchronous group of the current view, primary first."""
        return synchronous_group(await self.view(), self.cluster.nodes, self.cluster.t)

    # fault helpers that also write the timeline
    def kill(self, i: int) -> None:
        self.history.fault("kill -9", node=i)
        self.cluster.kill(i)

    async def restart(self, i: int, byzantine: str | None = None) -> None:
        since = self.history.now()
        self.cluster.start_node(i, byzantine)
        self.history.restarts.append((since, i))
        await self.cluster.wait_serving([i])
        # `since`: when the restart began (a replay starts it then, faults/replay.py)
        self.history.note("restarted", node=i, since=round(since, 3), **({"byzantine": byzantine} if byzantine else {}))

    async def heights(self, nodes: list[int]) -> dict[int, int]:
        statuses = await asyncio.gather(*(self.cluster.status(i) for i in nodes))
        return {i: s["height"] for i, s in zip(nodes, statuses, strict=True) if s is not None}

    async def quiesce(self, nodes: list[int], timeout_s: float) -> bool:
        """Hold the load and wait until `nodes` report one final height, the same on two
        polls in a row: then no block is final at one of them alone (False: not reached
        within `timeout_s`; the load stays held until `resume_load`)."""
        for load in self.loads:
            load.hold()
        self.history.note("load held")
        last: dict[int, int] = {}

        async def settled() -> bool:
            nonlocal last
            heights = await self.heights(nodes)
            steady = len(heights) == len(nodes) and len(set(heights.values())) == 1 and heights == last
            last = heights
            return steady
        return await self.wait_until(settled, timeout_s)

    def resume_load(self) -> None:
        for load in self.loads:
            load.resume()
        self.history.note("load resumed")

    async def wait_until(self, condition: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if await condition():
                return True
            await asyncio.sleep(0.25)
        return False

    def log_count(self, i: int, text: str) -> int:
        """Lines of node i's log containing `text` (its whole log: restarts append)."""
        path = self.cluster.layout.node_dir(i) / "node.log"
        return sum(text in line for line in path.read_text(errors="replace").splitlines()) if path.exists() else 0

    def invariant(self, name: str, passed: bool, detail: str) -> None:
        self.extra.setdefault("invariants", {})[name] = {"passed": bool(passed), "detail": detail}

    def figure(self, name: str, value: Any) -> None:
        self.extra.setdefault("figures", {})[name] = value


Schedule = Callable[[Ctx], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    schedule: Schedule
    nodes: int = 3
    consensus: dict[str, Any] = field(default_factory=dict)
    kind: str = "workload"  # "workload", "fuzz" or "exhaustion"
    unfunded: int = 0  # genesis accounts with a zero balance (what a free device registration gives)
    byzantine_node: str | None = None  # "primary" when the schedule turns the primary Byzantine
    observers: int = 0  # observer nodes (indices n, n+1, ...): stopped until the schedule starts them
    byzantine_start: dict[int, str] = field(default_factory=dict)  # node -> mode, from the cluster's start
    clock_start: dict[int, int] = field(default_factory=dict)  # node -> clock_offset_ms, from the start
    # Its timeline records every action of its schedule, with the targets: a trace of it can
    # be replayed (faults/replay.py). Not so for schedules that also send, vote or fuzz.
    replayable: bool = False


# --- schedules --------------------------------------------------------------------------
async def baseline(ctx: Ctx) -> None:
    ctx.history.note("no faults")
    await ctx.sleep(ctx.duration)


async def kill_restart_one(ctx: Ctx) -> None:
    victim = ctx.rng.randrange(ctx.cluster.nodes)
    loop = asyncio.get_running_loop()
    end = loop.time() + ctx.duration
    while loop.time() < end - 2:
        ctx.kill(victim)
        await ctx.sleep(ctx.rng.uniform(0.5, 2.0))
        await ctx.restart(victim)
        ctx.history.heal("restarted", node=victim)
        await ctx.sleep(ctx.rng.uniform(1.0, 3.0))


async def kill_primary(ctx: Ctx) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + ctx.duration
    rounds = 0
    while loop.time() < end - 3 or rounds == 0:
        primary = (await ctx.group())[0]
        ctx.kill(primary)
        await ctx.sleep(min(ctx.duration / 2, ctx.rng.uniform(3.0, 6.0)))
        await ctx.restart(primary)
        ctx.history.heal("restarted", node=primary)
        rounds += 1
        await ctx.sleep(ctx.rng.uniform(2.0, 4.0))


async def pause_primary_then_follower(ctx: Ctx) -> None:
    half = ctx.duration / 2
    for role in ("primary", "follower"):
        group = await ctx.group()
        victim = group[0] if role == "primary" else ctx.rng.choice(group[1:])
        ctx.history.fault("SIGSTOP", node=victim, role=role)
        ctx.cluster.pause(victim)
        await ctx.sleep(half * 0.6)
        ctx.cluster.resume(victim)
        ctx.history.heal("SIGCONT", node=victim)
        await ctx.sleep(half * 0.4)


async def isolate_node(ctx: Ctx) -> None:
    group = await ctx.group()
    victim = ctx.rng.choice(group[1:])  # a follower: the primary case is the partition scenario
    ctx.history.fault("isolate", node=victim)
    ctx.cluster.proxies.isolate(victim)
    await ctx.sleep(ctx.duration * 0.7)
    ctx.cluster.proxies.heal()
    ctx.history.heal("heal links")
    await ctx.sleep(ctx.duration * 0.3)


async def partition_minority(ctx: Ctx) -> None:
    n = ctx.cluster.nodes
    primary = (await ctx.group())[0]
    others = [i for i in range(n) if i != primary]
    ctx.rng.shuffle(others)
    minority = sorted([primary, *others[: ctx.cluster.t - 1]])
    majority = sorted(i for i in range(n) if i not in minority)
    ctx.history.fault("partition", minority=minority, majority=majority)
    ctx.cluster.proxies.partition([minority, majority])
    await ctx.sleep(ctx.duration * 0.7)
    ctx.cluster.proxies.heal()
    ctx.history.heal("heal links")
    await ctx.sleep(ctx.duration * 0.3)


async def one_way_cut(ctx: Ctx) -> None:
    group = await ctx.group()
    src, dst = group[0], ctx.rng.choice(group[1:])
    ctx.history.fault("cut one direction", src=src, dst=dst)
    ctx.cluster.proxies.set(src, dst, LinkFault(blackhole=True))
    await ctx.sleep(ctx.duration * 0.7)
    ctx.cluster.proxies.heal()
    ctx.history.heal("heal links")
    await ctx.sleep(ctx.duration * 0.3)


async def delay_drop(ctx: Ctx) -> None:
    n = ctx.cluster.nodes
    pairs = [(a, b) for a in range(n) for b in range(n) if a != b]
    fault = LinkFault(drop_p=0.1, delay_ms=30, jitter_ms=30)
    ctx.history.fault("delay and drop on every link", drop_p=fault.drop_p, delay_ms=fault.delay_ms,
                      jitter_ms=fault.jitter_ms)
    ctx.cluster.proxies.set_many(pairs, fault)
    await ctx.sleep(ctx.duration * 0.4)
    heavy = LinkFault(drop_p=0.3, delay_ms=80, jitter_ms=80)
    chosen = ctx.rng.sample(pairs, k=max(1, len(pairs) // 3))
    ctx.history.fault("heavier on some links", links=[f"{a}->{b}" for a, b in chosen], drop_p=heavy.drop_p,
                      delay_ms=heavy.delay_ms, jitter_ms=heavy.jitter_ms)
    ctx.cluster.proxies.set_many(chosen, heavy)
    await ctx.sleep(ctx.duration * 0.3)
    ctx.cluster.proxies.heal()
    ctx.history.heal("heal links")
    await ctx.sleep(ctx.duration * 0.3)


async def restart_all(ctx: Ctx) -> None:
    n = ctx.cluster.nodes
    for how in ("kill -9", "SIGTERM"):
        ctx.history.fault(f"{how} every node")
        if how == "SIGTERM":
            await asyncio.gather(*(asyncio.to_thread(ctx.cluster.terminate, i) for i in range(n)))
        else:
            for i in range(n):
                ctx.cluster.kill(i)
        await ctx.sleep(0.5)
        for i in range(n):
            ctx.cluster.start_node(i)
            ctx.history.restarts.append((ctx.history.now(), i))
        await ctx.cluster.wait_serving()
        ctx.history.heal("restarted every node")
        await ctx.sleep(ctx.duration / 2 - 1)


async def crash_majority(ctx: Ctx) -> None:
    """More than t crashed: nothing may become final until enough come back."""
    t = ctx.cluster.t
    group = await ctx.group()
    victims = [group[0], *ctx.rng.sample([i for i in range(ctx.cluster.nodes) if i != group[0]], t)]
    for victim in victims:
        ctx.kill(victim)
    grace = 1.0  # a block whose last vote was already in flight may still land
    down_from = ctx.history.now() + grace
    await ctx.sleep(ctx.duration * 0.6)
    ctx.down_windows.append((down_from, ctx.history.now()))
    for victim in victims:
        await ctx.restart(victim)
    ctx.history.heal("restarted", nodes=victims)
    await ctx.sleep(ctx.duration * 0.4)


def byzantine(mode: str) -> Schedule:
    async def schedule(ctx: Ctx) -> None:
        primary = (await ctx.group())[0]
        ctx.extra["byzantine_node"] = primary
        ctx.history.fault("byzantine", node=primary, mode=mode)
        ctx.cluster.kill(primary)
        await ctx.restart(primary, byzantine=mode)
        await ctx.sleep(ctx.duration * 0.7)
        ctx.cluster.kill(primary)
        await ctx.restart(primary)
        ctx.history.heal("restarted honest", node=primary)
        await ctx.sleep(ctx.duration * 0.3)
    return schedule


async def double_spend(ctx: Ctx) -> None:
    """Same sender and nonce, two different transfers, sent at once to two nodes."""
    c = ctx.cluster
    rounds = max(3, int(ctx.duration))
    spenders = [c.accounts[-2], c.accounts[-3]]
    outcomes = {"rounds": 0, "one_final": 0, "none_final": 0, "both_final": 0}
    for r in range(rounds):
        key = spenders[r % 2]
        a, b = ctx.rng.sample(range(c.nodes), 2)
        try:
            nonce = (await c.call(a, "account_get", "0x" + key.address.hex()))["pendingNonce"]
        except ClientError:
            continue
        txs = [Transaction.create(key, chain_id=ctx.chain_id, nonce=nonce, to=ctx.token, method="transfer",
                                  args=[c.accounts[-1 - k * 3].address, 1_000 + r * 2 + k], gas_limit=1_000_000)
               for k in range(2)]
        ops = [ctx.history.invoke(-1, node, "0x" + tx.hash.hex(), "0x" + key.address.hex(), nonce)
               for node, tx in zip((a, b), txs, strict=True)]

        async def send(node: int, tx: Transaction) -> str | None:
            try:
                await c.call(node, "tx_send", "0x" + rlp.encode(tx).hex())
                return None
            except RpcCallError as exc:
                return f"rejected: {exc.reason}"
            except ClientError as exc:
                return f"send: {cause(exc)}"
        refusals = await asyncio.gather(send(a, txs[0]), send(b, txs[1]))
        final = []
        for _ in range(100):  # wait until the nonce is consumed (the race is decided)
            account = await _account(c, key.address)
            if account is not None and account["nonce"] > nonce:
                break
            await asyncio.sleep(0.1)
        for op, node, refusal in zip(ops, (a, b), refusals, strict=True):
            receipt = None
            for i in (node, *range(c.nodes)):
                try:
                    receipt = await c.receipt(i, op.tx)
                    break
                except ClientError:
                    continue
            if receipt is not None:
                ctx.history.complete(op, OK, "race winner", receipt.block_number, receipt.block_hash_hex)
                final.append(op.tx)
            elif refusal is not None and refusal.startswith("rejected"):
                ctx.history.complete(op, FAIL, refusal)
            else:
                ctx.history.complete(op, INFO, refusal or "race loser (nonce consumed)")
        outcomes["rounds"] += 1
        outcomes[{0: "none_final", 1: "one_final", 2: "both_final"}[len(final)]] += 1
    ctx.extra.setdefault("figures", {})["double_spend"] = outcomes
    ctx.extra.setdefault("invariants", {})["double_spend_at_most_one"] = {
        "passed": outcomes["both_final"] == 0,
        "detail": f"{outcomes['rounds']} races: {outcomes['one_final']} with one final, "
                  f"{outcomes['none_final']} with none, {outcomes['both_final']} with both"}


async def _account(c: FaultCluster, address: bytes) -> dict[str, Any] | None:
    for i in range(c.nodes):
        try:
            account: dict[str, Any] = await c.call(i, "account_get", "0x" + address.hex())
            return account
        except ClientError:
            continue
    return None


async def crash_loop(ctx: Ctx) -> None:
    """kill -9 a node while blocks are being committed, `verify` its store, restart it."""
    c = ctx.cluster
    results: dict[str, Any] = {"kills": 0, "verify_clean": 0, "problems": []}
    for k in range(ctx.iterations):
        victim = ctx.rng.randrange(c.nodes)
        await ctx.sleep(ctx.rng.uniform(0.2, 1.0))
        ctx.kill(victim)
        clean, summary = await asyncio.to_thread(c.verify_store, victim)
        results["kills"] += 1
        if clean:
            results["verify_clean"] += 1
        else:
            results["problems"].append({"kill": k, "node": victim, "verify": summary})
        ctx.history.note("verify", node=victim, clean=clean, summary=summary)
        await ctx.restart(victim)
        ctx.history.heal("restarted", node=victim)
    ctx.extra.setdefault("figures", {})["crash_loop"] = {k: v for k, v in results.items() if k != "problems"}
    ctx.extra.setdefault("invariants", {})["verify_clean_after_each_kill"] = {
        "passed": not results["problems"],
        "detail": f"{results['verify_clean']} of {results['kills']} stores clean"
                  + (f"; {results['problems'][:3]}" if results["problems"] else "")}


FLOOD_SENDERS = 48
FLOOD_TXS_PER_SENDER = 65
FLOOD_JUNK_BYTES = 15_000  # with the envelope, just under genesis tx_bytes_max (16 KiB)
FLOOD_RSS_BYTES_MAX = 1 << 30  # a node's memory bound during the flood (it was 2.7 GB and growing)
FLOOD_HONEST_P99_S_MAX = 20.0  # honest transfers invoked during the flood: p99 to final receipt


async def junk_flood(ctx: Ctx) -> None:
    """Accounts without tokens (free to register) flood every node with 16 KiB junk calls:
    the chain keeps making blocks, honest transfers stay final with bounded latency, memory
    stays bounded, and the flooders are held to their quota."""
    c = ctx.cluster
    heights_before = [s["height"] for s in await asyncio.gather(*(c.status(i) for i in range(c.nodes))) if s]
    junk = bytes(ctx.rng.getrandbits(8) for _ in range(FLOOD_JUNK_BYTES))
    reasons: Counter[str] = Counter()
    rss_peak = [0] * c.nodes
    deadline = asyncio.get_running_loop().time() + ctx.duration
    ctx.history.fault("junk flood", senders=len(c.unfunded), txs_each=FLOOD_TXS_PER_SENDER,
                      tx_bytes=FLOOD_JUNK_BYTES)
    flood_started = ctx.history.now()

    async def flooder(k: int, key: KeyPair) -> None:
        for nonce in range(FLOOD_TXS_PER_SENDER):
            if asyncio.get_running_loop().time() > deadline:
                return
            tx = Transaction.create(key, chain_id=ctx.chain_id, nonce=nonce, to=ctx.token, method="transfer",
                                    args=[junk, 0], gas_limit=1_000_000)
            try:
                await c.call((k + nonce) % c.nodes, "tx_send", "0x" + rlp.encode(tx).hex())
                reasons["accepted"] += 1
            except RpcCallError as exc:
                reasons[exc.reason or "error"] += 1
            except ClientError as exc:
                reasons[cause(exc)] += 1

    async def watch_memory() -> None:
        while True:
            for i in range(c.nodes):
                rss_peak[i] = max(rss_peak[i], c.rss_bytes(i) or 0)
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch_memory())
    try:
        await asyncio.gather(*(flooder(k, key) for k, key in enumerate(c.unfunded)))
        await ctx.sleep(deadline - asyncio.get_running_loop().time())
    finally:
        watcher.cancel()
    flood_ended = ctx.history.now()
    ctx.history.heal("flood over", **dict(reasons))
    heights_after = [s["height"] for s in await asyncio.gather(*(c.status(i) for i in range(c.nodes))) if s]
    honest = sorted(latency for op in ctx.history.ops
                    if op.outcome == OK and flood_started <= op.invoke <= flood_ended
                    and (latency := op.latency()) is not None)
    p99 = honest[min(len(honest) - 1, int(len(honest) * 0.99))] if honest else None
    invariants = ctx.extra.setdefault("invariants", {})
    invariants["flood_chain_advanced"] = {
        "passed": bool(heights_after) and min(heights_after) > max(heights_before, default=0),
        "detail": f"heights {heights_before} before the flood, {heights_after} after"}
    invariants["flood_honest_final_bounded"] = {
        "passed": p99 is not None and p99 <= FLOOD_HONEST_P99_S_MAX,
        "detail": f"{len(honest)} honest transfers invoked during the flood final, p99 "
                  f"{'-' if p99 is None else f'{p99:.2f}'} s (bound {FLOOD_HONEST_P99_S_MAX} s)"}
    invariants["flood_memory_bounded"] = {
        "passed": max(rss_peak) <= FLOOD_RSS_BYTES_MAX,
        "detail": f"peak RSS per node {[f'{r / 2**20:.0f} MiB' for r in rss_peak]} "
                  f"(bound {FLOOD_RSS_BYTES_MAX / 2**20:.0f} MiB)"}
    ctx.extra.setdefault("figures", {})["flood"] = {
        "outcomes": dict(reasons), "honest_final_during_flood": len(honest), "honest_p99_s": p99,
        "rss_peak_mib": [round(r / 2**20) for r in rss_peak]}


CLOCK_AHEAD_MS = 10 * 365 * 24 * 3600 * 1000  # the primary: ten years ahead
CLOCK_BEHIND_MS = -10 * 60 * 1000  # ten minutes behind: far past clock_drift_ms_max
REFUSED_AHEAD = "ahead of this replica's clock"  # the suspicion a refused block time logs


SKEWED = {CLOCK_AHEAD_MS: 0, CLOCK_BEHIND_MS: 1}  # view 0's primary ahead, its follower behind


def _refused(ctx: Ctx) -> int:
    return sum(ctx.log_count(i, REFUSED_AHEAD) for i in range(ctx.cluster.nodes))


def clock_skew(offset_ms: int) -> Schedule:
    """One node's wall clock is shifted from the cluster's start (test-only [node]
    clock_offset_ms, `Scenario.clock_start`): view 0's primary ahead (its proposals must be
    refused and it rotated out), or view 0's follower behind (it refuses the honest primary's
    blocks as too far ahead; the chain must still advance). After the phase it restarts
    with a true clock. The generic chain_time_sane invariant checks every final block."""
    ahead = offset_ms > 0
    victim = SKEWED[offset_ms]

    async def schedule(ctx: Ctx) -> None:
        c = ctx.cluster
        others = [i for i in range(c.nodes) if i != victim]
        before = await ctx.heights(others)
        await ctx.sleep(ctx.duration * 0.7)
        after = await ctx.heights(others)
        primary = (await ctx.group())[0]
        refused = _refused(ctx)
        c.kill(victim)
        await ctx.restart(victim)
        ctx.history.heal("clock reset", node=victim)
        await ctx.sleep(ctx.duration * 0.3)
        progress = min(after.get(i, 0) - before.get(i, 0) for i in others)
        ctx.figure("clock_skew", {"node": victim, "offset_ms": offset_ms, "refused_proposals": refused,
                                  "blocks_during_skew": progress, "primary_at_end_of_skew": primary})
        ctx.invariant("skewed_block_times_refused", refused > 0,
                      f"{refused} proposals refused as dated more than clock_drift_ms_max ahead")
        if ahead:
            ctx.invariant("fast_clock_rotated_out", primary != victim,
                          f"primary at the end of the skew: node{primary}")
        ctx.invariant("chain_advanced_during_skew", progress > 0,
                      f"{progress} blocks final on every other node while node{victim} was skewed")
    return schedule


OBSERVER_CATCH_UP_TIMEOUT_S = 30


async def observer_fork(ctx: Ctx) -> None:
    """Node 1, the follower of view 0, runs "withhold-commit" from the cluster's start: it
    holds the certificate of the first block (the primary's PREPARE vote and its own), never
    sends its COMMIT, appends the block itself and announces a head far ahead to non-
    bookkeepers. The group finalizes another block at that height. A catching-up observer
    first reaches node 1 only, then everyone: it must refuse the withheld block, report
    node 1, and follow the consortium's chain."""
    c = ctx.cluster
    observer, byzantine = c.observers[0], 1
    honest = [i for i in range(c.nodes) if i != byzantine]

    async def forked() -> bool:
        status = await c.status(byzantine)
        heights = await ctx.heights(honest)
        if status is None or len(heights) < len(honest) or min(heights.values()) < status["height"] + 2:
            return False
        block = await c.call(honest[0], "chain_getBlock", status["height"])
        return block is not None and block["hash"] != status["headHash"]
    if not await ctx.wait_until(forked, 30):
        ctx.invariant("withheld_block_exists", False, "node1 never forked off (the mode did not act)")
        return
    status = await c.status(byzantine)
    assert status is not None
    fork_height, withheld = status["height"], status["headHash"]
    ctx.history.fault("observer reaches the withholding node only", node=observer, fork_height=fork_height)
    c.proxies.set_many([(a, b) for a in (observer,) for b in honest] + [(b, observer) for b in honest],
                       LinkFault(blackhole=True))
    c.start_node(observer)
    await c.wait_serving([observer])

    async def served() -> bool:
        refused = await c.metric(observer, "gridchain_sync_bad_blocks_total")
        status = await c.status(observer)
        return refused > 0 or (status is not None and status["height"] >= fork_height)
    ctx.history.note("observer served by node1", served=await ctx.wait_until(served, 20))
    c.proxies.heal()
    ctx.history.heal("heal links")
    target = max((await ctx.heights(honest)).values())

    async def caught_up() -> bool:
        status = await c.status(observer)
        return status is not None and status["height"] >= target
    caught = await ctx.wait_until(caught_up, OBSERVER_CATCH_UP_TIMEOUT_S)
    block = await c.call(observer, "chain_getBlock", fork_height)
    final = await c.call(honest[0], "chain_getBlock", fork_height)
    reported = await c.metric(observer, "gridchain_sync_bad_blocks_total", 'reason="not-final"')
    observer_status = await c.status(observer)
    ctx.figure("observer_fork", {"fork_height": fork_height, "withheld_block": withheld,
                                 "observer_height": observer_status["height"] if observer_status else None,
                                 "target_height": target, "refused_not_final": reported})
    ctx.invariant("observer_refused_withheld_block", block is not None and block["hash"] == final["hash"],
                  f"observer block {fork_height}: {block['hash'] if block else None}, final "
                  f"{final['hash']}, withheld {withheld}")
    ctx.invariant("observer_caught_up", caught, f"observer at {observer_status and observer_status['height']}"
                  f", consortium at {target} or more")
    # The withholder still claims a head far ahead: a penalized peer's claim must not keep the
    # observer "catching up" for ever (/health); under load it may trail by a block at times.

    async def in_sync() -> bool:
        status = await c.status(observer)
        return status is not None and not status["syncing"]
    ctx.invariant("observer_in_sync", await ctx.wait_until(in_sync, OBSERVER_CATCH_UP_TIMEOUT_S),
                  f"observer reported itself in sync within {OBSERVER_CATCH_UP_TIMEOUT_S} s")
    ctx.invariant("withholding_peer_reported", reported > 0, f"{reported:.0f} blocks refused as not final")
    # Node 1's store holds the withheld block: replace it with a fresh honest node (block sync).
    c.kill(byzantine)
    c.wipe(byzantine)
    await ctx.restart(byzantine)
    ctx.history.heal("node1 replaced by a fresh honest node", node=byzantine)
    await ctx.sleep(ctx.duration * 0.3)


# --- membership changes under faults (issue 16) ----------------------------------------
SET_VOTE_TIMEOUT_S = 60  # one governance transaction final, through view changes
SET_SWITCH_TIMEOUT_S = 90  # every node in the new set with a block made in it


def _admins(c: FaultCluster) -> list[KeyPair]:
    directory = c.layout.directory
    return [load_key(directory / "admins" / f"admin{j}.key", cluster_passphrase(directory)) for j in range(2)]


async def _set_change(ctx: Ctx, via: int, kind: str, keys: list[bytes], t: int, voters: list[KeyPair]) -> int | None:
    """Propose and vote (each signed here, sent by governance_propose / governance_vote to
    node `via`); the first height of the new set, or None if it was not accepted."""
    ctx.history.note("set change proposed", kind=kind, keys=[k.hex()[:12] for k in keys], t=t, via=via)
    async with GridClient(ctx.cluster.url(via)) as client:
        try:
            receipt = await Governance.submit(Governance.propose(kind, keys, t), client, voters[0],
                                              timeout_s=SET_VOTE_TIMEOUT_S)
            proposal = receipt.event("Proposed")["id"]
            assert isinstance(proposal, int)
            for voter in voters[1:]:
                receipt = await Governance.submit(Governance.vote(proposal), client, voter,
                                                  timeout_s=SET_VOTE_TIMEOUT_S)
        except (ClientError, TimeoutError) as exc:
            ctx.history.note("set change failed", error=f"{type(exc).__name__}: {exc}"[:200])
            return None
    accepted = receipt.events_named("Accepted")
    if not accepted:
        return None
    start = accepted[0]["start"]
    assert isinstance(start, int)
    ctx.history.note("set change accepted", block=receipt.block_number, start=start)
    return start


async def _in_set(ctx: Ctx, nodes: list[int], start: int, n: int) -> bool:
    """Every one of `nodes` runs the set starting at `start` (n members) as a bookkeeper
    and holds a block made in it, at the height of the highest of them."""
    async def check() -> bool:
        statuses = [await ctx.cluster.status(i) for i in nodes]
        if any(s is None for s in statuses):
            return False
        top = max(s["height"] for s in statuses if s is not None)
        return all(s is not None and s["epoch"] == start and len(s["bookkeepers"]) == n
                   and s["consensusState"] != "observer" and s["height"] > start and s["height"] >= top - 1
                   for s in statuses)
    return await ctx.wait_until(check, SET_SWITCH_TIMEOUT_S)


async def join_while_crashed(ctx: Ctx) -> None:
    """3 -> 5: the two observers are voted in while a bookkeeper is crashed (the vote needs
    2 of the 3, the switch happens without it); it restarts with the old epoch's consensus
    state, catches up across the boundary and takes its seat in the new set."""
    c = ctx.cluster
    for node in c.observers:
        c.start_node(node)
    await c.wait_serving(c.observers)
    victim = ctx.rng.randrange(c.nodes)
    ctx.kill(victim)
    alive = [i for i in range(c.nodes) if i != victim]
    voters = [*_admins(c), *(c.node_keys[i] for i in alive)]
    start = await _set_change(ctx, alive[0], "add", [c.node_keys[o].public_key for o in c.observers], 2, voters)
    ctx.invariant("set_change_accepted", start is not None, f"3 -> 5 accepted, first height {start}")
    if start is not None:
        switched = await _in_set(ctx, [*alive, *c.observers], start, 5)
        ctx.invariant("switched_while_crashed", switched, f"nodes {alive} and the joiners {c.observers} in the "
                      f"set of {start} while node{victim} is down")
    await ctx.restart(victim)
    ctx.history.heal("restarted", node=victim)
    if start is not None:
        rejoined = await _in_set(ctx, [victim, *alive, *c.observers], start, 5)
        ctx.invariant("crashed_replica_rejoined", rejoined, f"node{victim} a bookkeeper of the set of {start}, "
                      f"level with the others")
    await ctx.sleep(ctx.duration * 0.3)


async def remove_while_partitioned(ctx: Ctx) -> None:
    """5 -> 3: bookkeepers 3 and 4 are voted out while a staying one is cut off from every
    peer; the removed ones hand over what they hold and take nothing new (`leaving`), the
    isolated one catches up across the boundary after the heal, and the removed ones end
    cut off (their links refused), on a prefix of the consortium's chain."""
    c = ctx.cluster
    leaving, staying = [3, 4], [0, 1, 2]
    isolated = ctx.rng.choice(staying)
    ctx.history.fault("isolate", node=isolated)
    c.proxies.isolate(isolated)
    voters = [*_admins(c), *(c.node_keys[i] for i in range(c.nodes) if i != isolated)][:5]  # 2 admins, 3 of 5
    via = next(i for i in staying if i != isolated)
    start = await _set_change(ctx, via, "remove", [c.node_keys[i].public_key for i in leaving], 1, voters)
    ctx.invariant("set_change_accepted", start is not None, f"5 -> 3 accepted, first height {start}")
    if start is not None:
        ctx.extra["departed"] = leaving  # cut off by design: not expected to converge
        others = [i for i in staying if i != isolated]
        ctx.invariant("switched_while_partitioned", await _in_set(ctx, others, start, 3),
                      f"nodes {others} in the set of {start} while node{isolated} is isolated")
    c.proxies.heal()
    ctx.history.heal("heal links")
    if start is None:
        return
    ctx.invariant("isolated_replica_rejoined", await _in_set(ctx, staying, start, 3),
                  f"node{isolated} a bookkeeper of the set of {start}, level with the others")
    names = {f"node{i}" for i in staying}
    cut_off = []
    for i in leaving:
        status = await c.status(i)
        cut_off.append(status is not None and not names & set(status["peers"])
                       and (status["consensusState"] == "observer" or status["height"] < start))
    ctx.invariant("removed_cut_off", all(cut_off), f"nodes {leaving} hold no link to {sorted(names)} "
                  f"and sign nothing in the new set: {cut_off}")
    agree = True
    for i in leaving:
        status = await c.status(i)
        height = status["height"] if status else 0
        mine, theirs = await c.call(i, "chain_getBlock", height), await c.call(staying[0], "chain_getBlock", height)
        agree &= mine is not None and theirs is not None and mine["hash"] == theirs["hash"]
    ctx.invariant("removed_on_a_prefix", agree, f"the heads of nodes {leaving} are the consortium's blocks")
    await ctx.sleep(ctx.duration * 0.3)


DATA_LOSS_DETECT_TIMEOUT_S = 60
DATA_LOSS_QUIESCE_TIMEOUT_S = 30  # the in-flight ops' receipts: a few blocks


async def data_loss(ctx: Ctx) -> None:
    """Node 1, the follower of view 0, runs "drop-log" from the cluster's start: in every
    VIEW-CHANGE it reports a final head two blocks below its own and no log entry, as a
    replica that lost the end of its log would. The primary is killed, so view 1 = (1, 2)
    follows: node 2 merges node 1's VIEW-CHANGE and must prove the state loss (XFT §4.4),
    show it in RPC consensus_faults, /metrics and its log, and the chain must go on under
    load; no honest node is ever named.

    The kill waits for a moment when every node holds the same final head (load held for
    it). A crashed primary and a lying follower are two faults with t = 1: anarchy, where
    XFT promises no consistency, and detection works only on what the honest replicas
    saw. Killed just after it finalized a block whose FINAL had not left, the primary
    alone knew the block final; node 1 dropped it from its VIEW-CHANGE, view 1 decided
    another block at that height, and the restarted primary's store forked from the
    consortium (a fresh-clone CI run, seed 7, height 257)."""
    c = ctx.cluster
    liar, honest = 1, [0, 2]
    await ctx.sleep(ctx.duration * 0.3)  # blocks final in view 0, with node 1's votes
    primary = (await ctx.group())[0]
    quiet = await ctx.quiesce(list(range(c.nodes)), DATA_LOSS_QUIESCE_TIMEOUT_S)
    ctx.invariant("data_loss_kill_on_a_shared_head", quiet, "every node held the primary's final head at the kill"
                  if quiet else f"no common final head in {DATA_LOSS_QUIESCE_TIMEOUT_S} s with the load held")
    ctx.kill(primary)
    ctx.resume_load()

    async def named() -> bool:
        faults = await c.call(2, "consensus_faults")
        return any(f["accused"] == liar and f["kind"] == "state-loss" for f in faults or [])
    detected = await ctx.wait_until(named, DATA_LOSS_DETECT_TIMEOUT_S)
    await ctx.restart(primary)
    ctx.history.heal("restarted", node=primary)
    faults = await c.call(2, "consensus_faults") or []
    counted = await c.metric(2, "gridchain_consensus_faults_total", 'kind="state-loss"')
    logged = ctx.log_count(2, "is faulty: state-loss")
    ctx.figure("data_loss", {"faults_at_node2": faults, "metric": counted, "log_lines": logged})
    ctx.invariant("data_loss_detected", detected and counted > 0 and logged > 0,
                  f"node 2 named node 1: {detected}; metric {counted:.0f}; log lines {logged}")
    await ctx.sleep(ctx.duration * 0.3)
    wrongly = [f for i in honest if c.is_running(i) for f in await c.call(i, "consensus_faults") or []
               if f["accused"] != liar]
    ctx.invariant("no_honest_node_named", not wrongly, f"named besides node 1: {wrongly}")
    # Replace the liar by an honest node on the same store (its ledger was intact).
    c.kill(liar)
    await ctx.restart(liar, byzantine=None)
    ctx.history.heal("node1 restarted honest", node=liar)
    await ctx.sleep(ctx.duration * 0.3)


# --- the registry -----------------------------------------------------------------------
def _registry() -> dict[str, Scenario]:
    items = [
        Scenario("baseline", "no faults: load only", baseline, replayable=True),
        Scenario("kill-restart", "repeated kill -9 and restart of one replica", kill_restart_one, replayable=True),
        Scenario("kill-primary", "kill -9 the primary under load, restart it later", kill_primary,
                 replayable=True),
        Scenario("pause", "SIGSTOP the primary, SIGCONT; then the same to a follower", pause_primary_then_follower,
                 replayable=True),
        Scenario("isolate", "blackhole every link of one follower, then heal", isolate_node, replayable=True),
        Scenario("partition", "partition into a minority holding the primary and a majority", partition_minority,
                 nodes=5, replayable=True),
        Scenario("one-way", "cut the primary -> follower direction only", one_way_cut, replayable=True),
        Scenario("delay-drop", "delay (with jitter) and drop frames on every link", delay_drop, replayable=True),
        Scenario("restart-all", "kill -9 every node and restart; then SIGTERM every node and restart", restart_all,
                 replayable=True),
        Scenario("crash-majority", "more than t nodes crashed (the primary among them), then restarted",
                 crash_majority, replayable=True),
        Scenario("double-spend", "same nonce, two different transfers, sent at once to two nodes", double_spend),
        Scenario("crash-loop", "kill -9 during block commits, `verify` clean after each, restart", crash_loop,
                 replayable=True),
        Scenario("junk-flood", f"{FLOOD_SENDERS} accounts without tokens send 16 KiB junk calls as fast as "
                 "they can", junk_flood, unfunded=FLOOD_SENDERS),
        Scenario("insider-fuzz", "a bookkeeper's key sends crafted, signed consensus and sync messages of every "
                 "type and nesting to every node under load", insider_fuzz),
        Scenario("insider-bigblock", "a bookkeeper that is not the primary floods every node with signed, "
                 "frame-sized PREPAREs, FINALs and VIEW-CHANGEs, each a new block of 24,000 transactions, under load",
                 insider_bigblock),
        Scenario("clock-ahead", "the primary's clock ten years ahead: proposals refused, rotated out",
                 clock_skew(CLOCK_AHEAD_MS), clock_start={SKEWED[CLOCK_AHEAD_MS]: CLOCK_AHEAD_MS}),
        Scenario("clock-behind", "a follower's clock ten minutes behind: the chain still advances",
                 clock_skew(CLOCK_BEHIND_MS), clock_start={SKEWED[CLOCK_BEHIND_MS]: CLOCK_BEHIND_MS}),
        Scenario("observer-fork", "a follower withholds its COMMIT and serves the certified block to a "
                 "catching-up observer", observer_fork, observers=1, byzantine_start={1: "withhold-commit"}),
        Scenario("join-while-crashed", "3 -> 5 bookkeepers voted while one is crashed; it restarts into the "
                 "new set", join_while_crashed, observers=2),
        Scenario("remove-while-partitioned", "5 -> 3 bookkeepers voted while a staying one is isolated; the "
                 "removed hand over and are cut off", remove_while_partitioned, nodes=5),
        Scenario("data-loss", "a follower reports a shorter commit log in its VIEW-CHANGE (state loss); the "
                 "primary is killed; the new group proves it (XFT fault detection)", data_loss,
                 byzantine_start={1: "drop-log"}),
    ]
    # "drop-log" lies only in view changes: its own scenario above forces one where it counts.
    for mode in (m for m in BYZANTINE_MODES if m != "drop-log"):
        for t in (1, 2):
            items.append(Scenario(f"byzantine-{mode}-t{t}", f"the primary turns Byzantine ({mode}), t = {t}",
                                  byzantine(mode), nodes=2 * t + 1, byzantine_node="primary",
                                  replayable=True))
    items.append(Scenario("fuzz-rpc", "hypothesis-generated bad JSON-RPC input against a running node",
                          _runs_elsewhere, kind="fuzz"))
    items.append(Scenario("fuzz-p2p", "hypothesis-generated bad p2p input (strangers and a valid peer key)",
                          _runs_elsewhere, kind="fuzz"))
    items += [
        Scenario("exhaust-slowloris", "RPC slowloris from one address, then many; a peer restarts meanwhile",
                 _runs_elsewhere, kind="exhaustion"),
        Scenario("exhaust-batch", "batches of 100 full 1 MB blocks while /health is timed", _runs_elsewhere,
                 kind="exhaustion"),
        Scenario("exhaust-handshakes", "70 silent connections per p2p listener while a bookkeeper restarts",
                 _runs_elsewhere, kind="exhaustion"),
    ]
    return {s.name: s for s in items}


async def _runs_elsewhere(ctx: Ctx) -> None:
    raise AssertionError("fuzz and exhaustion scenarios run through faults.fuzz and faults.exhaustion")


SCENARIOS = _registry()
