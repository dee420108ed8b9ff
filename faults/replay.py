"""Replaying a scenario from its trace (`node.py faults --replay TRACE`, docs/faults.md).

A trace is the report entry a run wrote (`node.py faults --json`): the scenario, the seed,
the fault phase's length, the load (clients, open-loop rate) and the timeline of every
fault, heal and restart as it happened, with its targets. A replay builds the same cluster
and load from the seed (its keys and ports, the proxies' drop decisions, the workload's
choices) and then, instead of running the scenario's schedule again, carries out the
recorded events in order, each no earlier than its recorded time. A schedule's choices
depend on what the cluster says at the moment (the primary then, how many rounds fit in
the phase), so a rerun with the same seed may pick another node; a replay cannot: the
faults, their targets and their order are the trace's. Process timing on a shared machine
is not reproduced.

Not replayed: the checks a schedule makes itself (crash-majority's window with no progress,
crash-loop's `verify` after each kill, the membership, clock, detection and double-spend
scenarios' own invariants); the checker's invariants are judged as in any run. A trace
holding an event no replay can carry out (a fuzzer's cases, a junk flood, a governance
vote, a clock skew set mid-run) is refused before anything starts.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faults.proxy import LinkFault
from faults.runner import run_scenario
from faults.scenarios import SCENARIOS, Ctx


class NotReplayable(Exception):
    """The trace cannot be replayed (not a report entry, an unknown scenario, or an event
    that names a fault a replay cannot carry out)."""


@dataclass(frozen=True)
class Trace:
    scenario: str
    seed: int
    duration: float
    clients: int
    rate: float
    iterations: int
    events: tuple[dict[str, Any], ...]  # the timeline's entries a replay carries out, in order


Step = Callable[[Ctx, dict[str, Any]], Awaitable[None]]


def _fields(event: dict[str, Any]) -> dict[str, Any]:
    """What an event did, without when ("since": when a restart that took a while began)."""
    return {key: value for key, value in event.items() if key not in ("t", "since", "kind", "action")}


def _pairs(n: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(n) for b in range(n) if a != b]


async def _kill(ctx: Ctx, event: dict[str, Any]) -> None:
    ctx.cluster.kill(event["node"])


async def _kill_all(ctx: Ctx, event: dict[str, Any]) -> None:
    for i in range(ctx.cluster.nodes):
        ctx.cluster.kill(i)


async def _terminate_all(ctx: Ctx, event: dict[str, Any]) -> None:
    for i in range(ctx.cluster.nodes):
        ctx.cluster.terminate(i)


async def _pause(ctx: Ctx, event: dict[str, Any]) -> None:
    ctx.cluster.pause(event["node"])


async def _resume(ctx: Ctx, event: dict[str, Any]) -> None:
    ctx.cluster.resume(event["node"])


async def _isolate(ctx: Ctx, event: dict[str, Any]) -> None:
    ctx.cluster.proxies.isolate(event["node"])


async def _partition(ctx: Ctx, event: dict[str, Any]) -> None:
    ctx.cluster.proxies.partition([event["minority"], event["majority"]])


async def _cut(ctx: Ctx, event: dict[str, Any]) -> None:
    ctx.cluster.proxies.set(event["src"], event["dst"], LinkFault(blackhole=True))


async def _lossy_links(ctx: Ctx, event: dict[str, Any]) -> None:
    fault = LinkFault(drop_p=event["drop_p"], delay_ms=event["delay_ms"], jitter_ms=event["jitter_ms"])
    if "links" in event:
        pairs = [(int(a), int(b)) for a, b in (link.split("->") for link in event["links"])]
    else:
        pairs = _pairs(ctx.cluster.nodes)
    ctx.cluster.proxies.set_many(pairs, fault)


async def _heal_links(ctx: Ctx, event: dict[str, Any]) -> None:
    ctx.cluster.proxies.heal()


async def _byzantine(ctx: Ctx, event: dict[str, Any]) -> None:
    # The schedule's kill before its restart in the mode (the "restarted" note that follows).
    ctx.extra["byzantine_node"] = event["node"]
    ctx.cluster.kill(event["node"])


async def _restart(ctx: Ctx, event: dict[str, Any]) -> None:
    """The note `Ctx.restart` writes: node i started (in the Byzantine mode it names); a
    schedule that restarts a running node stops it first without an event of its own."""
    node = event["node"]
    if ctx.cluster.is_running(node):
        ctx.cluster.kill(node)
    ctx.cluster.start_node(node, event.get("byzantine"))
    ctx.history.restarts.append((ctx.history.now(), node))
    await ctx.cluster.wait_serving([node])


async def _all_running(ctx: Ctx, event: dict[str, Any]) -> None:
    """A heal after restarts: whatever the trace restarted without a note is started."""
    named = [event["node"]] if "node" in event else event.get("nodes", range(ctx.cluster.nodes))
    stopped = [i for i in named if not ctx.cluster.is_running(i)]
    for i in stopped:
        ctx.cluster.start_node(i)
        ctx.history.restarts.append((ctx.history.now(), i))
    await ctx.cluster.wait_serving(list(named))


# (kind, action) -> how to carry it out, and the fields it needs; every other event of a
# timeline is the runner's own (load started, settled, final heal: a replay's runner does
# them again) or a note.
STEPS: dict[tuple[str, str], tuple[Step, tuple[str, ...]]] = {
    ("fault", "kill -9"): (_kill, ("node",)),
    ("fault", "kill -9 every node"): (_kill_all, ()),
    ("fault", "SIGTERM every node"): (_terminate_all, ()),
    ("fault", "SIGSTOP"): (_pause, ("node",)),
    ("fault", "isolate"): (_isolate, ("node",)),
    ("fault", "partition"): (_partition, ("minority", "majority")),
    ("fault", "cut one direction"): (_cut, ("src", "dst")),
    ("fault", "delay and drop on every link"): (_lossy_links, ("drop_p", "delay_ms", "jitter_ms")),
    ("fault", "heavier on some links"): (_lossy_links, ("links", "drop_p", "delay_ms", "jitter_ms")),
    ("fault", "byzantine"): (_byzantine, ("node", "mode")),
    ("note", "restarted"): (_restart, ("node",)),
    ("heal", "SIGCONT"): (_resume, ("node",)),
    ("heal", "heal links"): (_heal_links, ()),
    ("heal", "restarted"): (_all_running, ()),
    ("heal", "restarted honest"): (_all_running, ()),
    ("heal", "restarted every node"): (_all_running, ()),
}
# Recorded by the runner from the scenario itself (which a replay runs too) or its final heal.
RUNNER_EVENTS = {("fault", "byzantine from the start"), ("fault", "clock skewed from the start"),
                 ("heal", "final heal")}


def replayed(timeline: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """The events of a timeline a replay carries out, without their times: what a replay's
    own timeline must repeat exactly."""
    return [(e["kind"], e["action"], _fields(e)) for e in timeline if (e["kind"], e["action"]) in STEPS]


def trace_of(entry: dict[str, Any]) -> Trace:
    """The trace in one report entry; NotReplayable when it cannot be replayed."""
    try:
        name, seed, duration, timeline = entry["name"], entry["seed"], entry["duration_s"], entry["timeline"]
    except (KeyError, TypeError) as exc:
        raise NotReplayable(f"not a scenario entry of a `node.py faults --json` report (no {exc})") from exc
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise NotReplayable(f"unknown scenario {name!r}")
    if not scenario.replayable:
        raise NotReplayable(f"{name}: its schedule does more than its timeline records (sends, votes, "
                            f"fuzz cases, clock changes); rerun it with --scenario {name} --seed {seed}")
    events = []
    for event in timeline:
        key = (event.get("kind"), event.get("action"))
        if key in STEPS:
            missing = [field for field in STEPS[key][1] if field not in event]
            if missing or not isinstance(event.get("t"), (int, float)):
                raise NotReplayable(f"{name}: the trace's {key[0]} {key[1]!r} lacks {', '.join(missing) or 't'}")
            events.append(event)
        elif key[0] in ("fault", "heal") and key not in RUNNER_EVENTS:
            raise NotReplayable(f"{name}: the trace's {key[0]} {key[1]!r} (t = {event.get('t')} s) cannot be "
                                f"replayed; rerun with --scenario {name} --seed {seed}")
    return Trace(name, int(seed), float(duration), int(entry.get("clients", 4)), float(entry.get("rate", 0)),
                 int(entry.get("iterations", 50)), tuple(events))


TRACE_FIELDS = ("name", "seed", "duration_s", "clients", "rate", "iterations", "timeline")


def trace_text(entry: dict[str, Any]) -> str:
    """What a replay reads of a report entry, as one line of JSON: printed for a failed
    run where only the output survives (a CI log), to be saved and given to --replay."""
    return json.dumps({key: entry[key] for key in TRACE_FIELDS if key in entry}, separators=(",", ":"))


def load_traces(path: Path, names: list[str] | None = None) -> list[Trace]:
    """The traces of a report file (or of one entry of it), those of `names` only if given."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise NotReplayable(f"{path}: {exc}") from exc
    entries = data["scenarios"] if isinstance(data, dict) and "scenarios" in data else [data]
    if names is not None:
        entries = [entry for entry in entries if isinstance(entry, dict) and entry.get("name") in names]
        if not entries:
            raise NotReplayable(f"{path} holds no trace of {', '.join(names)}")
    return [trace_of(entry) for entry in entries]


async def replay_schedule(ctx: Ctx, events: tuple[dict[str, Any], ...]) -> None:
    """The schedule of a replay: each recorded event at (no earlier than) its time (a
    restart's: when it began), recorded again under the same action and fields."""
    for event in events:
        await ctx.sleep(event.get("since", event["t"]) - ctx.history.now())
        fields = _fields(event)
        if "since" in event:
            fields["since"] = round(ctx.history.now(), 3)
        kind, action = event["kind"], event["action"]
        await STEPS[(kind, action)][0](ctx, event)
        if kind == "fault":
            ctx.history.fault(action, **fields)
        elif kind == "heal":
            ctx.history.heal(action, **fields)
        else:
            ctx.history.note(action, **fields)


def replay(trace: Trace, workdir: Path | None = None, keep: bool = False, log: Any = print) -> dict[str, Any]:
    """Run `trace` again; the report entry, with `replay`: how many events it carried out
    and whether its timeline repeats the trace's (`same_faults`: the same actions with the
    same targets, in the same order). It passes only if that holds too."""
    entry = run_scenario(trace.scenario, trace.seed, trace.duration, workdir, iterations=trace.iterations,
                         clients=trace.clients, keep=keep, log=log, rate=trace.rate,
                         schedule=functools.partial(replay_schedule, events=trace.events))
    same = replayed(entry.get("timeline", [])) == replayed(list(trace.events))
    entry["replay"] = {"events": len(trace.events), "same_faults": same}
    entry["passed"] = bool(entry.get("passed")) and same
    return entry
