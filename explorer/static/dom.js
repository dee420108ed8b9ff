// DOM helpers shared by the explorer (explorer/static/app.js) and the owner's phone app
// (diagnosis/phone_app_static/app.js, which serves this file from here): elements built
// with values as text only (textContent, never HTML), and shortened hashes.
"use strict";

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}
const short = (hex, n = 10) => (typeof hex === "string" && hex.length > n + 6 ? hex.slice(0, n) + "…" + hex.slice(-4) : String(hex ?? ""));
