// The explorer's single page: hash routes, JSON from /explorer/api/, live updates from
// the node's own WebSocket subscriptions (/ws: newHeads, dsc and policy events).
// Every value from the chain goes into the page as text (textContent), never as HTML.
"use strict";

const SCALE = 1e6; // fixed point of credits, coupons, centroids (vm/fixedpoint.py)
const CHART_POINTS_MAX = 120;
const FOOTER_REFRESH_MS = 5000; // the footer's index counts, refreshed on a final block at most this often
const app = { footerAt: 0, route: 0, labels: {} /* address -> role or name */, page: null, status: null /* promise of /explorer/api/status */, socket: null, latency: [], mempool: [], commit: [], heads: [] };

// DOM (h and short: dom.js, shared with the phone app) -------------------------------
const link = (href, text, label) => h("a", { href, "aria-label": label || null }, text);
const named = (a) => (app.labels[a] ? app.labels[a] + " " + short(a) : short(a));
const addr = (a) => (a ? link("#/address/" + a, named(a), "address " + a) : h("span", { class: "muted" }, "—"));
const blockLink = (n) => link("#/block/" + n, "#" + n);
const txLink = (t) => (t ? link("#/tx/" + t, short(t), "transaction " + t) : h("span", { class: "muted" }, "end of block"));
const fixed = (v, digits = 2) => (typeof v === "number" ? (v / SCALE).toFixed(digits) : "—");
const when = (ms) => new Date(ms).toISOString().replace("T", " ").replace(".000Z", "Z");
const mono = (t) => h("code", {}, t);
function table(caption, headers, rows) {
  return h("div", { class: "scroll" }, h("table", {},
    h("caption", { class: "muted", style: "text-align:left" }, caption),
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.length ? rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))
      : h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, "none yet")))));
}
const kv = (pairs) => h("dl", { class: "kv" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
const tile = (label, value, id) => h("div", { class: "tile" }, h("div", { class: "value", id: id || null }, value), h("div", { class: "label" }, label));

async function api(path) {
  const response = await fetch("/explorer/api/" + path);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}
function show(...content) {
  const main = document.getElementById("main");
  main.replaceChildren(...content);
}
function fail(err) { show(h("h1", {}, "Not found"), h("p", { class: "error", role: "alert" }, err.message)); }

// live ----------------------------------------------------------------------------------
function connect() {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  const subscriptions = {};
  let id = 0;
  const subscribe = (kind, params) => { id += 1; subscriptions[id] = kind; ws.send(JSON.stringify({ jsonrpc: "2.0", id, method: "subscribe", params })); };
  const ids = {};
  ws.onopen = () => {
    subscribe("heads", ["newHeads"]);
    subscribe("dsc", ["events", { contract: "dsc" }]);
    subscribe("policy", ["events", { contract: "policy" }]);
    setLive("live: following final blocks over the node's WebSocket");
  };
  ws.onmessage = (message) => {
    const data = JSON.parse(message.data);
    if (data.id && subscriptions[data.id]) { ids[data.result] = subscriptions[data.id]; return; }
    if (data.method !== "subscription") return;
    const kind = ids[data.params.subscription];
    const result = data.params.result;
    const page = app.page;
    const done = kind === "heads" ? onHead(result) : page && page.onEvent ? page.onEvent(kind, result) : null;
    // a live update that failed (the node restarting, a page left meanwhile) waits for the next one
    Promise.resolve(done).catch((err) => setLive("live update failed: " + err.message));
  };
  ws.onclose = () => { setLive("WebSocket closed: reconnecting…"); setTimeout(connect, 2000); };
  app.socket = ws;
}
function setLive(text) { document.getElementById("live").textContent = text; }
function onHead(head) {
  const latency = Date.now() - head.timestampMs; // block time to final here (one machine's clock)
  app.latency.push({ x: head.number, y: latency });
  app.heads.push(head);
  for (const list of [app.latency, app.heads]) while (list.length > CHART_POINTS_MAX) list.shift();
  setLive("live: block #" + head.number + " final, " + latency + " ms after its block time");
  if (Date.now() - app.footerAt > FOOTER_REFRESH_MS) {
    app.footerAt = Date.now();
    api("status").then(showIndexState, () => {});
  }
  return app.page && app.page.onHead ? app.page.onHead(head) : null;
}

// Renders from live updates may answer out of order: only the newest asked is drawn.
// Nor onto another page than the one that asked.
function latest(render) {
  let asked = 0;
  const route = app.route;
  return async (...args) => {
    asked += 1;
    const mine = asked;
    const content = await render(...args);
    if (mine === asked && route === app.route && content) show(...content);
  };
}

// pages ---------------------------------------------------------------------------------
const pages = {
  async home() {
    const [data, status] = await Promise.all([api("blocks?limit=20"), api("status")]);
    const rows = (blocks) => blocks.map(blockRow);
    const tbody = () => document.querySelector("#blocks tbody");
    show(h("h1", {}, "Final blocks"),
      h("div", { class: "tiles" }, tile("height", status.chain.height, "t-height"), tile("view", status.chain.view ?? "—", "t-view"),
        tile("primary", status.chain.primary ?? "observer", "t-primary"), tile("peers", status.chain.peers.length, "t-peers"),
        tile("mempool", status.chain.mempool, "t-mempool"), tile("indexed transactions", status.index.transactions)),
      h("div", { class: "scroll" }, h("table", { id: "blocks" },
        h("caption", { class: "muted", style: "text-align:left" }, "Newest first; new blocks appear as they become final."),
        h("thead", {}, h("tr", {}, ["block", "hash", "time", "view", "proposer", "txs", "signers"].map((x) => h("th", { scope: "col" }, x)))),
        h("tbody", {}, rows(data.blocks)))),
      pager(data.blocks, (before) => api("blocks?limit=20&before=" + before).then((d) => tbody().replaceChildren(...rows(d.blocks)))));
    return {
      async onHead(head) {
        const fresh = await api("blocks?limit=1&after=" + head.number);
        if (!fresh.blocks.length) return;
        const row = blockRow(fresh.blocks[0]);
        row.classList.add("new");
        const body = tbody();
        if (body && !body.querySelector('[data-number="' + head.number + '"]')) {
          body.prepend(row);
          while (body.children.length > 20) body.lastChild.remove();
        }
        const st = await api("status");
        for (const [id, v] of [["t-height", st.chain.height], ["t-view", st.chain.view ?? "—"], ["t-primary", st.chain.primary ?? "observer"],
          ["t-peers", st.chain.peers.length], ["t-mempool", st.chain.mempool]]) document.getElementById(id).textContent = v;
      },
    };
  },

  async block(id) {
    const data = await api("block/" + id);
    const b = data.block;
    show(h("h1", {}, "Block #" + b.number),
      kv([["hash", mono(b.hash)], ["parent", b.number > 0 ? link("#/block/" + (b.number - 1), short(b.parent, 18)) : mono(b.parent)],
        ["time", when(b.timestamp_ms)], ["view", b.view], ["proposer", "replica " + b.proposer],
        ["state root", mono(b.state_root)], ["transaction root", mono(b.tx_root)], ["receipt root", mono(b.receipt_root)],
        ["gas used", b.gas_used]]),
      h("h2", {}, "Commit certificate"),
      b.commit ? kv([["view", b.commit.view],
        ["commit votes (signers)", b.commit.votes.map((v) => "replica " + v.replica).join(", ")],
        ["finality signatures", b.commit.finality.map((v) => "replica " + v.replica).join(", ") || "—"]])
        : h("p", { class: "muted" }, "the genesis block has no certificate"),
      h("h2", {}, "Transactions"),
      table(data.transactions.length + " transactions", ["#", "hash", "from", "call", "status", "gas"],
        data.transactions.map((t) => [t.idx, txLink(t.hash), addr(t.sender), t.contract + "." + t.method, statusBadge(t.status, t.error), t.gas_used])),
      h("h2", {}, "End-of-block events"), eventsTable(data.endOfBlockEvents));
  },

  async tx(hash) {
    const data = await api("tx/" + hash);
    const t = data.transaction;
    if (data.pending) { show(h("h1", {}, "Pending transaction"), kv([["hash", mono(t.hash)], ["from", addr(t.from)], ["call", t.method]])); return; }
    const proofBox = h("section", { id: "proof", "aria-live": "polite" });
    show(h("h1", {}, "Transaction"),
      kv([["hash", mono(t.hash)], ["block", blockLink(t.block)], ["index", t.idx], ["from", addr(t.sender)],
        ["call", t.contract + "." + t.method], ["arguments", mono(JSON.stringify(t.args))], ["value", t.value],
        ["receipt", statusBadge(t.status, t.error)], ["gas used", t.gas_used]]),
      h("h2", {}, "Receipt events"), eventsTable(data.events),
      h("h2", {}, "Merkle proof"),
      h("p", { class: "muted" }, "Your browser checks the proof itself (keccak256, RLP, Merkle-Patricia path) against the block header it fetches from another node."),
      proofForm(t.hash), proofBox);
  },

  async address(address) {
    const d = await api("address/" + address);
    const parts = [h("h1", {}, d.device ? "Device" : d.member ? (d.member.role[0].toUpperCase() + d.member.role.slice(1)) : "Account"),
      kv([["address", mono(d.address)], ["balance", d.account.balance], ["nonce", d.account.nonce],
        ["role", d.member ? d.member.role + (d.member.active ? "" : " (revoked)") : "not a member"],
        ["registrar", d.member ? addr(d.member.registrar) : "—"], ["credit", fixed(d.credit)],
        ["inbox endpoint", d.endpoint || "—"]])];
    if (d.device) {
      parts.push(h("h2", {}, "Device record"), kv([["type", d.device.deviceType], ["vendor", addr(d.device.vendor)],
        ["warranty ends", when(d.device.warrantyEndS * 1000)],
        ["warranty at the head", d.device.inWarranty ? h("span", { class: "ok" }, "in warranty") : h("span", { class: "warn" }, "out of warranty")],
        ["smartphone", addr(d.device.phone)]]),
      h("h2", {}, "Maintenance requests"), requestsTable(d.requests || []));
    }
    if (d.devices) parts.push(h("h2", {}, "Devices bound to this smartphone"), h("ul", {}, d.devices.map((x) => h("li", {}, addr(x)))));
    parts.push(h("h2", {}, "Credit"), h("div", { id: "credit" }, h("p", { class: "muted" }, "loading…")),
      h("h2", {}, "Transactions sent"),
      table("newest first", ["hash", "block", "call", "status"], d.transactions.map((t) => [txLink(t.hash), blockLink(t.block), t.contract + "." + t.method, statusBadge(t.status, t.error)])),
      h("h2", {}, "Events that mention it"), eventsTable(d.events));
    show(...parts);
    const c = await api("credit/" + address);
    document.getElementById("credit").replaceChildren(creditView(c));
  },

  async auctions() {
    const data = await api("auctions?limit=25");
    const body = () => document.querySelector("#requests tbody");
    const typeBox = h("input", { id: "type", name: "type", placeholder: "meter" });
    show(h("h1", {}, "Maintenance requests and auctions"),
      h("form", { class: "pager", onsubmit: (e) => { e.preventDefault(); api("auctions?limit=25&type=" + encodeURIComponent(typeBox.value)).then((d) => body().replaceChildren(...d.requests.map(requestRow))); } },
        h("label", { for: "type" }, "Device type"), typeBox, h("button", { type: "submit" }, "Filter")),
      h("div", { class: "scroll" }, h("table", { id: "requests" },
        h("caption", { class: "muted", style: "text-align:left" }, "Newest first; updates live."),
        h("thead", {}, h("tr", {}, ["request", "device", "type", "warranty", "status", "node", "price", "opened"].map((x) => h("th", { scope: "col" }, x)))),
        h("tbody", {}, data.requests.map(requestRow)))),
      pager(data.requests.map((r) => ({ number: r.id })), (before) => api("auctions?limit=25&before=" + before).then((d) => body().replaceChildren(...d.requests.map(requestRow)))));
    return {
      async onEvent(kind, event) {
        if (kind !== "dsc" || typeof event.fields.request !== "number") return;
        const fresh = await api("auctions?limit=25&after=" + event.blockNumber);
        body().replaceChildren(...fresh.requests.map(requestRow));
      },
    };
  },

  async auction(id) {
    const render = latest(async (after) => auctionView(await api("auction/" + id + (after ? "?after=" + after : ""))));
    await render();
    return {
      async onEvent(kind, event) {
        if (kind === "dsc" && event.fields.request === Number(id)) await render(event.blockNumber);
      },
    };
  },

  async consortium() {
    const d = await api("consortium");
    const roles = Object.keys(d.members).sort();
    show(h("h1", {}, "Consortium"),
      h("h2", {}, "Bookkeepers"),
      table("view " + d.view + ", primary " + (d.primary ?? "—") + "; synchronous group = the signers of the head's certificate",
        ["index", "name", "Ed25519 key", "in the group of the view"],
        d.bookkeepers.map((b) => [b.index, b.name, mono(short(b.publicKey, 18)), d.group.includes(b.index) ? h("span", { class: "ok" }, "yes") : "no"])),
      ...roles.flatMap((role) => [h("h2", {}, role[0].toUpperCase() + role.slice(1) + "s"),
        table(d.members[role].length + " members", ["address", "active", "registrar", "BLS key", "Paillier N", "credit", "endpoint"],
          d.members[role].map((m) => [addr(m.address), m.active ? "yes" : h("span", { class: "bad" }, "revoked"), addr(m.registrar),
            mono(short(m.blsKey, 14)), mono(short(m.paillierN, 14)), fixed(m.credit), m.endpoint || "—"]))]),
      h("h2", {}, "Devices"),
      table(d.devices.length + " devices", ["device", "type", "vendor", "warranty ends", "warranty at the head", "smartphone"],
        d.devices.map((x) => [addr(x.address), x.deviceType, addr(x.vendor), when(x.warrantyEndS * 1000),
          x.inWarranty ? h("span", { class: "ok" }, "in warranty") : h("span", { class: "warn" }, "out of warranty"), addr(x.phone)])));
  },

  async policies() {
    const d = await api("policies?limit=25");
    const render = (data) => [h("h1", {}, "Policies"),
      h("h2", {}, "Published"),
      table("newest first", ["block", "device", "smartphone", "version", "rules"],
        data.published.map((e) => [blockLink(e.block), addr(e.fields.device), addr(e.fields.phone), e.fields.version,
          e.rules ? h("ol", {}, e.rules.map((r) => h("li", {}, ruleText(r)))) : e.fields.rules + " rules"])),
      h("h2", {}, "Executions"),
      table("newest first; every firing is a PolicyExecuted event at the end of its block", ["block", "device", "version", "rule", "trigger", "action"],
        data.executed.map((e) => [blockLink(e.block), addr(e.fields.device), e.fields.version, e.fields.rule,
          e.fields.trigger + " " + e.fields.trigger_value, e.fields.action + " " + e.fields.target + (e.fields.amount ? " " + e.fields.amount : "")]))];
    show(...render(d));
    const update = latest(async (after) => render(await api("policies?limit=25&after=" + after)));
    return {
      async onEvent(kind, event) { if (kind === "policy") await update(event.blockNumber); },
    };
  },

  async consensus() {
    const d = await api("consensus?limit=120");
    const latencyFig = h("figure", {}, h("figcaption", { id: "c-latency" }, "Finality latency (ms after block time, blocks seen live)"));
    const intervalFig = h("figure", {}, h("figcaption", { id: "c-interval" }, "Block interval (ms)"));
    const viewFig = h("figure", {}, h("figcaption", { id: "c-view" }, "View by block"));
    const mempoolFig = h("figure", {}, h("figcaption", { id: "c-mempool" }, "Mempool (transactions, sampled each final block)"));
    const commitFig = h("figure", {}, h("figcaption", { id: "c-commit" }, "Mean commit latency, admission here to final (ms, node metrics)"));
    const statusBox = h("div", {});
    const changesBox = h("div", {});
    show(h("h1", {}, "Consensus and health"), statusBox,
      h("div", { class: "charts" }, latencyFig, commitFig, intervalFig, viewFig, mempoolFig), h("h2", {}, "View changes"), changesBox);
    const draw = (data) => {
      const s = data.status;
      statusBox.replaceChildren(h("div", { class: "tiles" }, tile("height", s.height), tile("view", s.view ?? "—"), tile("primary", s.primary ?? "observer"),
        tile("state", s.consensusState), tile("peers", s.peers.join(", ") || "none"), tile("mempool", s.mempool),
        tile("synchronous group", (data.blocks.at(-1)?.signers || []).map((i) => s.bookkeepers[i]?.name ?? i).join(", ") || "—"),
        ...(data.metrics ? [tile("view changes entered", data.metrics.viewChanges ?? "—", "m-view-changes"), tile("suspicions raised", data.metrics.suspects ?? "—"),
          tile("mean commit latency", meanLatency(data.metrics) === null ? "—" : meanLatency(data.metrics) + " ms"),
          tile("longest loop stall", data.metrics.loopStallMaxS === undefined ? "—" : Math.round(data.metrics.loopStallMaxS * 1000) + " ms")] : [])));
      const blocks = data.blocks;
      chart(intervalFig, blocks.slice(1).map((b, i) => ({ x: b.number, y: b.timestampMs - blocks[i].timestampMs })), "ms");
      chart(viewFig, blocks.map((b) => ({ x: b.number, y: b.view })), "view");
      chart(latencyFig, app.latency, "ms");
      chart(mempoolFig, app.mempool, "txs");
      chart(commitFig, app.commit, "ms");
      changesBox.replaceChildren(table("in the last " + blocks.length + " blocks", ["at block", "from view", "to view"],
        data.viewChanges.map((c) => [blockLink(c.number), c.from, c.to])));
    };
    draw(d);
    return {
      async onHead(head) {
        const data = await api("consensus?limit=120&after=" + head.number);
        app.mempool.push({ x: head.number, y: data.status.mempool });
        const mean = data.metrics ? meanLatency(data.metrics) : null;
        if (mean !== null) app.commit.push({ x: head.number, y: mean });
        for (const list of [app.mempool, app.commit]) while (list.length > CHART_POINTS_MAX) list.shift();
        draw(data);
      },
    };
  },
};

// pieces ---------------------------------------------------------------------------------
function meanLatency(m) {
  return m.commitLatencyCount ? Math.round((m.commitLatencySum / m.commitLatencyCount) * 1000) : null;
}
function blockRow(b) {
  const signers = (b.commit?.votes || []).map((v) => v.replica).join(", ");
  return h("tr", { "data-number": b.number }, h("td", {}, blockLink(b.number)), h("td", {}, mono(short(b.hash))), h("td", {}, when(b.timestamp_ms)),
    h("td", {}, b.view), h("td", {}, b.proposer), h("td", {}, b.tx_count), h("td", {}, signers || "—"));
}
function statusBadge(status, error) {
  return status === 1 ? h("span", { class: "ok" }, "success") : h("span", { class: "bad" }, "reverted" + (error ? ": " + error : ""));
}
function eventsTable(events) {
  return table(events.length + " events", ["block", "transaction", "contract", "event", "fields"],
    events.map((e) => [blockLink(e.block), txLink(e.tx_hash), e.contract, e.name, fieldsView(e.fields)]));
}
function fieldsView(fields) {
  return h("dl", { class: "kv" }, Object.entries(fields).flatMap(([k, v]) => [h("dt", {}, k),
    h("dd", {}, typeof v === "string" && /^0x[0-9a-f]{40}$/.test(v) ? addr(v) : mono(typeof v === "string" ? short(v, 18) : JSON.stringify(v)))]));
}
function pager(rows, load) {
  if (!rows.length) return h("div", {});
  let oldest = rows[rows.length - 1].number;
  return h("div", { class: "pager" }, h("button", { type: "button", class: "secondary", onclick: async (e) => {
    const before = oldest;
    await load(before);
    const shown = document.querySelectorAll("main tbody tr[data-number]");
    if (shown.length) oldest = Number(shown[shown.length - 1].dataset.number);
    e.target.focus();
  } }, "Older"));
}
function requestRow(r) {
  return h("tr", { "data-number": r.id }, h("td", {}, link("#/auction/" + r.id, "#" + r.id, "request " + r.id)), h("td", {}, addr(r.device)), h("td", {}, r.device_type),
    h("td", {}, r.in_warranty ? "in" : "out"), h("td", {}, r.status), h("td", {}, addr(r.node)), h("td", {}, r.price ?? "—"), h("td", {}, blockLink(r.opened_block)));
}
function requestsTable(rows) {
  return h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, ["request", "device", "type", "warranty", "status", "node", "price", "opened"].map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.map(requestRow))));
}
function ruleText(r) {
  const [trigger, metric, op, threshold, action, target, amount] = r;
  const when_ = trigger === "report" ? "when " + metric + " " + op + " " + threshold : "at " + trigger + " " + threshold;
  return when_ + ": " + action + " " + target + (action === "set_limit" ? " = " + amount : "");
}
const EVENT_TEXT = {
  RequestOpened: (f) => "opened by " + named(f.payer) + (f.in_warranty ? " (in warranty)" : " (out of warranty: sealed-bid auction)"),
  BidCommitted: (f) => "sealed commit by " + named(f.bidder),
  BidRequoted: (f) => "re-quoted (still sealed) by " + named(f.bidder),
  BidWithdrawn: (f) => "withdrawn by " + named(f.bidder),
  BidRevealed: (f) => "reveal by " + named(f.bidder) + ": P = " + f.price + ", Cred = " + fixed(f.credit) + (f.valid ? "" : " — invalid: " + f.reason),
  AuctionClosed: (f) => (f.winner ? "closed: winner " + named(f.winner) + " at " + f.price : "closed without a valid bid"),
  Assigned: (f) => "assigned to " + named(f.node) + " at price " + f.price,
  DepositForfeited: (f) => "deposit of " + short(f.party) + " forfeited to " + short(f.to) + " (" + (f.reason || "default") + ")",
  ModeChosen: (f) => "mode " + f.mode,
  MessageLogged: (f) => "sealed message of step " + f.step + " logged by " + short(f.sender),
  ServiceReported: () => "node reported the service done",
  ServiceCompleted: (f) => "completed; " + named(f.node) + " paid " + f.price,
  Paid: (f) => "paid " + f.amount + " to " + short(f.to),
  Defaulted: (f) => "defaulted: " + (f.party ? short(f.party) : "nobody") + " (" + f.reason + ")",
  Rated: (f) => named(f.rater) + " rated " + named(f.ratee) + " " + f.rating + (f.counted ? "" : " (not counted)"),
  RatingIgnored: (f) => "rating of " + short(f.ratee) + " ignored: " + f.reason,
  Disputed: (f) => "disputed by " + short(f.by),
  Resolved: (f) => "resolved: " + f.at_fault + " at fault",
};
function auctionView(d) {
  const r = d.request;
  const out = [h("h1", {}, "Request #" + r.id + (r.in_warranty ? " (in warranty)" : " — sealed-bid auction")),
    kv([["device", addr(r.device)], ["type", r.device_type], ["status", h("span", { id: "auction-status" }, d.state ? d.state[4] : r.status)],
      ["assigned node", addr(r.node)], ["price", r.price ?? "—"], ["escrowed now", d.state ? d.state[10] : "—"],
      ["price range (P_min, P_max)", d.terms ? "(" + d.terms[0] + ", " + d.terms[1] + ")" : "—"],
      ["deposits", d.terms ? "request " + d.terms[2] + ", bid " + d.terms[3] : "—"]]),
    h("h2", {}, "Timeline"),
    h("ol", { class: "timeline", id: "timeline" }, d.timeline.map((e) => h("li", {},
      h("strong", {}, e.name), " — ", (EVENT_TEXT[e.name] || (() => ""))(e.fields), " ", h("span", { class: "muted" }, "block "), blockLink(e.block), " ", txLink(e.tx_hash))))];
  const a = d.analysis;
  if (a) {
    out.push(h("h2", {}, "k-means classes (collusion check, steps a–d)"),
      kMeansChart(a), kv([["centroids", a.centroids.map((c) => fixed(c)).join(", ")], ["mean of centres", fixed(a.meanOfCentres)],
        ["suspect bidders", a.suspects.length ? a.suspects.map(short).join(", ") : "none"]]),
      h("h2", {}, "Ranking O_i = P_i − d_i (eq. 12)"),
      table("lowest O_i wins (ties: lower P_i, then earlier commit)", ["bidder", "P_i", "coupon d_i carried in", "O_i", ""],
        [...a.ranking].sort((x, y) => x.o - y.o).map((x) => [addr(x.bidder), x.price, fixed(x.coupon), fixed(x.o),
          x.bidder === a.winner ? h("span", { class: "ok", id: "winner" }, "winner at " + a.price) : ""])),
      h("h2", {}, "Coupons and suspect indexes (eqs. 10-11)"),
      table("before and after this auction", ["bidder", "w before", "w after", "suspect count after", "d before", "d after"],
        a.states.map((s) => [addr(s.bidder), s.before.w, s.after.w, s.after.suspect_count, fixed(s.before.d), fixed(s.after.d)])));
  }
  const ESCROW = { EscrowLocked: "locked", EscrowPaid: "paid", EscrowReleased: "returned", EscrowForfeited: "forfeited" };
  // the close pays the payment escrow's surplus over the price (P_max - price) back to the payer:
  // a payment in the token's terms, a refund in the owner's
  const opened = d.timeline.find((e) => e.name === "RequestOpened");
  const move = (e) => (e.name === "EscrowPaid" && opened && e.fields.to === opened.fields.payer ? "surplus returned" : ESCROW[e.name] || e.name);
  out.push(h("h2", {}, "Deposits and payment"),
    h("div", { id: "settlement" }, table("every escrow move of this request's transactions", ["block", "transaction", "move", "owner", "to", "amount"],
      d.settlement.map((e) => [blockLink(e.block), txLink(e.tx_hash), move(e), addr(e.fields.owner),
        addr(e.fields.to || (e.name === "EscrowReleased" ? e.fields.owner : null)), e.fields.amount]))));
  return out;
}
function kMeansChart(a) {
  const W = 560, H = 90, pad = 24;
  const prices = a.bids.filter((b) => b.valid).map((b) => b.price * SCALE);
  const all = [...prices, ...a.centroids];
  const lo = Math.min(...all), hi = Math.max(...all);
  const x = (v) => pad + ((v - lo) / (hi - lo || 1)) * (W - 2 * pad);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Revealed prices on a line, coloured by k-means class, with the centroids and the mean of centres");
  const colours = ["#0b5394", "#a40e26", "#116329", "#7a4d00", "#5b2a86"];
  const add = (tag, attrs, text) => { const el = document.createElementNS(svg.namespaceURI, tag); for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v); if (text) el.textContent = text; svg.append(el); };
  add("line", { x1: pad, x2: W - pad, y1: 45, y2: 45, stroke: "#8c959f" });
  a.bids.filter((b) => b.valid).forEach((b) => add("circle", { cx: x(b.price * SCALE), cy: 45, r: 6, fill: colours[b.class % colours.length], stroke: b.suspect ? "#000" : "none", "stroke-width": 2 }));
  a.centroids.forEach((c, i) => { add("line", { x1: x(c), x2: x(c), y1: 25, y2: 65, stroke: colours[i % colours.length], "stroke-dasharray": "3 2" }); add("text", { x: x(c) - 10, y: 20 }, "c" + (i + 1) + " " + fixed(c, 0)); });
  if (a.meanOfCentres !== null) { add("line", { x1: x(a.meanOfCentres), x2: x(a.meanOfCentres), y1: 30, y2: 80, stroke: "#000" }); add("text", { x: x(a.meanOfCentres) - 20, y: 88 }, "mean " + fixed(a.meanOfCentres, 1)); }
  return h("figure", {}, h("figcaption", {}, "Prices (dots, black ring = suspect), centroids (dashed) and the mean of centres (solid)"), svg);
}
function creditView(c) {
  return h("div", {}, kv([["credit (eq. 9)", fixed(c.credit)], ["ratings (last " + c.historyMax + ", oldest first)", c.ratings.join(", ") || "none (initial credit " + c.creditInitial + ")"],
    ["α", c.alphaPercent + " %: n_c = ⌊α/100 · n/2⌋ = " + c.cutEachEnd + " cut from each end (eq. 8)"],
    ["cut low", c.cutLow.join(", ") || "—"], ["cut high", c.cutHigh.join(", ") || "—"], ["averaged", c.kept.join(", ") || "—"]]),
  table("rating events", ["block", "event", "fields"], c.updates.map((e) => [blockLink(e.block), e.name, fieldsView(e.fields)])));
}
function proofForm(txHash) {
  const input = h("input", { id: "header-rpc", name: "header-rpc", placeholder: "http://127.0.0.1:8546", size: 30 });
  app.status.then((status) => { if (!input.value) input.value = status.headerRpc; });
  const kind = h("select", { id: "proof-kind", name: "proof-kind" }, h("option", { value: "tx" }, "transaction"), h("option", { value: "receipt" }, "receipt"));
  return h("form", { class: "stack", onsubmit: async (e) => {
    e.preventDefault();
    const box = document.getElementById("proof");
    box.replaceChildren(h("p", { class: "muted" }, "checking…"));
    try {
      const proof = await api("proof/" + kind.value + "/" + txHash);
      const other = input.value.replace(/\/$/, "");
      const response = await fetch(other + "/explorer/api/header/" + proof.blockNumber);
      if (!response.ok) throw new Error("the other node answered " + response.status);
      const block = await response.json();
      const result = Verify.checkProof(proof, block, txHash);
      box.replaceChildren(h("p", { id: "proof-result", class: result.ok ? "ok" : "bad", role: "status" },
        result.ok ? "Proof verified" : "Proof NOT verified"),
      h("ul", {}, result.steps.map((s) => h("li", {}, h("span", { class: s.ok ? "ok" : "bad" }, s.ok ? "✓ " : "✗ "), s.what))),
      h("p", { class: "muted" }, "Header from " + other + ", certified by replicas " + (block.commit?.votes || []).map((v) => v.replica).join(", ") +
        " (signatures are checked by the agents' light client, not in the browser)."));
    } catch (err) {
      box.replaceChildren(h("p", { id: "proof-result", class: "bad", role: "alert" }, "Proof NOT verified: " + err.message));
    }
  } }, h("label", { for: "header-rpc" }, "Other node (fetch the header from)"), input,
  h("label", { for: "proof-kind" }, "Prove the"), kind, h("button", { type: "submit", id: "check-proof" }, "Check proof"));
}
function chart(figure, points, unit) {
  figure.querySelector("svg")?.remove();
  const W = 320, H = 120, pad = 28;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  svg.setAttribute("role", "img");
  const last = points.at(-1);
  svg.setAttribute("aria-label", figure.querySelector("figcaption").textContent + (last ? ": latest " + last.y + " " + unit + " at block " + last.x : ": no data yet"));
  const add = (tag, attrs, text) => { const el = document.createElementNS(svg.namespaceURI, tag); for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v); if (text !== undefined) el.textContent = text; svg.append(el); };
  add("line", { x1: pad, x2: W - 4, y1: H - 16, y2: H - 16, stroke: "#8c959f" });
  if (points.length) {
    const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y1 = Math.max(1, ...ys);
    const px = (v) => pad + ((v - x0) / (x1 - x0 || 1)) * (W - pad - 6);
    const py = (v) => H - 16 - (v / y1) * (H - 30);
    add("polyline", { fill: "none", stroke: "#0b5394", "stroke-width": 2, points: points.map((p) => px(p.x) + "," + py(p.y)).join(" ") });
    add("text", { x: 2, y: 12 }, y1 + " " + unit);
    add("text", { x: pad, y: H - 3 }, "#" + x0);
    add("text", { x: W - 40, y: H - 3 }, "#" + x1);
  }
  figure.append(svg);
}

// routing ---------------------------------------------------------------------------------
async function route() {
  const [, name, arg] = location.hash.replace(/^#\/?/, "/").split("/");
  const page = { "": "home", block: "block", tx: "tx", address: "address", auctions: "auctions", auction: "auction",
    consortium: "consortium", policies: "policies", consensus: "consensus" }[name || ""];
  for (const a of document.querySelectorAll("nav a")) a.toggleAttribute("aria-current", a.getAttribute("href") === "#/" + (name === "auction" ? "auctions" : name || ""));
  document.querySelectorAll("nav a[aria-current]").forEach((a) => a.setAttribute("aria-current", "page"));
  app.page = null;
  app.route += 1;
  if (!page) { fail(new Error("no page " + location.hash)); return; }
  show(h("p", { class: "muted", role: "status" }, "loading…")); // the previous page's content is gone at once
  try {
    app.page = (await pages[page](decodeURIComponent(arg || ""))) || null;
    // first meaningful render: the page's data is on screen (read by the browser tests)
    if (!performance.getEntriesByName("rendered").length) performance.mark("rendered");
    document.title = document.querySelector("main h1")?.textContent + " · gridchain explorer";
  } catch (err) { fail(err); }
}

function showIndexState(status) {
  document.getElementById("index-state").textContent = status.index.blocks + " blocks, " + status.index.transactions + " transactions";
}

async function search(event) {
  event.preventDefault();
  const q = document.getElementById("q").value.trim();
  try {
    const hit = await api("search?q=" + encodeURIComponent(q));
    location.hash = "#/" + hit.kind + "/" + hit.id;
  } catch (err) { fail(err); }
  document.getElementById("main").focus();
}

async function start() {
  document.getElementById("search").addEventListener("submit", search);
  window.addEventListener("hashchange", route);
  app.status = api("status"); // a promise: the pages do not wait for it
  app.status.then((status) => {
    document.getElementById("chain-name").textContent = "chain " + status.chain.chainId + " · node " + status.chain.name;
    showIndexState(status);
  }, (err) => setLive("the node does not answer: " + err.message));
  try { app.labels = await api("labels"); } catch (err) { app.labels = {}; } // unnamed addresses still show
  await route();
  connect();
}
document.addEventListener("DOMContentLoaded", start);
