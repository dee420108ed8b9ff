"""The decentralized safety-equipment diagnosis smart contract, DSC (paper IV.B, Fig. 4, V).

A device (or its smartphone) opens a request with a deposit against false requests. In
warranty (V.A) the original vendor is assigned and the service is free. Out of warranty
(V.B) the requester also escrows P_max as payment guarantee and a sealed-bid reverse
auction runs: commit H(P_i, Cred_i, salt, bidder) with a bid deposit, reveal, then close:
invalid or missing reveals forfeit their deposit, the lowest ranking price O_i = P_i - d_i
wins at its own P_i (eq. (12)), the k-means check raises suspect indexes (eq. (10)) and
the losers' coupons grow (eq. (11)). The node picks the maintenance mode, message hashes
are logged, the device confirms completion, payment and deposits settle, both sides rate
each other (Credit contract) and the service is recorded (Records contract).

Windows are driven by block time (ms): the commit window is [opened, opened+commit_ms),
the reveal window [commit end, commit end+reveal_ms); close is allowed from the reveal
end. Forfeited deposits go to the other side of the deal: a bidder's to the payer, the
requester's to the assigned node. Every step emits an event (the smartphone's feed).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from chain import Value
from contracts import dsc_records as rec
from contracts.addresses import CREDIT, DSC, RECORDS, REGISTRY, TOKEN
from contracts.auction import COUNTING, BidderState, Mechanism, ValidBid, settle
from contracts.common import check_hash, get_list, parse_address, require
from contracts.dsc_records import Bid, Request
from contracts.params import integer
from contracts.params import require as check
from contracts.registry import DIAGNOSIS_ROLES
from crypto import Address, keccak256
from vm import CallContext, NativeContract, fixedpoint, method, view

MODES = ("remote", "on-site")  # maintenance modes (III.D)
REQUEST_COUNTER = b"n"


@dataclass(frozen=True)
class Terms:
    prices: dict[str, tuple[int, int]]  # S -> (P_min, P_max), IV.B
    request_deposit: int
    bid_deposit: int
    mechanism: Mechanism
    commit_ms: int
    reveal_ms: int
    service_ms: int
    bidders_max: int
    messages_max: int
    rating_period_ms: int  # one counted rating per counterparty per period (credit pump)
    dispute_ms: int  # how long escrows wait for an arbiter's verdict


def parse_params(params: dict[str, Any]) -> Terms:
    """[contracts.dsc] as typed terms; a value breaking a rule raises ParamError naming it."""
    def number(name: str, default: int, low: int, below: int | None = None) -> int:
        return integer(params, "dsc", name, default, low=low, below=below)

    check("beta" not in params, "dsc", "beta", "beta is now beta_percent (hundredths of a token "
          "per credit point; beta = 1 is beta_percent = 100)", params.get("beta"))
    prices: dict[str, tuple[int, int]] = {}
    for device_type, bounds in params.get("prices", {}).items():
        # [contracts.dsc.prices.<S>] p_min, p_max: P_min < P_i < P_max for type S (IV.B)
        p_min = integer(bounds, "dsc", "p_min", 0, low=0, table=f"prices.{device_type}")
        p_max = integer(bounds, "dsc", "p_max", 0, low=0, table=f"prices.{device_type}")
        # a valid P_i exists only when P_min + 1 < P_max (both bounds are strict)
        check(p_min + 1 < p_max, "dsc", f"prices.{device_type}", "P_min < P_i < P_max needs p_min + 1 < p_max",
              [p_min, p_max])
        prices[device_type] = (p_min, p_max)
    counting = params.get("suspect_counting", Mechanism.suspect_counting)
    check(counting in COUNTING, "dsc", "suspect_counting", f"suspect_counting is one of {', '.join(COUNTING)}",
          counting)
    mechanism = Mechanism(
        beta_percent=number("beta_percent", Mechanism.beta_percent, 0),
        clusters_max=number("clusters_max", Mechanism.clusters_max, 1),
        bidders_per_class=number("bidders_per_class", Mechanism.bidders_per_class, 0),
        suspect_threshold=number("suspect_threshold", Mechanism.suspect_threshold, 1),
        suspect_counting=counting,
        suspect_gap_percent=number("suspect_gap_percent", Mechanism.suspect_gap_percent, 0, 100),
        suspect_class_min=number("suspect_class_min", Mechanism.suspect_class_min, 1))
    return Terms(prices, number("request_deposit", 100, 1), number("bid_deposit", 50, 1), mechanism,
                 number("commit_ms", 60_000, 1), number("reveal_ms", 60_000, 1),
                 number("service_ms", 86_400_000, 1), number("bidders_max", 64, 1),
                 number("messages_max", 64, 1), number("rating_period_ms", 86_400_000, 0),
                 number("dispute_ms", 7 * 86_400_000, 1))


def validate_params(params: dict[str, Any]) -> None:
    parse_params(params)


class Dsc(NativeContract):
    name = "dsc"
    address = DSC

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        terms = parse_params(params)
        self.prices = terms.prices
        self.request_deposit, self.bid_deposit = terms.request_deposit, terms.bid_deposit
        self.mechanism = terms.mechanism
        self.commit_ms, self.reveal_ms, self.service_ms = terms.commit_ms, terms.reveal_ms, terms.service_ms
        self.bidders_max, self.messages_max = terms.bidders_max, terms.messages_max
        self.rating_period_ms, self.dispute_ms = terms.rating_period_ms, terms.dispute_ms

    def genesis(self, ctx: CallContext) -> None:
        """Seed bidder state (`bidders` parameter: [{address, w, d, suspect_count}], d in
        fixed point tokens): a genesis-only way to start vectors and tests mid-history."""
        for entry in self.params.get("bidders", []):
            state = BidderState(int(entry.get("w", 0)), int(entry.get("d", 0)),
                                int(entry.get("suspect_count", 0)))
            self._set_state(ctx, parse_address(entry["address"]), state)

    # request ----------------------------------------------------------------------------
    @method
    def open_request(self, ctx: CallContext, device: bytes) -> int:
        """Request diagnosis for `device`, sent by the device or its smartphone with the
        deposit (+ P_max out of warranty). Returns the request id."""
        require(ctx.view(REGISTRY, "acts_for", [device, ctx.sender]) is True, "not-authorized",
                "only a registered device or its smartphone requests diagnosis")
        require(ctx.get(rec.open_key(device)) is None, "request-open", "the device has an open request")
        record = ctx.view(REGISTRY, "device", [device])
        assert isinstance(record, list)
        device_type, _, vendor, _ = record
        assert isinstance(device_type, str) and isinstance(vendor, bytes)
        require(device_type in self.prices, "unknown-device-type", device_type)
        warranty = ctx.view(REGISTRY, "in_warranty", [device]) is True
        request_id = ctx.get_int(REQUEST_COUNTER) + 1
        ctx.set_value(REQUEST_COUNTER, request_id)
        now = ctx.block.timestamp_ms
        if warranty:
            require(ctx.view(REGISTRY, "is_member", [vendor]) is True, "vendor-unavailable",
                    "the original vendor is no longer a member")
            self._check_requester_credit(ctx, vendor, device)
            require(ctx.value == self.request_deposit, "bad-deposit", f"send {self.request_deposit}")
            request = Request(device, ctx.sender, device_type, True, rec.ASSIGNED, now, now, now, vendor,
                              0, 0, "", now + self.service_ms, False, False, False)
        else:
            p_max = self.prices[device_type][1]
            require(ctx.value == self.request_deposit + p_max, "bad-deposit",
                    f"send {self.request_deposit} deposit + {p_max} payment guarantee")
            commit_end = now + self.commit_ms
            request = Request(device, ctx.sender, device_type, False, rec.BIDDING, now, commit_end,
                              commit_end + self.reveal_ms, b"", 0, p_max, "", 0, False, False, False)
            ctx.call(TOKEN, "escrow_lock", [rec.payment_escrow(request_id), ctx.sender], value=p_max)
        ctx.call(TOKEN, "escrow_lock", [rec.deposit_escrow(request_id), ctx.sender],
                 value=self.request_deposit)
        ctx.set_value(rec.open_key(device), request_id)
        self._put(ctx, request_id, request)
        ctx.emit("RequestOpened", request=request_id, device=device, device_type=device_type,
                 in_warranty=warranty, payer=ctx.sender, commit_end_ms=request.commit_end_ms,
                 reveal_end_ms=request.reveal_end_ms)
        if warranty:
            ctx.emit("Assigned", request=request_id, node=vendor, price=0,
                     deadline_ms=request.deadline_ms)
        return request_id

    # sealed bid and public offer ----------------------------------------------------------
    @method
    def commit(self, ctx: CallContext, request_id: int, commitment: bytes) -> None:
        """Sealed bid: a vendor or supplier commits H(P_i, Cred_i, salt, bidder) with the
        bid deposit during the commit window."""
        request = self._request(ctx, request_id)
        require(request.status == rec.BIDDING, "not-bidding", f"request is {request.status}")
        require(ctx.block.timestamp_ms < request.commit_end_ms, "commit-closed",
                f"commit window ended at {request.commit_end_ms} ms")
        role = ctx.view(REGISTRY, "role", [ctx.sender])
        require(role in DIAGNOSIS_ROLES, "not-diagnosis-node", "only vendors and suppliers bid")
        check_hash(commitment, "commitment")
        require(ctx.get(rec.bid_key(request_id, ctx.sender)) is None, "already-committed", "one bid each")
        bidders = get_list(ctx, rec.bidders_key(request_id))
        require(len(bidders) < self.bidders_max, "too-many-bidders", f"at most {self.bidders_max}")
        require(ctx.value == self.bid_deposit, "bad-deposit", f"send {self.bid_deposit}")
        self._check_requester_credit(ctx, ctx.sender, request.device)
        credit = ctx.view(CREDIT, "credit_of", [ctx.sender])
        assert isinstance(credit, int)
        ctx.call(TOKEN, "escrow_lock", [rec.bid_escrow(request_id, ctx.sender), ctx.sender],
                 value=self.bid_deposit)
        bid = Bid(commitment, len(bidders), rec.COMMITTED, credit, 0, 0, "")
        ctx.set_value(rec.bid_key(request_id, ctx.sender), bid.to_value())
        ctx.set_value(rec.bidders_key(request_id), [*bidders, ctx.sender])
        ctx.emit("BidCommitted", request=request_id, bidder=ctx.sender, index=bid.index)

    @method
    def requote(self, ctx: CallContext, request_id: int, commitment: bytes) -> None:
        """Replace one's own sealed bid during the commit window (no new deposit): a bidder
        may update its quotation before anything is revealed. After the reveal a price can
        only be verified, not changed (docs/auction.md, "quotation updates")."""
        request = self._request(ctx, request_id)
        require(request.status == rec.BIDDING, "not-bidding", f"request is {request.status}")
        require(ctx.block.timestamp_ms < request.commit_end_ms, "commit-closed",
                f"commit window ended at {request.commit_end_ms} ms")
        check_hash(commitment, "commitment")
        bid = self._bid(ctx, request_id, ctx.sender)
        require(bid.status == rec.COMMITTED, "not-committed", f"bid is {bid.status}")
        credit = ctx.view(CREDIT, "credit_of", [ctx.sender])
        assert isinstance(credit, int)
        bid.commitment, bid.credit_at_commit = commitment, credit
        ctx.set_value(rec.bid_key(request_id, ctx.sender), bid.to_value())
        ctx.emit("BidRequoted", request=request_id, bidder=ctx.sender, index=bid.index)

    @method
    def withdraw(self, ctx: CallContext, request_id: int) -> None:
        """Leave the auction during the commit window: the deposit comes back, d_i = 0."""
        request = self._request(ctx, request_id)
        require(request.status == rec.BIDDING, "not-bidding", f"request is {request.status}")
        require(ctx.block.timestamp_ms < request.commit_end_ms, "commit-closed",
                "withdraw only during the commit window")
        bid = self._bid(ctx, request_id, ctx.sender)
        require(bid.status == rec.COMMITTED, "not-committed", f"bid is {bid.status}")
        bid.status = rec.WITHDRAWN
        ctx.set_value(rec.bid_key(request_id, ctx.sender), bid.to_value())
        ctx.call(TOKEN, "escrow_release", [rec.bid_escrow(request_id, ctx.sender)])
        self._set_state(ctx, ctx.sender, replace(self._state(ctx, ctx.sender), d=0))  # eq. (11)
        ctx.emit("BidWithdrawn", request=request_id, bidder=ctx.sender)

    @method
    def reveal(self, ctx: CallContext, request_id: int, price: int, credit: int, salt: bytes) -> None:
        """Public offer: reveal P_i, Cred_i and the salt. A hash mismatch, a price outside
        (P_min, P_max) or a credit other than the on-chain one makes the bid invalid (its
        deposit is forfeited at close); the reveal itself is recorded either way."""
        request = self._request(ctx, request_id)
        require(request.status == rec.BIDDING, "not-bidding", f"request is {request.status}")
        now = ctx.block.timestamp_ms
        require(now >= request.commit_end_ms, "reveal-too-early",
                f"reveal window opens at {request.commit_end_ms} ms")
        require(now < request.reveal_end_ms, "reveal-closed",
                f"reveal window ended at {request.reveal_end_ms} ms")
        require(len(salt) == 32 and price >= 0 and credit >= 0, "bad-arguments",
                "salt is 32 bytes, price and credit are non-negative")
        bid = self._bid(ctx, request_id, ctx.sender)
        require(bid.status == rec.COMMITTED, "already-revealed", f"bid is {bid.status}")
        p_min, p_max = self.prices[request.device_type]
        if rec.bid_commitment(request_id, ctx.sender, price, credit, salt) != bid.commitment:
            reason = "hash-mismatch"
        elif not p_min < price < p_max:
            reason = "price-out-of-range"
        elif credit != bid.credit_at_commit:
            reason = "credit-mismatch"
        else:
            reason = ""
        bid.status = rec.INVALID if reason else rec.VALID
        bid.price, bid.credit, bid.reason = price, credit, reason
        ctx.set_value(rec.bid_key(request_id, ctx.sender), bid.to_value())
        ctx.emit("BidRevealed", request=request_id, bidder=ctx.sender, price=price, credit=credit,
                 valid=not reason, reason=reason)

    @method
    def close(self, ctx: CallContext, request_id: int) -> None:
        """Close the auction once the reveal window is over (anyone may call)."""
        request = self._request(ctx, request_id)
        require(request.status == rec.BIDDING, "not-bidding", f"request is {request.status}")
        require(ctx.block.timestamp_ms >= request.reveal_end_ms, "auction-not-ended",
                f"reveal window ends at {request.reveal_end_ms} ms")
        bidders = get_list(ctx, rec.bidders_key(request_id))
        ctx.steps(len(bidders))
        valid: list[ValidBid] = []
        states: dict[Address, BidderState] = {}
        for bidder in bidders:
            assert isinstance(bidder, bytes)
            stored = self._bid(ctx, request_id, bidder)
            if stored.status == rec.VALID:
                valid.append(ValidBid(bidder, stored.price, stored.credit, stored.index))
                states[bidder] = self._state(ctx, bidder)
            elif stored.status != rec.WITHDRAWN:  # malicious bidding: invalid or missing reveal
                reason = stored.reason or "no-reveal"
                ctx.call(TOKEN, "escrow_forfeit", [rec.bid_escrow(request_id, bidder), request.payer])
                self._set_state(ctx, bidder, replace(self._state(ctx, bidder), d=0))
                ctx.emit("DepositForfeited", request=request_id, party=bidder, to=request.payer,
                         amount=self.bid_deposit, reason=reason)
        if not valid:
            self._finish(ctx, request_id, request, rec.FAILED)
            ctx.emit("AuctionClosed", request=request_id, winner=b"", price=0, suspects=[], ranking=[],
                     centroids=[])
            return
        outcome = settle(valid, states, self.mechanism)
        ctx.steps(outcome.clustering.rounds * len(valid) * len(outcome.clustering.centroids))
        for bid in valid:
            self._set_state(ctx, bid.bidder, outcome.states[bid.bidder])
            if bid is not outcome.winner:
                ctx.call(TOKEN, "escrow_release", [rec.bid_escrow(request_id, bid.bidder)])
        winner = outcome.winner
        surplus = request.escrowed - winner.price  # the agreed price stays escrowed (IV.B)
        if surplus:
            ctx.call(TOKEN, "escrow_pay", [rec.payment_escrow(request_id), request.payer, surplus])
        request.status, request.node, request.price = rec.ASSIGNED, winner.bidder, winner.price
        request.escrowed = winner.price
        request.deadline_ms = ctx.block.timestamp_ms + self.service_ms
        self._put(ctx, request_id, request)
        ctx.emit("AuctionClosed", request=request_id, winner=winner.bidder, price=winner.price,
                 suspects=list(outcome.suspects),
                 ranking=[[b.bidder, b.price, o] for b, o in outcome.ranking],
                 centroids=list(outcome.clustering.centroids))
        for bid in valid:
            state = outcome.states[bid.bidder]
            ctx.emit("BidderUpdated", bidder=bid.bidder, w=state.w, d=state.d,
                     suspect_count=state.suspect_count)
        ctx.emit("Assigned", request=request_id, node=winner.bidder, price=winner.price,
                 deadline_ms=request.deadline_ms)

    # service ----------------------------------------------------------------------------
    @method
    def set_mode(self, ctx: CallContext, request_id: int, mode: str) -> None:
        """The assigned diagnosis node chooses remote or on-site maintenance (III.A)."""
        request = self._assigned(ctx, request_id)
        require(ctx.sender == request.node, "not-node", "only the assigned node chooses the mode")
        require(mode in MODES, "bad-mode", f"mode is one of {MODES}")
        require(request.mode == "", "mode-already-set", request.mode)
        request.mode = mode
        self._put(ctx, request_id, request)
        ctx.emit("ModeChosen", request=request_id, node=ctx.sender, mode=mode)

    @method
    def log_message(self, ctx: CallContext, request_id: int, step: int, message_hash: bytes) -> None:
        """Record the hash of one exchanged diagnosis message (Figs. 5-8 step `step`); the
        sealed message itself never goes on chain. Also allowed once completed: the final
        package of maintenance information and both credit evaluations (V.A step 7, V.B
        step 9) exists only after `complete` and `rate`."""
        request = self._request(ctx, request_id)
        require(request.status in (rec.ASSIGNED, rec.COMPLETED), "not-assigned", f"request is {request.status}")
        check_hash(message_hash, "message hash")
        require(step >= 0, "bad-step", "steps are numbered from 0")
        require(ctx.sender == request.node or self._acts_for(ctx, request.device), "not-party",
                "only the device, its smartphone or the assigned node log messages")
        messages = get_list(ctx, rec.messages_key(request_id))
        require(len(messages) < self.messages_max, "too-many-messages", f"at most {self.messages_max}")
        ctx.set_value(rec.messages_key(request_id), [*messages, [step, ctx.sender, message_hash]])
        ctx.emit("MessageLogged", request=request_id, step=step, sender=ctx.sender, hash=message_hash)

    @method
    def report_done(self, ctx: CallContext, request_id: int) -> None:
        """The node declares the repair done; from now on a silent requester defaults."""
        request = self._assigned(ctx, request_id)
        require(ctx.sender == request.node, "not-node", "only the assigned node reports")
        require(request.mode != "", "mode-not-set", "choose the maintenance mode first")
        request.node_done = True
        self._put(ctx, request_id, request)
        ctx.emit("ServiceReported", request=request_id, node=ctx.sender)

    @method
    def complete(self, ctx: CallContext, request_id: int, failure_hash: bytes) -> None:
        """The device or its smartphone confirms the repair: the node is paid the agreed
        price, deposits return and the maintenance record is written (III.D). The service
        file hash is keccak256(requester || responder || failure_hash || diagnosis time)."""
        request = self._assigned(ctx, request_id)
        require(self._acts_for(ctx, request.device), "not-requester",
                "only the device or its smartphone confirms completion")
        require(request.mode != "", "mode-not-set", "the node has not chosen the maintenance mode")
        check_hash(failure_hash, "failure hash")
        self._pay_node(ctx, request_id, request)
        diagnosis_time_s = ctx.block.time_s
        service_hash = keccak256(request.device + request.node + failure_hash
                                 + diagnosis_time_s.to_bytes(8, "big"))
        self._finish(ctx, request_id, request, rec.COMPLETED)
        ctx.call(RECORDS, "add", [request_id, request.device, request.node, request.device_type,
                                  request.price, request.mode, service_hash, diagnosis_time_s])
        ctx.emit("ServiceCompleted", request=request_id, device=request.device, node=request.node,
                 price=request.price, mode=request.mode, service_hash=service_hash)

    @method
    def refuse(self, ctx: CallContext, request_id: int) -> None:
        """A party backs out of an assigned service and loses its deposit to the other."""
        request = self._assigned(ctx, request_id)
        if ctx.sender == request.node:
            self._node_defaults(ctx, request_id, request, "refused")
        else:
            require(self._acts_for(ctx, request.device), "not-party", "only the parties refuse")
            self._requester_defaults(ctx, request_id, request, "refused")

    @method
    def expire(self, ctx: CallContext, request_id: int) -> None:
        """After the service deadline (anyone may call): the node defaults, unless it
        reported the repair done, in which case the silent requester defaults and the node
        is paid. After an unresolved dispute's window every escrow returns to its owner."""
        request = self._request(ctx, request_id)
        require(request.status in (rec.ASSIGNED, rec.DISPUTED), "not-assigned", f"request is {request.status}")
        require(ctx.block.timestamp_ms > request.deadline_ms, "deadline-not-reached",
                f"deadline {request.deadline_ms} ms")
        if request.status == rec.DISPUTED:
            # no verdict in time: nobody is proven at fault, everything returns to its owner
            self._finish(ctx, request_id, request, rec.DEFAULTED)
            ctx.emit("Defaulted", request=request_id, party=b"", reason="dispute-unresolved")
        elif request.node_done:
            self._pay_node(ctx, request_id, request)
            self._requester_defaults(ctx, request_id, request, "no-confirmation")
        else:
            self._node_defaults(ctx, request_id, request, "no-completion")

    @method
    def dispute(self, ctx: CallContext, request_id: int) -> None:
        """The requester contests a node's `report_done` (the work was not done): nothing
        is paid or forfeited, every escrow stays held until an arbiter decides or the
        dispute window `dispute_ms` ends."""
        request = self._assigned(ctx, request_id)
        require(self._acts_for(ctx, request.device), "not-requester", "only the device or its smartphone disputes")
        require(request.node_done, "not-reported", "dispute a repair the node reported done; otherwise refuse")
        request.status, request.deadline_ms = rec.DISPUTED, ctx.block.timestamp_ms + self.dispute_ms
        self._put(ctx, request_id, request)
        ctx.emit("Disputed", request=request_id, by=ctx.sender, node=request.node, until_ms=request.deadline_ms)

    @method
    def resolve(self, ctx: CallContext, request_id: int, at_fault: str) -> None:
        """An arbiter (an administrator of the consortium, neither party)
        settles a dispute: "node" (the work was not done: the node's bid deposit goes to
        the payer, the payment returns) or "requester" (it was: the node is paid and the
        request deposit goes to it)."""
        request = self._request(ctx, request_id)
        require(request.status == rec.DISPUTED, "not-disputed", f"request is {request.status}")
        require(ctx.view(REGISTRY, "is_admin", [ctx.sender]) is True, "not-arbiter", "administrators arbitrate")
        require(at_fault in ("node", "requester"), "bad-verdict", 'at_fault is "node" or "requester"')
        ctx.emit("Resolved", request=request_id, arbiter=ctx.sender, at_fault=at_fault)
        if at_fault == "node":
            self._node_defaults(ctx, request_id, request, "dispute-lost")
        else:
            self._pay_node(ctx, request_id, request)
            self._requester_defaults(ctx, request_id, request, "dispute-lost")

    @method
    def rate(self, ctx: CallContext, request_id: int, rating: int) -> None:
        """After completion each side rates the other once (0-100, III.D). Both ratings go
        into the maintenance record; the credit contract counts one only when it comes from
        an independent counterparty, at most once per counterparty per rating period
        (`_counts`: the credit-pump rule, docs/contracts.md)."""
        request = self._request(ctx, request_id)
        require(request.status == rec.COMPLETED, "not-completed", f"request is {request.status}")
        require(0 <= rating <= 100, "bad-rating", f"{rating} is outside 0-100")
        if ctx.sender == request.node:
            require(not request.rated_by_node, "already-rated", "the node rated already")
            request.rated_by_node, ratee, side = True, request.device, "node"
            counterparty: Address = request.node
        else:
            require(self._acts_for(ctx, request.device), "not-party", "only the parties rate")
            require(not request.rated_by_requester, "already-rated", "the requester rated already")
            request.rated_by_requester, ratee, side = True, request.node, "requester"
            counterparty = self._owner(ctx, request.device)
        self._put(ctx, request_id, request)
        why_not = self._why_not_counted(ctx, ratee, counterparty)
        if why_not:
            ctx.emit("RatingIgnored", request=request_id, ratee=ratee, rating=rating, reason=why_not)
        else:
            ctx.set_value(rec.rated_key(ratee, counterparty), ctx.block.timestamp_ms)
            ctx.call(CREDIT, "add_rating", [ratee, rating])
        ctx.call(RECORDS, "add_rating", [request_id, side, rating])
        ctx.emit("Rated", request=request_id, rater=ctx.sender, ratee=ratee, rating=rating, counted=not why_not)

    @method
    def set_min_requester_credit(self, ctx: CallContext, credit: int) -> None:
        """A diagnosis node refuses requesters below this credit (fixed point, III.A)."""
        role = ctx.view(REGISTRY, "role", [ctx.sender])
        require(role in DIAGNOSIS_ROLES, "not-diagnosis-node", "only vendors and suppliers")
        require(0 <= credit <= fixedpoint.from_int(100), "bad-credit", "credit is 0-100 in fixed point")
        ctx.set_value(rec.threshold_key(ctx.sender), credit)
        ctx.emit("ThresholdSet", node=ctx.sender, credit=credit)

    # views ------------------------------------------------------------------------------
    @view
    def request(self, ctx: CallContext, request_id: int) -> Value:
        """[device, payer, device_type, in_warranty, status, opened_ms, commit_end_ms,
        reveal_end_ms, node, price, escrowed, mode, deadline_ms, node_done,
        rated_by_requester, rated_by_node]"""
        return self._request(ctx, request_id).to_value()

    @view
    def bids(self, ctx: CallContext, request_id: int) -> Value:
        """Bidders in commit order."""
        return get_list(ctx, rec.bidders_key(request_id))

    @view
    def bid(self, ctx: CallContext, request_id: int, bidder: bytes) -> Value:
        """[commitment, index, status, credit_at_commit, price, credit, reason]"""
        return self._bid(ctx, request_id, bidder).to_value()

    @view
    def bidder_state(self, ctx: CallContext, bidder: bytes) -> Value:
        """[w, d (fixed point tokens), suspect_count]"""
        state = self._state(ctx, bidder)
        return [state.w, state.d, state.suspect_count]

    @view
    def messages(self, ctx: CallContext, request_id: int) -> Value:
        """[[step, sender, message_hash], ...] in logging order."""
        return get_list(ctx, rec.messages_key(request_id))

    @view
    def min_requester_credit(self, ctx: CallContext, node: bytes) -> int:
        return ctx.get_int(rec.threshold_key(node))

    @view
    def terms(self, ctx: CallContext, device_type: str) -> Value:
        """[p_min, p_max, request_deposit, bid_deposit, beta_percent, r_max, h, commit_ms,
        reveal_ms, service_ms] for device type S."""
        require(device_type in self.prices, "unknown-device-type", device_type)
        p_min, p_max = self.prices[device_type]
        m = self.mechanism
        return [p_min, p_max, self.request_deposit, self.bid_deposit, m.beta_percent, m.clusters_max,
                m.suspect_threshold, self.commit_ms, self.reveal_ms, self.service_ms]

    # ------------------------------------------------------------------------------------
    def _check_requester_credit(self, ctx: CallContext, node: Address, device: Address) -> None:
        threshold = ctx.get_int(rec.threshold_key(node))
        credit = ctx.view(CREDIT, "credit_of", [device])
        assert isinstance(credit, int)
        require(credit >= threshold, "requester-credit-low",
                f"requester credit {credit} < node threshold {threshold}")

    def _owner(self, ctx: CallContext, device: Address) -> Address:
        """Who stands behind a device's rating: its bound smartphone (the owner), b"" if none."""
        record = ctx.view(REGISTRY, "device", [device])
        assert isinstance(record, list) and isinstance(record[3], bytes)
        return record[3]

    def _why_not_counted(self, ctx: CallContext, ratee: Address, counterparty: Address) -> str:
        """"" when a rating of `ratee` backed by `counterparty` counts towards its credit.
        Independent: the counterparty exists, is not the ratee and was not admitted by the
        ratee (a vendor's own smartphone rating the vendor is the credit pump). Once per
        counterparty per `rating_period_ms`, so a pump is bounded by the independent
        members it can find, not by how many requests it can open."""
        if not counterparty:
            return "no-owner"
        member = ctx.view(REGISTRY, "member", [counterparty])
        assert isinstance(member, list)
        if counterparty == ratee or (member and member[3] == ratee):
            return "not-independent"
        last = ctx.get_value(rec.rated_key(ratee, counterparty))
        if isinstance(last, int) and ctx.block.timestamp_ms - last < self.rating_period_ms:
            return "rated-this-period"
        return ""

    def _acts_for(self, ctx: CallContext, device: Address) -> bool:
        return ctx.view(REGISTRY, "acts_for", [device, ctx.sender]) is True

    def _pay_node(self, ctx: CallContext, request_id: int, request: Request) -> None:
        if request.escrowed:
            ctx.call(TOKEN, "escrow_pay", [rec.payment_escrow(request_id), request.node, request.escrowed])
            ctx.emit("Paid", request=request_id, to=request.node, amount=request.escrowed)
            request.escrowed = 0

    def _node_defaults(self, ctx: CallContext, request_id: int, request: Request, why: str) -> None:
        if not request.in_warranty:
            ctx.call(TOKEN, "escrow_forfeit", [rec.bid_escrow(request_id, request.node), request.payer])
            ctx.emit("DepositForfeited", request=request_id, party=request.node, to=request.payer,
                     amount=self.bid_deposit, reason=why)
        self._finish(ctx, request_id, request, rec.DEFAULTED)
        ctx.emit("Defaulted", request=request_id, party=request.node, reason=why)

    def _requester_defaults(self, ctx: CallContext, request_id: int, request: Request, why: str) -> None:
        ctx.call(TOKEN, "escrow_forfeit", [rec.deposit_escrow(request_id), request.node])
        ctx.emit("DepositForfeited", request=request_id, party=request.payer, to=request.node,
                 amount=self.request_deposit, reason=why)
        self._finish(ctx, request_id, request, rec.DEFAULTED)
        ctx.emit("Defaulted", request=request_id, party=request.device, reason=why)

    def _finish(self, ctx: CallContext, request_id: int, request: Request, status: str) -> None:
        """Return every escrow still held for the request to its owner and end it."""
        if request.escrowed:
            ctx.call(TOKEN, "escrow_release", [rec.payment_escrow(request_id)])
            request.escrowed = 0
        if self._escrow_held(ctx, rec.deposit_escrow(request_id)):
            ctx.call(TOKEN, "escrow_release", [rec.deposit_escrow(request_id)])
        if request.node and not request.in_warranty and self._escrow_held(
                ctx, rec.bid_escrow(request_id, request.node)):
            ctx.call(TOKEN, "escrow_release", [rec.bid_escrow(request_id, request.node)])
        request.status = status
        ctx.delete(rec.open_key(request.device))
        self._put(ctx, request_id, request)

    def _escrow_held(self, ctx: CallContext, escrow_id: bytes) -> bool:
        return ctx.view(TOKEN, "escrow", [DSC, escrow_id]) != []

    def _request(self, ctx: CallContext, request_id: int) -> Request:
        stored = ctx.get_value(rec.request_key(request_id))
        require(stored is not None, "unknown-request", str(request_id))
        assert stored is not None
        return Request.from_value(stored)

    def _assigned(self, ctx: CallContext, request_id: int) -> Request:
        request = self._request(ctx, request_id)
        require(request.status == rec.ASSIGNED, "not-assigned", f"request is {request.status}")
        return request

    def _put(self, ctx: CallContext, request_id: int, request: Request) -> None:
        ctx.set_value(rec.request_key(request_id), request.to_value())

    def _bid(self, ctx: CallContext, request_id: int, bidder: bytes) -> Bid:
        stored = ctx.get_value(rec.bid_key(request_id, bidder))
        require(stored is not None, "no-commit", f"0x{bidder.hex()} has no bid in request {request_id}")
        assert stored is not None
        return Bid.from_value(stored)

    def _state(self, ctx: CallContext, bidder: Address) -> BidderState:
        stored = get_list(ctx, rec.bidder_state_key(bidder))
        if not stored:
            return BidderState()
        w, d, count = stored
        assert isinstance(w, int) and isinstance(d, int) and isinstance(count, int)
        return BidderState(w, d, count)

    def _set_state(self, ctx: CallContext, bidder: Address, state: BidderState) -> None:
        ctx.set_value(rec.bidder_state_key(bidder), [state.w, state.d, state.suspect_count])
