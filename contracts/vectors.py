"""Auction test vectors: JSON files of hand-computed DSC auctions (format in
docs/contracts.md) run through the real contracts on an in-memory chain.

    python -m contracts.vectors run FILE [FILE ...]

For every auction it prints the winner, the price, each bidder's ranking price O_i, the
suspect set and each bidder's d, w, suspect count and credit afterwards, and compares them
with the vector's "expect" block. Exit status 1 when any expectation does not hold.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from chain import Receipt, Value
from contracts.addresses import CREDIT, DSC
from contracts.dsc_records import bid_commitment
from contracts.testing import Call, TestChain, address_of, events, reason
from crypto import keccak256
from vm.fixedpoint import SCALE

DEVICE_TYPE = "meter"
FUNDS = 10**12
STEP_MS = 60_000


def parse_fixed(text: str | int) -> int:
    """A decimal such as "-12.5" or 7 as a fixed-point integer (exact, 6 decimals max)."""
    raw = str(text).strip()
    negative = raw.startswith("-")
    whole, _, fraction = raw.lstrip("+-").partition(".")
    if len(fraction) > 6 or not (whole or fraction).isdigit() or (fraction and not fraction.isdigit()):
        raise ValueError(f"not a fixed-point decimal with at most 6 decimals: {text!r}")
    value = int(whole or "0") * SCALE + int(fraction.ljust(6, "0") or "0")
    return -value if negative else value


def format_fixed(value: int) -> str:
    sign = "-" if value < 0 else ""
    whole, fraction = divmod(abs(value), SCALE)
    digits = f"{fraction:06d}".rstrip("0")
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


@dataclass
class AuctionResult:
    winner: str  # bidder name, "" when no valid bid
    price: int
    ranking: dict[str, str]  # name -> O_i
    suspects: list[str]
    after: dict[str, dict[str, Any]]
    forfeited: list[str]
    mismatches: list[str] = field(default_factory=list)


class VectorRun:
    """One vector on a fresh chain: genesis seeds the bidders' credit history and w, d,
    suspect count; a vendor-registered device out of warranty requests every auction."""

    def __init__(self, vector: dict[str, Any]) -> None:
        self.vector = vector
        params = vector["params"]
        self.bidders: dict[str, dict[str, Any]] = vector["bidders"]
        self.names = list(self.bidders)
        registry = {
            "admins": [address_of("admin").hex()],
            "members": [{"address": address_of("vendor").hex(), "role": "vendor"},
                        {"address": address_of("phone").hex(), "role": "smartphone"}]
            + [{"address": address_of(n).hex(), "role": "supplier"} for n in self.names],
            "devices": [{"address": address_of("device").hex(), "vendor": address_of("vendor").hex(),
                         "device_type": DEVICE_TYPE, "warranty_end_s": 0,
                         "phone": address_of("phone").hex()}],
        }
        dsc = {
            "prices": {DEVICE_TYPE: {"p_min": params["p_min"], "p_max": params["p_max"]}},
            # the file's defaults are the paper's rule (see its "format" line), not the
            # contract's shipped defaults: each vector says which rule it exercises
            "beta_percent": params.get("beta_percent", 100), "clusters_max": params.get("r", 3),
            "bidders_per_class": params.get("per_class", 0), "suspect_threshold": params.get("h", 3),
            "suspect_counting": params.get("counting", "every"), "suspect_gap_percent": params.get("gap", 0),
            "suspect_class_min": params.get("class_min", 1),
            "bid_deposit": params.get("bid_deposit", 50), "request_deposit": params.get("request_deposit", 100),
            "commit_ms": STEP_MS, "reveal_ms": STEP_MS,
            "bidders": [{"address": address_of(n).hex(), "w": b.get("w", 0), "d": parse_fixed(b.get("d", 0)),
                         "suspect_count": b.get("suspect_count", 0)} for n, b in self.bidders.items()],
        }
        credit = {
            "alpha_percent": params.get("alpha", 20), "history_max": params.get("history_max", 50),
            "credit_initial": params.get("credit_initial", 60),
            "history": [{"address": address_of(n).hex(), "ratings": b["ratings"]}
                        for n, b in self.bidders.items() if b.get("ratings")],
        }
        funded = {n: FUNDS for n in [*self.names, "phone", "device", "vendor", "admin"]}
        self.chain = TestChain({"registry": registry, "dsc": dsc, "credit": credit}, funded)
        self.by_address = {address_of(n): n for n in self.names}
        self.request_count = 0

    def run(self) -> list[AuctionResult]:
        try:
            return [self._auction(i, auction) for i, auction in enumerate(self.vector["auctions"])]
        finally:
            self.chain.close()

    def _auction(self, number: int, auction: dict[str, Any]) -> AuctionResult:
        chain = self.chain
        opened = self._ok(chain.send("phone", DSC, "open_request", [address_of("device")],
                                     value=self._request_value()), "open_request")
        request_id = events(opened, "RequestOpened")[0]["request"]
        assert isinstance(request_id, int)
        bids: dict[str, Any] = auction["bids"]
        salts = {n: keccak256(f"salt/{number}/{n}".encode()) for n in bids}
        commits, reveals, withdrawals = [], [], []
        for name, bid in bids.items():
            credit = chain.view(CREDIT, "credit_of", [address_of(name)])
            assert isinstance(credit, int)
            price = bid if isinstance(bid, int) else bid.get("price", 0) if isinstance(bid, dict) else 0
            commitment = bid_commitment(request_id, address_of(name), price, credit, salts[name])
            commits.append(Call(name, DSC, "commit", [request_id, commitment], self._param("bid_deposit", 50)))
            if bid == "withdraw":
                withdrawals.append(Call(name, DSC, "withdraw", [request_id]))
            elif bid != "missing":
                if isinstance(bid, dict):
                    credit = parse_fixed(bid["credit"]) if "credit" in bid else credit
                    salt = keccak256(b"wrong") if bid.get("salt") == "wrong" else salts[name]
                else:
                    salt = salts[name]
                reveals.append(Call(name, DSC, "reveal", [request_id, price, credit, salt]))
        for receipt in chain.block(commits + withdrawals)[:-1]:
            self._ok(receipt, "commit/withdraw")
        chain.advance(STEP_MS)
        if reveals:
            for receipt in chain.block(reveals)[:-1]:
                self._ok(receipt, "reveal")
        chain.advance(STEP_MS)
        closed = self._ok(chain.send("phone", DSC, "close", [request_id]), "close")
        winner = events(closed, "AuctionClosed")[0]["winner"]
        if winner:
            self._complete(request_id, self.by_address[winner], auction.get("rating"))  # type: ignore[index]
        result = self._result(closed)
        result.mismatches = self._compare(result, auction.get("expect", {}))
        return result

    def _complete(self, request_id: int, winner: str, rating: int | None) -> None:
        chain = self.chain
        self._ok(chain.send(winner, DSC, "set_mode", [request_id, "remote"]), "set_mode")
        self._ok(chain.send("phone", DSC, "complete", [request_id, keccak256(b"fault")]), "complete")
        if rating is not None:
            self._ok(chain.send("phone", DSC, "rate", [request_id, rating]), "rate")

    def _result(self, closed: Receipt) -> AuctionResult:
        summary = events(closed, "AuctionClosed")[0]
        winner = summary["winner"]
        ranking = summary["ranking"]
        suspects = summary["suspects"]
        assert isinstance(winner, bytes) and isinstance(ranking, list) and isinstance(suspects, list)
        after: dict[str, dict[str, Any]] = {}
        for name in self.names:
            w, d, count = self._list(self.chain.view(DSC, "bidder_state", [address_of(name)]))
            credit = self.chain.view(CREDIT, "credit_of", [address_of(name)])
            assert isinstance(credit, int)
            after[name] = {"d": format_fixed(d), "w": w, "suspect_count": count, "credit": format_fixed(credit)}
        price = summary["price"]
        assert isinstance(price, int)
        return AuctionResult(
            winner=self.by_address.get(winner, ""),
            price=price,
            ranking={self.by_address[e[0]]: format_fixed(e[2]) for e in ranking},  # type: ignore[index, arg-type]
            suspects=[self.by_address[s] for s in suspects],  # type: ignore[index]
            after=after,
            forfeited=[self.by_address[e["party"]] for e in events(closed, "DepositForfeited")],  # type: ignore[index]
        )

    def _compare(self, got: AuctionResult, expect: dict[str, Any]) -> list[str]:
        wrong = []
        for key in ("winner", "price", "suspects", "forfeited"):
            if key in expect and expect[key] != getattr(got, key):
                wrong.append(f"{key}: expected {expect[key]!r}, got {getattr(got, key)!r}")
        for name, value in expect.get("O", {}).items():
            if got.ranking.get(name) != format_fixed(parse_fixed(value)):
                wrong.append(f"O[{name}]: expected {value}, got {got.ranking.get(name)}")
        for name, fields in expect.get("after", {}).items():
            for key, value in fields.items():
                actual = got.after[name][key]
                wanted = format_fixed(parse_fixed(value)) if key in ("d", "credit") else value
                if actual != wanted:
                    wrong.append(f"{name}.{key}: expected {wanted}, got {actual}")
        return wrong

    def _request_value(self) -> int:
        return self._param("request_deposit", 100) + int(self.vector["params"]["p_max"])

    def _param(self, name: str, default: int) -> int:
        return int(self.vector["params"].get(name, default))

    @staticmethod
    def _list(value: Value) -> list[int]:
        assert isinstance(value, list) and all(isinstance(v, int) for v in value)
        return value  # type: ignore[return-value]

    @staticmethod
    def _ok(receipt: Receipt, what: str) -> Receipt:
        if not receipt.succeeded:
            raise VectorError(f"{what} failed: {reason(receipt)} ({receipt.error.decode()})")
        return receipt


class VectorError(Exception):
    """A vector could not be run (a transaction it needs was refused)."""


def run_file(path: Path, out: TextIO | None = None) -> bool:
    """Run every vector of `path`, print the results; True when all expectations hold."""
    out = out or sys.stdout
    document = json.loads(path.read_text())
    all_good = True
    for vector in document["vectors"]:
        print(f"== {vector['name']}", file=out)
        try:
            results = VectorRun(vector).run()
        except VectorError as exc:
            print(f"   ERROR {exc}", file=out)
            all_good = False
            continue
        for number, result in enumerate(results):
            ranking = " ".join(f"{n}={o}" for n, o in result.ranking.items())
            print(f"  auction {number}: winner={result.winner or '-'} price={result.price} O: {ranking} "
                  f"suspects={result.suspects} forfeited={result.forfeited}", file=out)
            for name, state in result.after.items():
                print(f"    {name}: d={state['d']} w={state['w']} count={state['suspect_count']} "
                      f"credit={state['credit']}", file=out)
            for line in result.mismatches:
                print(f"    MISMATCH {line}", file=out)
            all_good = all_good and not result.mismatches
    print("ok" if all_good else "FAILED", file=out)
    return all_good


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contracts.vectors", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run vector files and check their expectations")
    run.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    results = [run_file(path) for path in args.files]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
