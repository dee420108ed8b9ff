"""`node.py verify` (chain.verify.verify_chain) checks each stored block's finality proof,
not only its certificate: a store holding a certified block the group never finalized
(an observer fed by a Byzantine follower) is not clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from chain.verify import verify_chain
from tests.support import DevChain, certify


@pytest.mark.parametrize("t", [1, 2])
def test_verify_accepts_final_blocks_and_flags_a_certificate_without_finality(tmp_path: Path, t: int) -> None:
    for finality, directory in ((True, "final"), (False, "certified")):
        dev = DevChain.create(tmp_path / directory, t=t)
        for height in range(1, 4):
            executed, _ = dev.chain.build([], timestamp_ms=dev.clock_ms + height, proposer=0, view=0)
            # the "certified" store: block 2 has its certificate but no finality proof
            dev.chain.append(certify(dev, executed.block, finality=finality or height != 2))
        findings = list(verify_chain(dev.chain, require_certificates=True))
        if finality:
            assert findings == []
        else:
            assert [(f.height, f.problem.split(":")[0]) for f in findings] == [(2, "certificate")]
            assert "finality signed by []" in findings[0].problem
