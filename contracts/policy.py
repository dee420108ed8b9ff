"""Equipment control policy contracts (paper IV.A, V.A step 8): a smartphone publishes the
policy of a device it controls, as data: a bounded list of rules, each a trigger and an
action. Devices submit operation reports. At the end of every block the engine evaluates
the pending triggers without anyone calling (the `end_block` hook), executes the actions
and records each execution as an event in the block's last receipt.

A rule is the list [trigger, metric, op, threshold, action, target, amount]:

- trigger "time": block time (s) >= threshold; "height": block number >= threshold
  (metric and op are ""); "report": a report of `metric` whose value `op` threshold, op
  one of > >= < <= ==.
- action "set_mode": the device's mode becomes `target` (e.g. "power-saving");
  "set_limit": the limit of metric `target` becomes `amount`; "notify": an event carrying
  the code `target` for the smartphone.

Exactly once: a time or height rule fires once, in the first block that reaches it; a
report rule fires once for each report that satisfies it. Publishing a new policy
supersedes the old one: its unfired triggers are dropped. The cost of the hook is bounded:
at most `timed_max` armed time/height rules are scanned and at most `fires_per_block_max`
rules fire per block (the rest wait, in order, for the next block); reports are refused
with "queue-full" when `pending_max` triggers are waiting. Quotas keep one party from
filling what every owner shares: a smartphone arms at most `timed_per_owner_max`
time/height rules ("owner-timed-full"), a device has at most `pending_per_device_max`
report triggers waiting ("device-queue-full").
"""

from __future__ import annotations

from typing import Any

from chain import Value
from contracts.addresses import POLICY, REGISTRY
from contracts.common import get_list, require
from contracts.params import integer
from contracts.registry import DEVICE
from crypto import Address
from vm import CallContext, NativeContract, method, view

TIMED_TRIGGERS = ("time", "height")
REPORT = "report"
OPS = (">", ">=", "<", "<=", "==")
ACTIONS = ("set_mode", "set_limit", "notify")
NAME_CHARS_MAX = 64
DEFAULT_MODE = "normal"

TIMED = b"timed"  # armed time/height rules: [[device, version, rule, owner], ...]
QUEUE_HEAD = b"qh"
QUEUE_TAIL = b"qt"


def _policy_key(device: Address) -> bytes:
    return b"p:" + device


def _mode_key(device: Address) -> bytes:
    return b"m:" + device


def _limits_key(device: Address) -> bytes:
    return b"l:" + device


def _report_key(device: Address, metric: str) -> bytes:
    return b"r:" + device + metric.encode()


def _queued_key(device: Address) -> bytes:
    """How many of the device's report triggers wait in the queue."""
    return b"n:" + device


def _queue_key(position: int) -> bytes:
    return b"q:" + position.to_bytes(8, "big")


def compare(value: int, op: str, threshold: int) -> bool:
    return {">": value > threshold, ">=": value >= threshold, "<": value < threshold,
            "<=": value <= threshold, "==": value == threshold}[op]


def check_rule(rule: list[Value]) -> None:
    """Refuse a malformed rule with a reason naming what is wrong."""
    require(len(rule) == 7, "bad-rule", "a rule is [trigger, metric, op, threshold, action, target, amount]")
    trigger, metric, op, threshold, action, target, amount = rule
    require(all(isinstance(x, str) for x in (trigger, metric, op, action, target)), "bad-rule",
            "trigger, metric, op, action and target are strings")
    require(all(isinstance(x, int) and not isinstance(x, bool) for x in (threshold, amount)),
            "bad-rule", "threshold and amount are integers")
    assert isinstance(trigger, str) and isinstance(metric, str) and isinstance(op, str)
    assert isinstance(action, str) and isinstance(target, str)
    if trigger in TIMED_TRIGGERS:
        require(metric == "" and op == "", "bad-rule", "time and height triggers take no metric or op")
    else:
        require(trigger == REPORT, "bad-rule", f"trigger is one of {(*TIMED_TRIGGERS, REPORT)}")
        require(0 < len(metric) <= NAME_CHARS_MAX and op in OPS, "bad-rule", f"a metric and op in {OPS}")
    require(action in ACTIONS, "bad-rule", f"action is one of {ACTIONS}")
    require(0 < len(target) <= NAME_CHARS_MAX, "bad-rule", "the action needs a target")


# defaults; each is at least 1. The per-owner and per-device quotas keep one smartphone or
# one device from filling the chain-wide tables that every owner shares.
LIMITS = {"rules_max": 16, "timed_max": 256, "timed_per_owner_max": 32, "pending_max": 1024,
          "pending_per_device_max": 16, "fires_per_block_max": 64}


def limits(params: dict[str, Any]) -> dict[str, int]:
    return {name: integer(params, "policy", name, default, low=1) for name, default in LIMITS.items()}


def validate_params(params: dict[str, Any]) -> None:
    limits(params)


class Policy(NativeContract):
    name = "policy"
    address = POLICY

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        bounds = limits(params)
        self.rules_max, self.timed_max = bounds["rules_max"], bounds["timed_max"]
        self.timed_per_owner_max = bounds["timed_per_owner_max"]
        self.pending_max, self.pending_per_device_max = bounds["pending_max"], bounds["pending_per_device_max"]
        self.fires_per_block_max = bounds["fires_per_block_max"]

    # methods ----------------------------------------------------------------------------
    @method
    def publish(self, ctx: CallContext, device: bytes, rules: list[list]) -> int:  # type: ignore[type-arg]
        """The smartphone bound to `device` replaces its policy; returns the new version."""
        record = ctx.view(REGISTRY, "device", [device])
        require(isinstance(record, list) and record != [] and record[3] == ctx.sender, "not-authorized",
                "only the smartphone bound to the device publishes its policy")
        require(ctx.view(REGISTRY, "is_member", [ctx.sender]) is True, "not-member", "revoked")
        require(0 < len(rules) <= self.rules_max, "bad-policy", f"1 to {self.rules_max} rules")
        ctx.steps(len(rules))
        for rule in rules:
            check_rule(rule)
        version = self._version(ctx, device) + 1
        timed = get_list(ctx, TIMED)
        armed: list[Value] = [[device, version, i, ctx.sender] for i, rule in enumerate(rules)
                              if rule[0] in TIMED_TRIGGERS]
        # this device's older rules are superseded now (end_block drops them); the owner's
        # other devices' rules still count against its quota
        owned = sum(1 for e in timed if isinstance(e, list) and e[3] == ctx.sender and e[0] != device)
        require(owned + len(armed) <= self.timed_per_owner_max, "owner-timed-full",
                f"a smartphone arms at most {self.timed_per_owner_max} time/height rules")
        require(len(timed) + len(armed) <= self.timed_max, "timed-full",
                f"at most {self.timed_max} time/height rules armed chain-wide")
        if armed:
            ctx.set_value(TIMED, [*timed, *armed])
        stored_rules: list[Value] = list(rules)
        ctx.set_value(_policy_key(device), [version, ctx.sender, stored_rules])
        ctx.emit("PolicyPublished", device=device, phone=ctx.sender, version=version, rules=len(rules))
        return version

    @method
    def report(self, ctx: CallContext, metric: str, value: int) -> None:
        """A device reports an operating metric; each report rule it satisfies is queued
        to fire at the end of the block."""
        require(ctx.view(REGISTRY, "role", [ctx.sender]) == DEVICE, "not-device",
                "only registered devices report")
        require(0 < len(metric) <= NAME_CHARS_MAX, "bad-metric", metric)
        ctx.set_value(_report_key(ctx.sender, metric), value)
        ctx.emit("Reported", device=ctx.sender, metric=metric, value=value)
        stored = ctx.get_value(_policy_key(ctx.sender))
        if stored is None:
            return
        assert isinstance(stored, list)
        version, _, rules = stored
        assert isinstance(rules, list)
        ctx.steps(len(rules))
        head, tail = ctx.get_int(QUEUE_HEAD), ctx.get_int(QUEUE_TAIL)
        for index, rule in enumerate(rules):
            assert isinstance(rule, list)
            if rule[0] == REPORT and rule[1] == metric and compare(value, rule[2], rule[3]):  # type: ignore[arg-type]
                queued = ctx.get_int(_queued_key(ctx.sender))
                require(queued < self.pending_per_device_max, "device-queue-full",
                        f"{self.pending_per_device_max} of this device's triggers waiting")
                require(tail - head < self.pending_max, "queue-full", f"{self.pending_max} triggers waiting")
                ctx.set_value(_queue_key(tail), [ctx.sender, version, index, value])
                ctx.set_value(_queued_key(ctx.sender), queued + 1)
                tail += 1
                ctx.set_value(QUEUE_TAIL, tail)

    def end_block(self, ctx: CallContext) -> None:
        """Fire the reached time/height rules, then queued report triggers, in order."""
        budget = self.fires_per_block_max
        timed = get_list(ctx, TIMED)
        if timed:
            ctx.steps(len(timed))
            kept: list[Value] = []
            for entry in timed:
                assert isinstance(entry, list)
                device, version, index, _ = entry
                assert isinstance(device, bytes) and isinstance(version, int) and isinstance(index, int)
                rule = self._live_rule(ctx, device, version, index)
                if rule is None:
                    continue  # superseded policy: dropped
                if budget and self._reached(ctx, rule):
                    self._fire(ctx, device, version, index, rule, rule[3])  # type: ignore[arg-type]
                    budget -= 1
                else:
                    kept.append(entry)
            if len(kept) != len(timed):
                ctx.set_value(TIMED, kept)
        head, tail = ctx.get_int(QUEUE_HEAD), ctx.get_int(QUEUE_TAIL)
        start = head
        while head < tail and budget:
            queued = ctx.get_value(_queue_key(head))
            assert isinstance(queued, list)
            device, version, index, value = queued
            assert isinstance(device, bytes) and isinstance(version, int) and isinstance(index, int)
            ctx.delete(_queue_key(head))
            ctx.set_value(_queued_key(device), ctx.get_int(_queued_key(device)) - 1)
            head += 1
            rule = self._live_rule(ctx, device, version, index)
            if rule is not None:
                assert isinstance(value, int)
                self._fire(ctx, device, version, index, rule, value)
                budget -= 1
        if head != start:
            ctx.set_value(QUEUE_HEAD, head)

    # views ------------------------------------------------------------------------------
    @view
    def policy(self, ctx: CallContext, device: bytes) -> Value:
        """[version, smartphone, rules] or [] when the device has no policy."""
        stored = ctx.get_value(_policy_key(device))
        return stored if stored is not None else []

    @view
    def effective(self, ctx: CallContext, device: bytes) -> Value:
        """What the device must apply now: [mode, [[metric, limit], ...], policy version]."""
        mode = ctx.get_value(_mode_key(device))
        return [DEFAULT_MODE if mode is None else mode, get_list(ctx, _limits_key(device)), self._version(ctx, device)]

    @view
    def last_report(self, ctx: CallContext, device: bytes, metric: str) -> Value:
        stored = ctx.get_value(_report_key(device, metric))
        return [] if stored is None else [stored]

    @view
    def pending(self, ctx: CallContext) -> Value:
        """[armed time/height rules, queued report triggers]"""
        return [len(get_list(ctx, TIMED)), ctx.get_int(QUEUE_TAIL) - ctx.get_int(QUEUE_HEAD)]

    # ------------------------------------------------------------------------------------
    def _version(self, ctx: CallContext, device: Address) -> int:
        stored = ctx.get_value(_policy_key(device))
        if stored is None:
            return 0
        assert isinstance(stored, list) and isinstance(stored[0], int)
        return stored[0]

    def _live_rule(self, ctx: CallContext, device: Address, version: int, index: int) -> list[Value] | None:
        stored = ctx.get_value(_policy_key(device))
        assert isinstance(stored, list)
        current, _, rules = stored
        if current != version:
            return None
        assert isinstance(rules, list) and isinstance(rules[index], list)
        return rules[index]  # type: ignore[return-value]

    def _reached(self, ctx: CallContext, rule: list[Value]) -> bool:
        threshold = rule[3]
        assert isinstance(threshold, int)
        now = ctx.block.time_s if rule[0] == "time" else ctx.block.number
        return now >= threshold

    def _fire(self, ctx: CallContext, device: Address, version: int, index: int, rule: list[Value],
              trigger_value: int) -> None:
        trigger, _, _, _, action, target, amount = rule
        assert isinstance(target, str) and isinstance(amount, int)
        if action == "set_mode":
            ctx.set_value(_mode_key(device), target)
        elif action == "set_limit":
            stored = get_list(ctx, _limits_key(device))
            limits = {str(entry[0]): entry[1] for entry in stored}  # type: ignore[index]
            limits[target] = amount
            ctx.set_value(_limits_key(device), [[metric, limits[metric]] for metric in sorted(limits)])
        ctx.emit("PolicyExecuted", device=device, version=version, rule=index, trigger=trigger,
                 trigger_value=trigger_value, action=action, target=target, amount=amount)
