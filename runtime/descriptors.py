"""File descriptors of the node process: raise RLIMIT_NOFILE's soft limit to the hard one at
start, so the connection caps (RPC connections_max, p2p pending_handshakes_max) are what
runs out first, never the descriptors a peer's reconnect or an LMDB write needs."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("gridchain.node")

# With an unlimited hard limit, Linux still refuses a soft limit above fs.nr_open (2^20).
UNLIMITED_SOFT = 1 << 20


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE as far as the hard limit allows; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_SOFT if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise RLIMIT_NOFILE from %d to %d: %s", soft, target, exc)
    return soft
