"""The block explorer and operator dashboard, served by every node at `GET /` on its RPC
listener (or standalone: `node.py explorer --rpc URL`).

    index.py    the SQLite index of final blocks, transactions, events and DSC requests
    source.py   where the chain is read: the node's own dispatcher or a remote node's RPC
    indexer.py  keeps the index level with the chain, rebuilds it when it does not match
    api.py      the page, its static files and the paginated JSON APIs
    standalone.py  `node.py explorer`: the same pages beside a remote node, its /ws relayed
    static/     the page: hand-written HTML, CSS and JavaScript, no build step, no CDN
                (js-sha3 0.9.3 vendored for keccak256)
"""

from explorer.api import Explorer, serve_in
from explorer.source import ChainSource, LocalSource

__all__ = ["ChainSource", "Explorer", "LocalSource", "serve_in"]
