"""When the primary proposes and how long it waits. On a starved machine the time it spent
building a block is not counted against the followers, whose votes take about as long again
(issue 10, "pinned"); the batch timer holds only work that reaches an idle primary."""

from __future__ import annotations

from consensus import ConsensusConfig, Replica, Suspected
from consensus.loop import settle
from consensus.replica import SLOW_START_SHARE
from consensus.simulation import CHAIN_ID, CLOCK_EPOCH_MS, FakeLedger, Simulation
from consensus.storage import INITIAL_STATE
from crypto import KeyPair

CONFIG = ConsensusConfig(t=1)


class RecordingLedger(FakeLedger):
    def __init__(self) -> None:
        super().__init__(None)
        self.budgets: list[int | None] = []

    def propose(self, height, view, proposer, clock_ms, budget_ms=None):
        self.budgets.append(budget_ms)
        return super().propose(height, view, proposer, clock_ms, budget_ms)


def _primary() -> tuple[Replica, RecordingLedger]:
    keys = [KeyPair.from_seed(bytes([i + 1]) * 32) for i in range(3)]
    ledger = RecordingLedger()
    replica = Replica(CONFIG, index=0, key=keys[0], bookkeepers=[k.public_key for k in keys],
                      chain_id=CHAIN_ID, app=ledger, stored=INITIAL_STATE)
    replica.start(0, CLOCK_EPOCH_MS)
    ledger.mempool[b"tx"] = None
    replica.on_transactions(0, CLOCK_EPOCH_MS)  # the batch timer starts
    return replica, ledger


def _suspects(replica: Replica, ledger: RecordingLedger, now_ms: int) -> bool:
    actions = settle(replica, ledger, replica.on_tick(now_ms, CLOCK_EPOCH_MS + now_ms), lambda: now_ms,
                     lambda: CLOCK_EPOCH_MS + now_ms)
    return any(isinstance(a, Suspected) for a in actions)


def test_a_slow_build_is_not_charged_to_the_followers() -> None:
    replica, ledger = _primary()
    assert not _suspects(replica, ledger, CONFIG.batch_timeout_ms)  # proposes: the build starts here
    assert len(ledger.budgets) == 1
    built = CONFIG.batch_timeout_ms + 3_000  # the next tick's time says the build took 3 s
    assert replica.next_deadline() == 0  # it asks for that tick at once
    assert not _suspects(replica, ledger, built)
    # The followers execute the same block: the wait allows twice the build on top.
    patience = built + CONFIG.commit_timeout_ms + 2 * 3_000
    assert not _suspects(replica, ledger, patience - 1)
    assert _suspects(replica, ledger, patience)  # a follower that never votes is still suspected


def test_a_fresh_replica_starts_with_a_small_block() -> None:
    replica, ledger = _primary()
    assert not _suspects(replica, ledger, CONFIG.batch_timeout_ms)
    assert ledger.budgets == [CONFIG.commit_timeout_ms // SLOW_START_SHARE]


def test_a_short_floor_keeps_the_allowance_for_a_slow_block_cycle() -> None:
    """The WAN preset's 500 ms commit timeout detects a crash quickly; a block cycle of 3 s
    measured under load still earns up to 4 s of allowance, as with a 1 s floor."""
    replica, _ = _primary()
    replica._cycle_ms = 3_000
    assert replica._backed_off(500) == 500 + 4_000
    assert replica._backed_off(1_500) == 1_500 + 6_000  # floors of 1 s and more: 4 x the floor
    replica._cycle_ms = 150  # an idle WAN cycle: detection 0.5 s + 2 cycles
    assert replica._backed_off(500) == 800


def test_work_queued_behind_a_block_is_proposed_as_soon_as_it_is_final() -> None:
    """The batch timer is for work reaching an idle primary (a burst lands in one block);
    transactions that queued while a block was in flight are a batch already: the next block
    is built at the input that finds the previous one stored, not batch_timeout_ms later."""
    sim = Simulation(t=1, seed=21)
    primary = sim.nodes[0]
    built: dict[int, int] = {}
    stored: dict[int, int] = {}
    propose, finalize = primary.ledger.propose, primary.ledger.finalize

    def recording_propose(height, view, proposer, clock_ms, budget_ms=None):
        built.setdefault(height, sim.now)
        return propose(height, view, proposer, clock_ms, budget_ms)

    def recording_finalize(block):
        stored.setdefault(block.number, sim.now)
        finalize(block)

    primary.ledger.propose = recording_propose
    primary.ledger.finalize = recording_finalize
    sim.submit(1)  # an idle primary: the batch timer runs
    submitted = sim.now
    while 1 not in built:
        sim.run_until(sim.now + 1)
    assert 1 not in stored
    sim.submit(1)  # queued behind block 1, in flight
    sim.run_until(1_000)
    assert sim.all_done() and {1, 2} <= set(built)
    assert built[1] == submitted + CONFIG.batch_timeout_ms
    assert built[2] == stored[1]
