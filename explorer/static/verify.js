// Proof checks done by the browser itself, trusting no server: keccak256 (js-sha3), RLP
// decoding and Merkle-Patricia proofs (the trie package's HexaryTrie, architecture
// decision 2), the last two after the Ethereum yellow paper, appendices B (RLP) and D
// (hex-prefix, trie).
"use strict";

const Verify = (() => {
  // keccak256 (Ethereum's, the original 0x01 padding) from js-sha3 0.9.3, vendored beside
  // this file from the npm registry (MIT, js-sha3-0.9.3.LICENSE.txt): a well-kept library,
  // not a hand-rolled primitive.
  function keccak256(bytes) {
    return new Uint8Array(window.keccak256.arrayBuffer(bytes));
  }

  function fromHex(hex) {
    const clean = hex.startsWith("0x") ? hex.slice(2) : hex;
    if (clean.length % 2 || /[^0-9a-fA-F]/.test(clean)) throw new Error("not hex: " + hex.slice(0, 20));
    const out = new Uint8Array(clean.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.substr(2 * i, 2), 16);
    return out;
  }
  const toHex = (bytes) => "0x" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const equal = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

  function rlpDecode(bytes) { // strict: the whole input is one item
    function item(pos) {
      const p = bytes[pos];
      if (p === undefined) throw new Error("rlp: truncated");
      const take = (start, len) => {
        if (start + len > bytes.length) throw new Error("rlp: truncated");
        return [start, len];
      };
      const lengthOf = (start, n) => {
        let len = 0;
        for (let i = 0; i < n; i++) len = len * 256 + bytes[start + i];
        return len;
      };
      if (p < 0x80) return [bytes.slice(pos, pos + 1), pos + 1];
      if (p < 0xb8) { const [s, l] = take(pos + 1, p - 0x80); return [bytes.slice(s, s + l), s + l]; }
      if (p < 0xc0) { const n = p - 0xb7; const [s, l] = take(pos + 1 + n, lengthOf(pos + 1, n)); return [bytes.slice(s, s + l), s + l]; }
      let start, len;
      if (p < 0xf8) [start, len] = take(pos + 1, p - 0xc0);
      else { const n = p - 0xf7; [start, len] = take(pos + 1 + n, lengthOf(pos + 1, n)); }
      const items = [];
      let at = start;
      while (at < start + len) { const [value, next] = item(at); items.push(value); at = next; }
      if (at !== start + len) throw new Error("rlp: list length mismatch");
      return [items, start + len];
    }
    const [value, end] = item(0);
    if (end !== bytes.length) throw new Error("rlp: trailing bytes");
    return value;
  }

  const nibbles = (bytes) => Array.from(bytes).flatMap((b) => [b >> 4, b & 15]);

  // HexaryTrie.get_from_proof: walk from `root` along `key`, each node found by its hash
  // among the proof's nodes (or inline when its rlp is shorter than 32 bytes).
  function trieGet(root, key, proofNodes) {
    const byHash = new Map(proofNodes.map((raw) => [toHex(keccak256(raw)), raw]));
    let path = nibbles(key);
    let ref = root;
    for (let depth = 0; depth < 64; depth++) {
      let node;
      if (ref instanceof Uint8Array) {
        if (ref.length === 0) return null;
        const raw = byHash.get(toHex(ref));
        if (raw === undefined) throw new Error("proof lacks the node " + toHex(ref).slice(0, 18) + "…");
        node = rlpDecode(raw);
      } else node = ref; // embedded node
      if (node.length === 17) {
        if (path.length === 0) return node[16].length ? node[16] : null;
        ref = node[path[0]];
        path = path.slice(1);
      } else if (node.length === 2) {
        const encoded = nibbles(node[0]);
        const flag = encoded[0];
        const part = encoded.slice(flag & 1 ? 1 : 2);
        const leaf = flag >= 2;
        const prefix = path.slice(0, part.length);
        if (prefix.length !== part.length || !prefix.every((n, i) => n === part[i])) return null;
        path = path.slice(part.length);
        if (leaf) return path.length === 0 ? node[1] : null;
        ref = node[1];
      } else throw new Error("proof node with " + node.length + " items");
    }
    throw new Error("proof deeper than any key");
  }

  const HEADER_ROOTS = { state: 5, transaction: 6, receipt: 7 }; // BlockHeader fields (chain/types.py)

  // A proof (proof_tx / proof_receipt reply) checked against a block from another node:
  // that block's header hashes to its hash, the proof names the same block, the value is
  // in that header's trie under the key, and a transaction's value hashes to its hash.
  function checkProof(proof, otherBlock, txHash) {
    const steps = [];
    const step = (what, ok) => { steps.push({ what, ok }); return ok; };
    const rawHeader = fromHex(otherBlock.rawHeader);
    const headerHash = toHex(keccak256(rawHeader));
    step("keccak256(header from the other node) = its block hash " + headerHash.slice(0, 18) + "…",
         headerHash === otherBlock.hash.toLowerCase());
    step("the proof is for that block (" + proof.blockHash.slice(0, 18) + "…)", proof.blockHash.toLowerCase() === headerHash);
    const fields = rlpDecode(rawHeader);
    const root = fields[HEADER_ROOTS[proof.kind]];
    step(proof.kind + " root in that header = the proof's root " + toHex(root).slice(0, 18) + "…",
         toHex(root) === proof.root.toLowerCase());
    let value = null;
    try {
      value = trieGet(root, fromHex(proof.key), proof.proof.map(fromHex));
    } catch (err) {
      step("Merkle path: " + err.message, false);
    }
    if (value !== null) {
      step("Merkle path from the root reaches the value (" + proof.proof.length + " nodes)",
           equal(value, fromHex(proof.value)));
      if (proof.kind === "transaction" && txHash) {
        step("keccak256(proven transaction) = the transaction hash", toHex(keccak256(value)) === txHash.toLowerCase());
      }
    } else if (steps.every((s) => s.ok)) step("Merkle path reaches the value", false);
    return { ok: steps.every((s) => s.ok), steps };
  }

  return { keccak256, fromHex, toHex, rlpDecode, trieGet, checkProof };
})();
