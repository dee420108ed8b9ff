// Proof checks done by the browser itself, trusting no server: keccak256, RLP decoding
// and Merkle-Patricia proofs (the trie package's HexaryTrie, architecture decision 2).
// Hand-written from the Keccak reference (Bertoni et al., "KeccakF1600onLanes") and the
// Ethereum yellow paper, appendices B (RLP) and D (hex-prefix, trie); no library.
"use strict";

const Verify = (() => {
  const MASK = (1n << 64n) - 1n;
  const rol = (x, n) => (n === 0 ? x : ((x << BigInt(n)) | (x >> BigInt(64 - n))) & MASK);

  function keccakF(lanes) { // lanes[x][y], 24 rounds
    let R = 1;
    for (let round = 0; round < 24; round++) {
      const C = [0, 1, 2, 3, 4].map((x) => lanes[x][0] ^ lanes[x][1] ^ lanes[x][2] ^ lanes[x][3] ^ lanes[x][4]);
      const D = [0, 1, 2, 3, 4].map((x) => C[(x + 4) % 5] ^ rol(C[(x + 1) % 5], 1));
      for (let x = 0; x < 5; x++) for (let y = 0; y < 5; y++) lanes[x][y] ^= D[x];
      let x = 1, y = 0, current = lanes[x][y];
      for (let t = 0; t < 24; t++) {
        [x, y] = [y, (2 * x + 3 * y) % 5];
        [current, lanes[x][y]] = [lanes[x][y], rol(current, ((t + 1) * (t + 2) / 2) % 64)];
      }
      for (let yy = 0; yy < 5; yy++) {
        const T = [0, 1, 2, 3, 4].map((xx) => lanes[xx][yy]);
        for (let xx = 0; xx < 5; xx++) lanes[xx][yy] = T[xx] ^ ((~T[(xx + 1) % 5] & MASK) & T[(xx + 2) % 5]);
      }
      for (let j = 0; j < 7; j++) {
        R = ((R << 1) ^ ((R >> 7) * 0x71)) % 256;
        if (R & 2) lanes[0][0] ^= 1n << BigInt((1 << j) - 1);
      }
    }
  }

  function keccak256(bytes) { // Keccak[r=1088, c=512] with the original 0x01 padding (not SHA-3's 0x06)
    const rate = 136;
    const padded = new Uint8Array(Math.floor(bytes.length / rate) * rate + rate);
    padded.set(bytes);
    padded[bytes.length] ^= 0x01;
    padded[padded.length - 1] ^= 0x80;
    const lanes = [0, 1, 2, 3, 4].map(() => [0n, 0n, 0n, 0n, 0n]);
    for (let off = 0; off < padded.length; off += rate) {
      for (let i = 0; i < rate / 8; i++) {
        let lane = 0n;
        for (let b = 7; b >= 0; b--) lane = (lane << 8n) | BigInt(padded[off + 8 * i + b]);
        lanes[i % 5][Math.floor(i / 5)] ^= lane;
      }
      keccakF(lanes);
    }
    const out = new Uint8Array(32);
    for (let i = 0; i < 4; i++) {
      let lane = lanes[i % 5][Math.floor(i / 5)];
      for (let b = 0; b < 8; b++) { out[8 * i + b] = Number(lane & 0xffn); lane >>= 8n; }
    }
    return out;
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
