"""Insider attacks on the consensus and sync protocol: messages signed with a real
bookkeeper's key, so they pass the signature check and reach the deep handlers.

The first tests are the reproducers of what an attacker found; the property tests feed
thousands of crafted messages (faults/craft.py) into the replicas and block sync of a
simulated cluster and check that only the typed rejection path is ever taken and that the
honest replicas stay consistent and live afterwards.
"""

from __future__ import annotations

import msgpack
import pytest

from consensus.errors import DecodeReason, InvalidMessage
from consensus.messages import VcFinal, ViewChange, message_from_wire
from consensus.simulation import Simulation

INSIDER = 1


def _wire(message: object) -> object:
    return msgpack.unpackb(msgpack.packb(message, use_bin_type=True), raw=False)


def test_vc_final_nesting_a_view_change_of_sender_99_crashes_no_replica():
    # Found by an attacker: bookkeeper 1 (a member of view 0's group) signed a VC-FINAL
    # whose second VIEW-CHANGE names sender 99; every honest replica raised IndexError.
    sim = Simulation(t=1, seed=21)
    sim.submit(2)
    sim.run_until(sim.now + 500)
    key = sim.nodes[INSIDER].key
    view = sim.nodes[0].replica.view

    def view_change(sender: int) -> ViewChange:
        vc = ViewChange(sender=sender, view=view, final_height=0, final_hash=bytes(32),
                        final_certificate=b"", entry_view=0, entry_block=b"",
                        entry_certificate=b"").signed(key)
        assert isinstance(vc, ViewChange)
        return vc

    vc_final = VcFinal(sender=INSIDER, view=view,
                       view_changes=(view_change(INSIDER), view_change(99))).signed(key)
    with pytest.raises(InvalidMessage) as info:
        message_from_wire(_wire(vc_final.to_wire()), sim.n)
    assert info.value.reason is DecodeReason.UNKNOWN_SENDER
    # A caller that skipped the decoder (the replica's API takes Message objects) still
    # gets a rejection, not an exception.
    for index in (0, 2):
        sim.nodes[index].replica.on_message(INSIDER, vc_final, sim.now)
    sim.run_until(sim.now + 5_000)
    sim.check_consistency()
