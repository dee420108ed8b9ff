"""Figures 5-8 declared once, as data: every step of every flow with its number, its actor,
what it does, the sealed messages it sends (kind, from, to, and what the receiver checks
before accepting) and the transactions it sends (who, which method).

The same declaration is used by
- the agents: a received message is accepted only when its kind is declared at the step
  it claims, for a flow the request can be in, and from the party the declared `Rule`
  names (`diagnosis.authorise`);
- the flows and the report: step numbers and actions come from here, each label once;
- Tables 3 and 4: our counts by design are derived from it (`expected_table3`), and a run
  is checked against it message by message and transaction by transaction.

Labels: a figure's step n is "n"; where a step groups several actions (SOW step 6 is SMW
steps 1-6, "stage II"; RMW step 8 is publishing the policy and the report that fires it)
its parts are "n.1", "n.2", ... so no label repeats.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

# Paper notation for the roles (Tables 3 and 4).
DEVICE = "k_i"
VENDOR = "v_i"
SUPPLIER = "nv_i"
PHONE = "smartphone"
CREW = "Rep"
NODE = "node"  # the diagnosis node of the flow: v_i in warranty, nv_i (the winner) outside
NODES = "nodes"  # every diagnosis node checking the request (V.B step 2)
BIDDERS = "bidders"  # Table 3 row of the auction's losing bidders (each sends commit + reveal)
DSC_ACTOR = "DSC"

SYMBOLS = {
    DEVICE: "failure device (ordinary node)",
    VENDOR: "original vendor node",
    SUPPLIER: "non-original supplier node",
    CREW: "the diagnosis node's maintenance crew",
    PHONE: "the device owner's smartphone",
    "T_E": "Paillier exponentiations",
    "T_M": "multiplications in the BLS signature",
    "T_P": "bilinear pairings",
}


class Rule(StrEnum):
    """Who may send a message of a kind: what the receiver reads by proof and checks."""

    REQUESTER_TO_ASSIGNED = "requester_to_assigned"  # sender = request's device, receiver = its node
    ASSIGNED_TO_REQUESTER = "assigned_to_requester"  # sender = request's assigned node, receiver = device
    CREW_OF_ASSIGNED = "crew_of_assigned"  # sender = crew registered by the assigned node
    ASSIGNED_TO_OWN_CREW = "assigned_to_own_crew"  # sender = assigned node and the crew's registrar
    BOUND_DEVICE = "bound_device"  # sender = the request's device, bound to the receiving phone
    OWN_DEVICE_IN_WARRANTY = "own_device_in_warranty"  # no request yet: sold by the receiver, in warranty


@dataclass(frozen=True)
class Message:
    """One sealed unicast: kind, sender and receiver roles, the receiver's rule."""

    kind: str
    sender: str
    receiver: str
    rule: Rule


@dataclass(frozen=True)
class Tx:
    """One transaction of the step: who sends it and `contract.method`."""

    sender: str
    method: str


@dataclass(frozen=True)
class Step:
    label: str
    actor: str
    action: str
    messages: tuple[Message, ...] = ()
    txs: tuple[Tx, ...] = ()

    @property
    def number(self) -> int:
        """The figure's step number (what `dsc.log_message` records)."""
        return int(self.label.split(".")[0])


@dataclass(frozen=True)
class Flow:
    name: str
    figure: int
    in_warranty: bool
    mode: str
    node_role: str
    steps: tuple[Step, ...]

    def step(self, label: str) -> Step:
        for step in self.steps:
            if step.label == label:
                return step
        raise KeyError(f"{self.name} declares no step {label}")

    def messages(self) -> list[tuple[str, Message]]:
        return [(s.label, m) for s in self.steps for m in s.messages]

    def role(self, declared: str) -> str:
        return self.node_role if declared == NODE else declared


# The messages, each declared once.
FAULT = Message("fault", DEVICE, NODE, Rule.REQUESTER_TO_ASSIGNED)
REPAIR_POLICY = Message("repair_policy", NODE, DEVICE, Rule.ASSIGNED_TO_REQUESTER)
SPOT = Message("spot", NODE, DEVICE, Rule.ASSIGNED_TO_REQUESTER)
TIME = Message("time", DEVICE, NODE, Rule.REQUESTER_TO_ASSIGNED)
BRIEFING = Message("briefing", NODE, CREW, Rule.ASSIGNED_TO_OWN_CREW)
ONSITE_REPAIR = Message("onsite_repair", CREW, DEVICE, Rule.CREW_OF_ASSIGNED)
NOTICE = Message("diagnosis_notice", DEVICE, PHONE, Rule.BOUND_DEVICE)
REPORT = Message("maintenance_report", DEVICE, PHONE, Rule.BOUND_DEVICE)
PACKAGE = Message("package", DEVICE, PHONE, Rule.BOUND_DEVICE)
# Before any request (V.A): a device asks its vendor whether it serves it for free. In no
# figure; the demo's failure paths use it.
FREE_SERVICE = Message("free_service", DEVICE, VENDOR, Rule.OWN_DEVICE_IN_WARRANTY)
MESSAGES = (FAULT, REPAIR_POLICY, SPOT, TIME, BRIEFING, ONSITE_REPAIR, NOTICE, REPORT, PACKAGE, FREE_SERVICE)
RULE_OF_KIND = {m.kind: m.rule for m in MESSAGES}


def _log(sender: str) -> Tx:
    return Tx(sender, "dsc.log_message")


def _remote_stage(prefix: str, with_deposit: bool) -> tuple[Step, ...]:
    """RMW steps 1-5 (Fig. 5); ROW step 6 ("stage I") repeats them as 6.1-6.5."""
    deposit = (Tx(DEVICE, "dsc.open_request"),) if with_deposit else ()
    return (
        Step(f"{prefix}1", DEVICE, "encrypt failure details with the node's Paillier key, sign C||ID_v||ID_k||T"),
        Step(f"{prefix}2", DEVICE, "send C_k||ID_v||ID_k||T||sigma_k to the node"
             + ("; deposit to the DSC" if with_deposit else ""), (FAULT,), (*deposit, _log(DEVICE))),
        Step(f"{prefix}3", NODE, "state tree: request assigned to me (in warranty: sold by me); verify "
             "e(P,sigma)=e(Y,H); decrypt M_k"),
        Step(f"{prefix}4", NODE, "diagnose remote; encrypt the repair policy R_k for k_i, sign, send",
             (REPAIR_POLICY,), (Tx(NODE, "dsc.set_mode"), _log(NODE))),
        Step(f"{prefix}5", DEVICE, "verify the node's signature, decrypt R_k, repair"),
    )


def _onsite_stage(prefix: str, with_deposit: bool) -> tuple[Step, ...]:
    """SMW steps 1-6 (Fig. 6); SOW step 6 ("stage II") repeats them as 6.1-6.6."""
    deposit = (Tx(DEVICE, "dsc.open_request"),) if with_deposit else ()
    return (
        Step(f"{prefix}1", DEVICE, "encrypt the fault message (trouble spot, failure performance) for the node, "
             "sign"),
        Step(f"{prefix}2", DEVICE, "send C_k||ID_v||ID_k||T||sigma_k" + ("; deposit to the DSC" if with_deposit
                                                                       else ""), (FAULT,), (*deposit, _log(DEVICE))),
        Step(f"{prefix}3", NODE, "state tree check; verify sigma_k; decrypt M_k"),
        Step(f"{prefix}4", NODE, "diagnose on-site; encrypt Spot_k for k_i, sign, send", (SPOT,),
             (Tx(NODE, "dsc.set_mode"), _log(NODE))),
        Step(f"{prefix}5", DEVICE, "verify, decrypt Spot_k; choose time t_k; encrypt, sign, send", (TIME,),
             (_log(DEVICE),)),
        Step(f"{prefix}6", NODE, "verify, decrypt t_k; brief Rep (ID_k||M_k||R_k||Spot_k||t_k||T); k_i tells the "
             "smartphone", (BRIEFING, NOTICE), (_log(NODE), _log(DEVICE))),
    )


def _auction() -> tuple[Step, ...]:
    """Figs. 7-8 steps 1-5: the request, the nodes' checks, the sealed-bid auction, the key exchange."""
    return (
        Step("1", DEVICE, "request on the DSC with deposit + P_max (Y, ID, S, Cred are on chain)", (),
             (Tx(DEVICE, "dsc.open_request"),)),
        Step("2", NODES, "check k_i in the state tree: registered, type S in scope, Cred_k >= my threshold"),
        Step("3", NODES, "sealed bid H(P, Cred, salt) + deposit, then public offer of P_i, Cred_i", (),
             (Tx(NODE, "dsc.commit"), Tx(NODE, "dsc.reveal"), Tx(BIDDERS, "dsc.commit"), Tx(BIDDERS, "dsc.reveal"))),
        Step("4", DSC_ACTOR, "close (sent by k_i): k-means collusion check, O_i = P_i - d_i, winner, deposits "
             "settled", (), (Tx(DEVICE, "dsc.close"),)),
        Step("5", "k_i+nv_i", "exchange identity, Y and Paillier N: read from the registry by state proofs"),
    )


RMW = Flow("RMW", 5, True, "remote", VENDOR, (
    *_remote_stage("", True),
    Step("6", "k_i+v_i", "mutual credit; deposit returned by the DSC", (),
         (Tx(DEVICE, "dsc.complete"), Tx(DEVICE, "dsc.rate"), Tx(NODE, "dsc.rate"))),
    Step("7", DEVICE, "package maintenance info + both credits to the smartphone and the chain", (PACKAGE,),
         (_log(DEVICE),)),
    Step("8.1", PHONE, "adjust and publish the equipment control policy (policy contract)", (),
         (Tx(PHONE, "policy.publish"),)),
    Step("8.2", DEVICE, "running report crosses the limit: the policy executes at block end", (),
         (Tx(DEVICE, "policy.report"),)),
))

SMW = Flow("SMW", 6, True, "on-site", VENDOR, (
    *_onsite_stage("", True),
    Step("7", CREW, "at the negotiated time Rep goes on site and repairs; the device logs Rep's message",
         (ONSITE_REPAIR,), (_log(DEVICE), Tx(NODE, "dsc.report_done"))),
    Step("8", DEVICE, "report the maintenance (with its time) to the smartphone", (REPORT,)),
    Step("9", PHONE, "smartphone (for k_i) and v_i rate each other; deposit back; maintenance message on chain",
         (), (Tx(PHONE, "dsc.complete"), Tx(PHONE, "dsc.rate"), Tx(NODE, "dsc.rate"), _log(PHONE))),
    Step("10", PHONE, "adjust and publish the equipment control policy (policy contract)", (),
         (Tx(PHONE, "policy.publish"),)),
))

ROW = Flow("ROW", 7, False, "remote", SUPPLIER, (
    *_auction(),
    *_remote_stage("6.", False),
    Step("7", DSC_ACTOR, "completion: pay the winner the agreed price, return the deposits", (),
         (Tx(DEVICE, "dsc.complete"),)),
    Step("8", "k_i+nv_i", "assess each other: credits renewed by trimmed mean", (),
         (Tx(DEVICE, "dsc.rate"), Tx(NODE, "dsc.rate"))),
    Step("9", DEVICE, "package maintenance info, credits and payment to the smartphone and the chain", (PACKAGE,),
         (_log(DEVICE),)),
    Step("10", PHONE, "adjust and publish the equipment control policy (policy contract)", (),
         (Tx(PHONE, "policy.publish"),)),
))

SOW = Flow("SOW", 8, False, "on-site", SUPPLIER, (
    *_auction(),
    *_onsite_stage("6.", False),
    Step("7", CREW, "at the negotiated time Rep goes on site and repairs; the device logs Rep's message",
         (ONSITE_REPAIR,), (_log(DEVICE), Tx(NODE, "dsc.report_done"))),
    Step("8", DSC_ACTOR, "completion confirmed by the smartphone: pay the agreed price, return deposits", (),
         (Tx(PHONE, "dsc.complete"),)),
    Step("9", DEVICE, "report the maintenance information to the smartphone", (REPORT,)),
    Step("10", PHONE, "smartphone and nv_i rate each other; maintenance message on chain", (),
         (Tx(PHONE, "dsc.rate"), Tx(NODE, "dsc.rate"), _log(PHONE))),
    Step("11", PHONE, "adjust and publish the equipment control policy (policy contract)", (),
         (Tx(PHONE, "policy.publish"),)),
))

FLOWS = {flow.name: flow for flow in (RMW, SMW, ROW, SOW)}


def flow_for(in_warranty: bool, mode: str) -> Flow:
    """The figure a request follows once its mode is chosen."""
    return next(f for f in FLOWS.values() if f.in_warranty == in_warranty and f.mode == mode)


def label_of(flow: Flow, sender: str, what: str) -> str:
    """The step at which `sender` (a role of the flow, e.g. k_i or NODE) sends `what` (a
    message kind or a "contract.method"): the reacting services take their step labels
    from here."""
    for step in flow.steps:
        if any(m.kind == what and m.sender == sender for m in step.messages) or any(
                t.method == what and t.sender == sender for t in step.txs):
            return step.label
    raise KeyError(f"{flow.name}: {sender} sends no {what}")


def labels_for(kind: str, in_warranty: bool, mode: str) -> set[str]:
    """The step labels at which `kind` may arrive for a request in this state (mode ""
    while the node has not chosen)."""
    return {label for flow in FLOWS.values() if flow.in_warranty == in_warranty and mode in ("", flow.mode)
            for label, message in flow.messages() if message.kind == kind}


def expected_table3(flow: Flow, losing_bidders: int) -> dict[str, tuple[int, int]]:
    """Per Table 3 row (unicast, broadcast) as declared: each message is one unicast of its
    sender, each transaction one broadcast; the losing bidders' row counts theirs."""
    rows: dict[str, list[int]] = {}
    for step in flow.steps:
        for message in step.messages:
            rows.setdefault(flow.role(message.sender), [0, 0])[0] += 1
        for tx in step.txs:
            rows.setdefault(flow.role(tx.sender), [0, 0])[1] += losing_bidders if tx.sender == BIDDERS else 1
    return {role: (u, b) for role, (u, b) in rows.items() if (u, b) != (0, 0)}


def declared_sends(flow: Flow, losing_bidders: int) -> Counter[tuple[str, str, str]]:
    """(label, row, kind or method) of everything the flow sends, with multiplicity: what
    a run must match exactly."""
    sent: Counter[tuple[str, str, str]] = Counter()
    for step in flow.steps:
        for message in step.messages:
            sent[(step.label, flow.role(message.sender), message.kind)] += 1
        for tx in step.txs:
            sent[(step.label, flow.role(tx.sender), tx.method)] += losing_bidders if tx.sender == BIDDERS else 1
    return sent
