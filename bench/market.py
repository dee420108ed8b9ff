"""Market simulation of the DSC auction (issue 13, docs/auction.md): does the paper's
mechanism (k-means steps a-e, suspect index eq. (10), coupons eqs. (11)-(12)) deter a
collusion ring, and at what cost to honest bidders?

    python -m bench.market --json OUT [--plots DIR] [--quick] [--seed S]

Every auction runs through the real contracts (registry, token, DSC, credit, records) on a
`contracts.testing.DirectChain`: the request with its deposit, sealed commits, reveals,
close (ranking, k-means, w_i, coupons), the winner's mode, the device's confirmation and
its rating into the trimmed-mean credit. Seeded and reproducible: the same seed gives the
same report. Agents:

- honest bidders: a private cost per device type (uniform around the type's base), a
  margin; they bid cost x (1 + margin) with a small per-round jitter inside (P_min, P_max),
  and drop out for good after `PATIENCE` auctions lost in a row (the paper's worry);
- a ring of k members: for `predation` rounds they bid just above P_min together, then
  raise to just below P_max; the ring's profit is price - cost on the rounds it wins;
- devices rate the winner after each service (quality per bidder, jittered);
- a credit pump (one scenario): a vendor with devices and a smartphone it admitted itself
  requests in-warranty service from itself every round and rates itself 100.

Measured per mechanism variant (docs/auction.md has the table): ring win share and
profit per window, rounds until each ring member's w_i first rises, honest bidders whose
w_i rises (false positives) and how often they sit in a suspect class, price paid against
the lowest bid of the same round (a plain lowest-price auction), honest dropouts.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from chain import Receipt
from contracts.addresses import CREDIT, DSC, REGISTRY
from contracts.auction import PAPER_RULE
from contracts.dsc import parse_params
from contracts.dsc_records import bid_commitment
from contracts.registry import registration_consent
from contracts.testing import (
    CHAIN_ID,
    START_MS,
    Call,
    DirectChain,
    address_of,
    events,
    key_of,
    reason,
    registration,
)
from crypto import keccak256

TYPES = {"meter": (10, 200, 100), "relay": (20, 400, 220)}  # S -> (P_min, P_max, base cost)
CHECK_OFF_H = 10**9  # an h no run reaches: the k-means check without consequence
PATIENCE = 12  # auctions lost in a row before an honest bidder leaves the market
WINDOW_ROUNDS = 25  # rounds per point of the over-time series
WINDOW_MS = 1_000  # commit and reveal windows
ROUND_MS = 3_600_000  # one request an hour: ratings meet the credit's once-a-day rule as in life
DEVICES = 8
FUNDS = 10**12
PAPER: dict[str, Any] = asdict(PAPER_RULE)  # the paper's steps a-e read literally (before issue 13)


@dataclass(frozen=True)
class Scenario:
    variant: str
    mechanism: dict[str, Any]  # [contracts.dsc] overrides on top of PAPER
    honest: int = 6
    ring: int = 2
    predation: int = 10**9  # rounds the ring bids low before raising (default: never raises)
    ring_price_percent: int = 11  # the ring's low bid, % of the type's base cost (11: just above P_min)
    rounds: int = 400
    seed: int = 1
    pump: bool = False


@dataclass
class Bidder:
    name: str
    ring: bool
    cost: dict[str, int]
    margin_percent: int
    quality: int  # mean rating its services get
    active: bool = True
    lost_in_a_row: int = 0
    wins: int = 0
    profit: int = 0
    first_w_round: int | None = None
    suspect_rounds: int = 0
    bids: int = 0
    dropped_round: int | None = None


@dataclass
class Result:
    scenario: dict[str, Any]
    rounds: int = 0
    failed_auctions: int = 0
    rounds_by_window: list[int] = field(default_factory=list)  # rounds run at each window's end
    ring_win_share_by_window: list[float] = field(default_factory=list)
    ring_profit_by_window: list[int] = field(default_factory=list)
    overpay_percent_by_window: list[float] = field(default_factory=list)
    honest_active_by_window: list[int] = field(default_factory=list)
    ring_win_share: float = 0.0
    ring_profit: int = 0
    ring_w_rounds: list[int | None] = field(default_factory=list)  # first round each member's w rose
    ring_w_final: list[int] = field(default_factory=list)
    honest_w_raised: int = 0  # honest bidders whose w rose at least once
    honest_w_final: list[int] = field(default_factory=list)
    honest_suspect_rate: float = 0.0  # share of honest bids that sat in a suspect class
    ring_suspect_rate: float = 0.0
    honest_dropouts: int = 0
    paid: int = 0
    lowest: int = 0  # sum of the lowest valid bid of each round
    overpay_percent: float = 0.0
    pump: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class Market:
    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario
        self.rng = random.Random(scenario.seed)
        self.mechanism = {**PAPER, **scenario.mechanism}
        self.bidders = [self._bidder(f"h{i}", False) for i in range(scenario.honest)]
        self.bidders += [self._bidder(f"r{i}", True) for i in range(scenario.ring)]
        self.by_address = {address_of(b.name): b for b in self.bidders}
        self.devices = [(f"d{i}", f"p{i}", list(TYPES)[i % len(TYPES)]) for i in range(DEVICES)]
        prices = {t: {"p_min": lo, "p_max": hi} for t, (lo, hi, _) in TYPES.items()}
        params = {
            "registry": {
                "admins": [address_of("admin").hex()],
                "members": [{"address": address_of(b.name).hex(), "role": "supplier"} for b in self.bidders]
                + [{"address": address_of(p).hex(), "role": "smartphone"} for _, p, _ in self.devices]
                + [{"address": address_of(n).hex(), "role": "vendor"} for n in ("vendor", "pumper")],
                "devices": [{"address": address_of(d).hex(), "vendor": address_of("vendor").hex(),
                             "device_type": t, "warranty_end_s": 0, "phone": address_of(p).hex()}
                            for d, p, t in self.devices],
            },
            "dsc": {"prices": prices, "commit_ms": WINDOW_MS, "reveal_ms": WINDOW_MS, "service_ms": 10**9,
                    **self.mechanism},
        }
        names = ["admin", "vendor", "pumper", "pump-phone", *(b.name for b in self.bidders),
                 *(d for d, _, _ in self.devices), *(p for _, p, _ in self.devices)]
        self.chain = DirectChain(params, {n: FUNDS for n in names})
        self.credit = {b.name: self._credit(b.name) for b in self.bidders}
        self.result = Result(asdict(scenario) | {"mechanism": self.mechanism})

    def _bidder(self, name: str, ring: bool) -> Bidder:
        cost = {t: int(base * self.rng.uniform(0.7, 1.1)) for t, (_, _, base) in TYPES.items()}
        return Bidder(name, ring, cost, self.rng.randint(8, 25), self.rng.randint(75, 95))

    def close(self) -> None:
        self.chain.close()

    # one auction ----------------------------------------------------------------------
    def run(self) -> Result:
        started = time.perf_counter()
        if self.s.pump:
            self._pump_setup()
        window: list[tuple[bool, int, int, int]] = []  # (ring won, ring profit, paid, lowest)
        for number in range(self.s.rounds):
            outcome = self._auction(number)
            if self.s.pump:
                self._pump_round(number)
            if outcome is not None:
                window.append(outcome)
            if (number + 1) % WINDOW_ROUNDS == 0:
                self._close_window(window)
                window = []
        if window:
            self._close_window(window)
        self._summarise()
        self.result.seconds = round(time.perf_counter() - started, 2)
        return self.result

    def _auction(self, number: int) -> tuple[bool, int, int, int] | None:
        device, phone, device_type = self.devices[number % len(self.devices)]
        p_min, p_max, _ = TYPES[device_type]
        chain = self.chain
        opened = self._ok(chain.send(phone, DSC, "open_request", [address_of(device)], value=100 + p_max))
        request_id = events(opened, "RequestOpened")[0]["request"]
        assert isinstance(request_id, int)
        bids = {b.name: self._price(b, number, device_type) for b in self.bidders if b.active}
        salt = keccak256(f"salt/{number}".encode())
        commits = [Call(n, DSC, "commit", [request_id, bid_commitment(request_id, address_of(n), price,
                                                                      self.credit[n], salt)], 50)
                   for n, price in bids.items()]
        for receipt in chain.block(commits)[:-1]:
            self._ok(receipt)
        chain.advance(WINDOW_MS)
        reveals = [Call(n, DSC, "reveal", [request_id, price, self.credit[n], salt]) for n, price in bids.items()]
        for receipt in chain.block(reveals)[:-1]:
            self._ok(receipt)
        chain.advance(WINDOW_MS)
        closed = self._ok(chain.send(phone, DSC, "close", [request_id]))
        summary = events(closed, "AuctionClosed")[0]
        winner_address = summary["winner"]
        assert isinstance(winner_address, bytes)
        if not winner_address:
            self.result.failed_auctions += 1
            return None
        winner = self.by_address[winner_address]
        self._observe(number, closed, winner, bids)
        rating = max(0, min(100, winner.quality + self.rng.randint(-8, 8)))
        service = [Call(winner.name, DSC, "set_mode", [request_id, "remote"]),
                   Call(phone, DSC, "complete", [request_id, keccak256(b"fault")]),
                   Call(phone, DSC, "rate", [request_id, rating])]
        for receipt in chain.block(service)[:-1]:
            self._ok(receipt)
        chain.advance(ROUND_MS)
        self.credit[winner.name] = self._credit(winner.name)
        price = bids[winner.name]
        profit = price - winner.cost[device_type]
        winner.profit += profit
        return winner.ring, profit if winner.ring else 0, price, min(bids.values())

    def _price(self, bidder: Bidder, number: int, device_type: str) -> int:
        p_min, p_max, _ = TYPES[device_type]
        bidder.bids += 1
        if bidder.ring:
            index = int(bidder.name[1:])
            # together low (one token apart), then together just below P_max
            low = TYPES[device_type][2] * self.s.ring_price_percent // 100 + index
            price = low if number < self.s.predation else p_max - 1 - index
        else:
            jitter = self.rng.uniform(0.97, 1.03)
            price = round(bidder.cost[device_type] * (100 + bidder.margin_percent) / 100 * jitter)
        return max(p_min + 1, min(p_max - 1, price))

    def _observe(self, number: int, closed: Receipt, winner: Bidder, bids: dict[str, int]) -> None:
        suspects = {self.by_address[s].name for s in events(closed, "AuctionClosed")[0]["suspects"]}  # type: ignore[union-attr,index]
        for update in events(closed, "BidderUpdated"):
            bidder = self.by_address[update["bidder"]]  # type: ignore[index]
            if bidder.first_w_round is None and isinstance(update["w"], int) and update["w"] > 0:
                bidder.first_w_round = number
        for name in bids:
            bidder = next(b for b in self.bidders if b.name == name)
            bidder.suspect_rounds += name in suspects
            if bidder is winner:
                bidder.wins += 1
                bidder.lost_in_a_row = 0
            else:
                bidder.lost_in_a_row += 1
                if not bidder.ring and bidder.lost_in_a_row >= PATIENCE:
                    bidder.active = False
                    bidder.dropped_round = number

    def _close_window(self, window: list[tuple[bool, int, int, int]]) -> None:
        r = self.result
        r.ring_win_share_by_window.append(round(sum(w for w, _, _, _ in window) / max(1, len(window)), 3))
        r.ring_profit_by_window.append(sum(p for _, p, _, _ in window))
        paid, lowest = sum(x[2] for x in window), sum(x[3] for x in window)
        r.overpay_percent_by_window.append(round(100 * (paid - lowest) / max(1, lowest), 2))
        r.honest_active_by_window.append(sum(b.active for b in self.bidders if not b.ring))
        r.paid += paid
        r.lowest += lowest
        r.rounds += len(window)
        r.rounds_by_window.append(r.rounds)

    def _summarise(self) -> None:
        r = self.result
        ring = [b for b in self.bidders if b.ring]
        honest = [b for b in self.bidders if not b.ring]
        states = {b.name: self.chain.view(DSC, "bidder_state", [address_of(b.name)]) for b in self.bidders}
        w = {n: s[0] for n, s in states.items() if isinstance(s, list) and isinstance(s[0], int)}
        r.ring_win_share = round(sum(b.wins for b in ring) / max(1, r.rounds), 3)
        r.ring_profit = sum(b.profit for b in ring)
        r.ring_w_rounds = [b.first_w_round for b in ring]
        r.ring_w_final = [w[b.name] for b in ring]
        r.honest_w_raised = sum(b.first_w_round is not None for b in honest)
        r.honest_w_final = [w[b.name] for b in honest]
        r.honest_suspect_rate = round(sum(b.suspect_rounds for b in honest) / max(1, sum(b.bids for b in honest)), 4)
        r.ring_suspect_rate = round(sum(b.suspect_rounds for b in ring) / max(1, sum(b.bids for b in ring)), 4)
        r.honest_dropouts = sum(not b.active for b in honest)
        r.overpay_percent = round(100 * (r.paid - r.lowest) / max(1, r.lowest), 2)

    # the credit pump ------------------------------------------------------------------
    def _pump_setup(self) -> None:
        """The pumper admits its own smartphone and registers a device it holds the key of,
        in warranty, bound to that phone (all allowed: vendors admit their customers)."""
        chain = self.chain
        self._ok(chain.send("pumper", REGISTRY, "register", registration("pump-phone", "smartphone", "pumper")))
        device, end = address_of("pump-device"), START_MS // 1000 + 10**9
        consent = registration_consent(key_of("pump-device"), CHAIN_ID, address_of("pumper"), 0)
        self._ok(chain.send("pumper", REGISTRY, "register_device",
                            [device, "meter", end, b"", b"", key_of("pump-device").public_key, consent]))
        self._ok(chain.send("pumper", REGISTRY, "bind_smartphone", [device, address_of("pump-phone")]))
        self.result.pump = {"credit_before": self._credit("pumper"), "self_ratings": 0, "counted": 0}

    def _pump_round(self, number: int) -> None:
        chain = self.chain
        opened = self._ok(chain.send("pump-phone", DSC, "open_request", [address_of("pump-device")], value=100))
        request_id = events(opened, "RequestOpened")[0]["request"]
        service = [Call("pumper", DSC, "set_mode", [request_id, "remote"]),
                   Call("pump-phone", DSC, "complete", [request_id, keccak256(b"nothing")]),
                   Call("pump-phone", DSC, "rate", [request_id, 100])]
        receipts = chain.block(service)
        for receipt in receipts[:-1]:
            self._ok(receipt)
        chain.advance(WINDOW_MS)
        self.result.pump["self_ratings"] += 1
        self.result.pump["counted"] += bool(events(receipts[2], "CreditUpdated"))
        self.result.pump["credit_after"] = self._credit("pumper")

    # ----------------------------------------------------------------------------------
    def _credit(self, name: str) -> int:
        credit = self.chain.view(CREDIT, "credit_of", [address_of(name)])
        assert isinstance(credit, int)
        return credit

    @staticmethod
    def _ok(receipt: Receipt) -> Receipt:
        assert receipt.succeeded, f"simulated call refused: {reason(receipt)} ({receipt.error.decode()})"
        return receipt


def simulate(scenario: Scenario) -> Result:
    market = Market(scenario)
    try:
        return market.run()
    finally:
        market.close()


# the experiment --------------------------------------------------------------------------
def shipped_mechanism() -> dict[str, Any]:
    """The [contracts.dsc] defaults the contract ships, read from the contract itself."""
    return asdict(parse_params({}).mechanism)


def variants() -> dict[str, dict[str, Any]]:
    """Each variant changes one rule of the paper's, except the last: gridchain's defaults."""
    shipped = {k: v for k, v in shipped_mechanism().items() if PAPER[k] != v}
    return {
        "paper": {},
        "check-off": {"suspect_threshold": CHECK_OFF_H},  # w never rises: coupons alone
        "r-from-n": {"bidders_per_class": 3},
        "consecutive": {"suspect_counting": "consecutive"},
        "decay": {"suspect_counting": "decay"},
        "gap-30-class-2": {"suspect_gap_percent": 30, "suspect_class_min": 2},
        "beta-0": {"beta_percent": 0},
        "beta-25": {"beta_percent": 25},
        "beta-200": {"beta_percent": 200},
        "shipped": shipped,
    }


@dataclass(frozen=True)
class Plan:
    rounds: int  # per variant scenario
    sweep_rounds: int  # per ring-size and ring-price scenario
    variants: tuple[str, ...]
    ring_sizes: tuple[int, ...]
    ring_prices: tuple[int, ...]
    seed: int = 1


FULL = Plan(120, 80, tuple(variants()), (1, 2, 3, 4), (11, 50, 70))
QUICK = Plan(40, 30, ("paper", "beta-0", "shipped"), (2, 3), (11, 70))


def experiment(plan: Plan, say: Any = print) -> dict[str, Any]:
    every = variants()
    report: dict[str, Any] = {"plan": asdict(plan), "patience": PATIENCE, "window_rounds": WINDOW_ROUNDS,
                              "paper": PAPER, "shipped": shipped_mechanism(), "variants": {}, "normal": {},
                              "ring_sizes": {}, "ring_prices": {}, "predation": {}}

    def run(name: str, **scenario: Any) -> dict[str, Any]:
        return asdict(simulate(Scenario(name, every[name], seed=plan.seed, **scenario)))

    for name in plan.variants:
        # a standing ring of 2 bidding low throughout, and the normal case without a ring
        report["variants"][name] = ring = run(name, ring=2, rounds=plan.rounds)
        report["normal"][name] = normal = run(name, ring=0, rounds=plan.rounds)
        say(f"  {name:15} ring of 2: wins {ring['ring_win_share']:.0%}, w rises at rounds {ring['ring_w_rounds']}"
            f" | no ring: honest w raised {normal['honest_w_raised']}/{normal['scenario']['honest']}, "
            f"dropouts {normal['honest_dropouts']}, overpay {normal['overpay_percent']} %")
    for name in ("paper", "shipped"):
        report["ring_sizes"][name] = {str(k): run(name, ring=k, rounds=plan.sweep_rounds) for k in plan.ring_sizes}
        report["ring_prices"][name] = {str(p): run(name, ring=2, rounds=plan.sweep_rounds, ring_price_percent=p)
                                       for p in plan.ring_prices}
        say(f"  {name:15} swept ring sizes {list(plan.ring_sizes)} and low prices {list(plan.ring_prices)} %")
    for name in ("paper", "beta-0", "shipped"):
        # predation then raise: do honest bidders leave while the ring bids low?
        report["predation"][name] = run(name, ring=3, predation=plan.rounds // 2, rounds=plan.rounds)
    report["pump"] = run("shipped", ring=0, rounds=min(plan.rounds, 60), pump=True)["pump"]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.market", description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, required=True, help="write the report here")
    parser.add_argument("--plots", type=Path, help="write PNG plots into this directory")
    parser.add_argument("--quick", action="store_true", help="a small run (tests, a first look)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    plan = replace(QUICK if args.quick else FULL, seed=args.seed)
    started = time.perf_counter()
    report = experiment(plan, lambda line: print(line, file=sys.stderr, flush=True))
    report["seconds"] = round(time.perf_counter() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.plots:
        from bench.market_plots import write_plots

        for path in write_plots(report, args.plots):
            print(f"wrote {path}", file=sys.stderr)
    print(f"wrote {args.json} in {report['seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
