// The owner's phone app: talks only to its own agent (/app/api/, with the app token from
// the URL fragment); the agent proves what it shows and signs what the owner asks.
// Values from the chain go into the page as text only.
"use strict";

const FEED_POLL_MS = 1000;
const state = { token: "", events: 0, messages: 0, devices: [], seen: 0 };
const TRIGGERS = ["report", "time", "height"], OPS = [">", ">=", "<", "<=", "=="], ACTIONS = ["set_mode", "set_limit", "notify"];

// h and short: the explorer's dom.js (served here too)
const when = (ms) => new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
const proven = (p) => h("span", { class: "ok" }, "✓ proven at block #" + p.block);

async function api(path, body) {
  const response = await fetch("/app/api/" + path, body === undefined ? { headers: { "X-App-Token": state.token } }
    : { method: "POST", headers: { "X-App-Token": state.token, "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}
const live = (text) => { document.getElementById("live").textContent = text; };

async function overview() {
  const o = await api("overview");
  state.devices = o.devices;
  document.getElementById("who").textContent = o.name + " · " + short(o.phone);
  document.getElementById("device-list").replaceChildren(...(o.devices.length ? o.devices.map((d) =>
    h("article", { class: "tile", "data-device": d.address },
      h("h3", {}, d.deviceType + " " + short(d.address)),
      h("dl", { class: "kv" },
        h("dt", {}, "vendor"), h("dd", {}, short(d.vendor)),
        h("dt", {}, "warranty"), h("dd", {}, d.inWarranty ? h("span", { class: "ok" }, "in warranty") : h("span", { class: "warn" }, "out of warranty"),
          " until ", when(d.warrantyEndS * 1000)),
        h("dt", {}, "mode"), h("dd", { class: "mode" }, d.mode),
        h("dt", {}, "limits"), h("dd", {}, d.limits.map((l) => l[0] + " ≤ " + l[1]).join(", ") || "none"),
        h("dt", {}, "policy"), h("dd", {}, d.policyVersion ? "version " + d.policyVersion + ", " + d.rules.length + " rules" : "none"),
        h("dt", {}, "record"), h("dd", {}, proven(d.proven)))))
    : [h("p", { class: "muted" }, "No device is bound to this smartphone yet.")]));
  const select = document.getElementById("policy-device");
  const chosen = select.value;
  select.replaceChildren(...o.devices.map((d) => h("option", { value: d.address }, d.deviceType + " " + short(d.address))));
  if (chosen) select.value = chosen;
  if (!document.querySelector("#rules .rule")) (o.rules.length ? o.rules : [["report", "power_w", ">=", 1500, "set_mode", "power-saving", 0]]).forEach(addRule);
}

async function loadHistory() {
  const data = await api("history");
  document.getElementById("records").replaceChildren(...data.devices.map((d) => h("div", { class: "scroll" },
    h("table", {}, h("caption", { class: "muted", style: "text-align:left" }, short(d.device) + ": " + d.count + " services"),
      h("thead", {}, h("tr", {}, ["request", "node", "mode", "price", "your rating", "node's rating", "proof"].map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, d.records.length ? d.records.map((r) => h("tr", { "data-request": r.request },
        h("td", {}, "#" + r.request), h("td", {}, short(r.node)), h("td", {}, r.mode), h("td", {}, r.price),
        h("td", {}, r.ratingByRequester >= 0 ? String(r.ratingByRequester) : rateForm(r.request)),
        h("td", {}, r.ratingByNode >= 0 ? String(r.ratingByNode) : "—"), h("td", {}, proven(r.proven))))
        : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "no service yet")))))));
}

function rateForm(request) {
  const id = "rate-" + request;
  const input = h("input", { id, type: "number", min: 0, max: 100, value: 90, size: 4 });
  return h("form", { class: "rate", onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api("rate", { request, rating: Number(input.value) });
      live("rating sent for request #" + request);
      await loadHistory();
    } catch (err) { live("rating refused: " + err.message); }
  } }, h("label", { for: id }, "Rate #" + request + " (0-100) "), input, " ", h("button", { type: "submit" }, "Rate"));
}

let ruleCount = 0;
function addRule(rule) {
  ruleCount += 1;
  const n = ruleCount;
  const [trigger, metric, op, threshold, action, target, amount] = Array.isArray(rule) ? rule : ["report", "power_w", ">=", 1500, "set_mode", "power-saving", 0];
  const field = (label, el) => h("span", { class: "field" }, h("label", { for: el.id }, label), " ", el);
  const select = (name, options, value) => h("select", { id: name + "-" + n, name }, options.map((o) => h("option", { value: o, selected: o === value }, o)));
  const input = (name, value, type) => h("input", { id: name + "-" + n, name, value, type: type || "text", size: type === "number" ? 7 : 12 });
  const row = h("div", { class: "rule" },
    field("Trigger", select("trigger", TRIGGERS, trigger)), field("Metric", input("metric", metric)), field("Test", select("op", OPS, op)),
    field("Threshold", input("threshold", threshold, "number")), field("Action", select("action", ACTIONS, action)),
    field("Target", input("target", target)), field("Amount", input("amount", amount, "number")),
    h("button", { type: "button", class: "secondary", onclick: () => row.remove() }, "Remove rule " + n));
  document.getElementById("rules").append(row);
}

async function publish(event) {
  event.preventDefault();
  const rules = Array.from(document.querySelectorAll("#rules .rule")).map((row) => {
    const v = (name) => row.querySelector("[name=" + name + "]").value;
    return [v("trigger"), v("metric"), v("op"), Number(v("threshold")), v("action"), v("target"), Number(v("amount"))];
  });
  const result = document.getElementById("policy-result");
  try {
    const answer = await api("policy", { device: document.getElementById("policy-device").value, rules });
    const published = answer.events.find((e) => e.name === "PolicyPublished");
    result.className = "ok";
    result.textContent = "Published version " + published.fields.version + " in block #" + answer.block;
    await overview();
  } catch (err) { result.className = "bad"; result.textContent = "Not published: " + err.message; }
}

const TEXT = {
  RequestOpened: (f) => "a maintenance request was opened" + (f.in_warranty ? " (in warranty)" : " (out of warranty: an auction)"),
  AuctionClosed: (f) => (f.winner ? "auction closed: " + short(f.winner) + " serves at " + f.price : "auction closed without a valid bid"),
  Assigned: (f) => "assigned to " + short(f.node),
  ModeChosen: (f) => "maintenance mode: " + f.mode,
  ServiceReported: () => "the node reported the service done",
  ServiceCompleted: (f) => "service completed (" + f.mode + ")",
  Rated: (f) => short(f.rater) + " rated " + f.rating,
  BidCommitted: () => "a sealed bid arrived",
  BidRevealed: (f) => "a bid was revealed: " + f.price + (f.valid ? "" : " (invalid: " + f.reason + ")"),
  Paid: (f) => "paid " + f.amount + " to " + short(f.to),
  // the failure paths: what the owner most needs to hear about
  Defaulted: (f) => "the request ended in default: " + (f.party ? short(f.party) + " at fault" : "nobody proven at fault") + " (" + f.reason + ")",
  DepositForfeited: (f) => "deposit of " + short(f.party) + " forfeited to " + short(f.to) + " (" + (f.reason || "default") + ")",
  Disputed: () => "the node's report was disputed",
  Resolved: (f) => "dispute resolved: " + f.at_fault + " at fault",
  PolicyExecuted: (f) => "your policy fired: rule " + f.rule + " (" + f.trigger + " " + f.trigger_value + ") → " + f.action + " " + f.target,
  diagnosis_notice: () => "diagnosis notice from your device: a crew will come on site",
  maintenance_report: () => "maintenance report from your device",
  package: () => "your device sent the service package (maintenance info, ratings, completion)",
};
function feedItem(e) {
  const text = (TEXT[e.name] || (() => e.name))(e.fields || {});
  const where = e.source === "chain" ? "block #" + e.block : "sealed message, " + when(e.atMs);
  const request = e.fields?.request ?? e.request;
  return h("li", { class: "new", "data-name": e.name }, h("strong", {}, text), " ", h("span", { class: "muted" }, (request !== undefined ? "request #" + request + " · " : "") + where));
}

async function poll() {
  try {
    const data = await api("feed?events=" + state.events + "&messages=" + state.messages);
    state.events = data.events;
    state.messages = data.messages;
    const feed = document.getElementById("feed");
    for (const e of data.entries) {
      feed.prepend(feedItem(e));
      if (e.name === "PolicyExecuted") document.getElementById("fired").prepend(feedItem(e));
    }
    if (data.entries.length) {
      live(data.entries.length + " new notification(s)");
      if (data.entries.some((e) => ["ServiceCompleted", "Rated", "PolicyExecuted", "PolicyPublished", "package", "maintenance_report"].includes(e.name))) {
        await Promise.all([overview(), loadHistory()]);
      }
    } else if (!state.seen) live("connected: notifications appear here as they arrive");
    state.seen += 1;
  } catch (err) { live("the agent does not answer: " + err.message); }
  setTimeout(poll, FEED_POLL_MS);
}

async function start() {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromUrl) { sessionStorage.setItem("app-token", fromUrl); dropTokenFromAddress(); }
  state.token = sessionStorage.getItem("app-token") || "";
  document.getElementById("add-rule").addEventListener("click", () => addRule());
  document.getElementById("policy-form").addEventListener("submit", publish);
  try { await Promise.all([overview(), loadHistory()]); } catch (err) { live("the agent refused: " + err.message); }
  poll();
}
function dropTokenFromAddress() { window.history.replaceState(null, "", location.pathname); } // the token leaves the address bar
document.addEventListener("DOMContentLoaded", start);
