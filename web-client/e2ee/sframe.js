// SFrame (RFC 9605) for Hearth's media frames: key and salt derivation, the KID/CTR header,
// and AES-GCM through WebCrypto, with cipher suite AES_128_GCM_SHA256_128 (0x0004).
//
// Used by the page (key manager) and by the frame worker alike, so it touches no DOM and no
// state: functions of their inputs only. The RFC's own test vectors drive it in
// tests/suite/browser_e2ee.rs.
//
// On the wire a Hearth frame is NOT the RFC's layout, because browsers still packetize with the
// codec's packetizer and the SFU reads the first codec bytes (VP8 keyframe bit and size):
//
//   clear codec bytes ‖ AES-GCM ciphertext + 16-byte tag ‖ SFrame header ‖ 1 byte: header length
//
// The cryptography is exactly RFC 9605's with the clear bytes as its "metadata": AAD is
// header ‖ clear bytes, so nobody can alter what the SFU reads without the frame failing.
// How many bytes stay clear follows from the codec and the bitstream (never from the
// encoder's frame type, which engines fill in differently): VP8 keeps its 10-byte keyframe
// header (frame tag, start code, size) or the 3-byte frame tag of a delta frame, Opus its TOC.

export const SUITE = 0x0004; // AES_128_GCM_SHA256_128
const NK = 16;
const NN = 12;
const TAG = 16;
const enc = new TextEncoder();

// ---------------------------------------------------------------------------------------
// The header (RFC 9605 §4.3): config byte X|K|Y|C, then KID and CTR as minimal big-endian
// integers. Values are BigInts so counters up to 2^64 - 1 round-trip exactly.

function minimalBytes(value) {
  const out = [];
  let v = BigInt(value);
  do {
    out.unshift(Number(v & 0xffn));
    v >>= 8n;
  } while (v > 0n);
  return out;
}

export function encodeHeader(kid, ctr) {
  const k = BigInt(kid);
  const c = BigInt(ctr);
  if (k < 0n || c < 0n || k >= 1n << 64n || c >= 1n << 64n) throw new RangeError('KID and CTR are 64-bit unsigned');
  const bytes = [0];
  if (k < 8n) bytes[0] |= Number(k) << 4;
  else {
    const kb = minimalBytes(k);
    bytes[0] |= 0x80 | ((kb.length - 1) << 4);
    bytes.push(...kb);
  }
  if (c < 8n) bytes[0] |= Number(c);
  else {
    const cb = minimalBytes(c);
    bytes[0] |= 0x08 | (cb.length - 1);
    bytes.push(...cb);
  }
  return Uint8Array.from(bytes);
}

/** Reads a header at `offset`: { kid, ctr, length }, or null when the bytes cannot be one. */
export function decodeHeader(bytes, offset = 0) {
  if (offset >= bytes.length) return null;
  const config = bytes[offset];
  let at = offset + 1;
  const readInt = (len) => {
    if (at + len > bytes.length) return null;
    let v = 0n;
    for (let i = 0; i < len; i += 1) v = (v << 8n) | BigInt(bytes[at + i]);
    at += len;
    return v;
  };
  const kid = config & 0x80 ? readInt(((config >> 4) & 0x07) + 1) : BigInt((config >> 4) & 0x07);
  if (kid === null) return null;
  const ctr = config & 0x08 ? readInt((config & 0x07) + 1) : BigInt(config & 0x07);
  if (ctr === null) return null;
  return { kid, ctr, length: at - offset };
}

// ---------------------------------------------------------------------------------------
// Keys (RFC 9605 §4.4.2).

function label(text, kid) {
  const head = enc.encode(text);
  const out = new Uint8Array(head.length + 8 + 2);
  out.set(head, 0);
  new DataView(out.buffer).setBigUint64(head.length, BigInt(kid));
  new DataView(out.buffer).setUint16(head.length + 8, SUITE);
  return out;
}

async function hkdf(ikm, info, bytes) {
  const key = ikm instanceof CryptoKey ? ikm : await crypto.subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  // HKDF-Extract with an empty salt, then HKDF-Expand with `info` (RFC 5869).
  const bits = await crypto.subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info }, key, bytes * 8);
  return new Uint8Array(bits);
}

/**
 * sframe_key and sframe_salt for `kid` from `baseKey` (raw bytes or an HKDF CryptoKey).
 * `exportable` keeps the raw key bytes in the result (tests compare them with the RFC's).
 */
export async function deriveKeys(baseKey, kid, { exportable = false } = {}) {
  const raw = await hkdf(baseKey, label('SFrame 1.0 Secret key ', kid), NK);
  const salt = await hkdf(baseKey, label('SFrame 1.0 Secret salt ', kid), NN);
  const key = await crypto.subtle.importKey('raw', raw, 'AES-GCM', false, ['encrypt', 'decrypt']);
  return exportable ? { key, salt, raw } : { key, salt };
}

export function nonceFor(salt, ctr) {
  const nonce = salt.slice();
  let c = BigInt(ctr);
  for (let i = NN - 1; i >= 0 && c > 0n; i -= 1) {
    nonce[i] ^= Number(c & 0xffn);
    c >>= 8n;
  }
  return nonce;
}

/** The bytes of every part, one after another, in one new array. */
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** RFC 9605 §4.4.3: header ‖ AEAD(plaintext, aad = header ‖ metadata). */
export async function sframeEncrypt(keys, kid, ctr, metadata, plaintext) {
  const header = encodeHeader(kid, ctr);
  const ct = await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv: nonceFor(keys.salt, ctr), additionalData: concat(header, metadata), tagLength: TAG * 8 },
    keys.key,
    plaintext,
  );
  return concat(header, new Uint8Array(ct));
}

/** RFC 9605 §4.4.4. `keysFor(kid)` returns the keys or null; throws when the frame does not open. */
export async function sframeDecrypt(keysFor, metadata, sframe) {
  const header = decodeHeader(sframe, 0);
  if (!header) throw new Error('malformed header');
  const keys = await keysFor(header.kid);
  if (!keys) throw new Error('no key');
  const aad = concat(sframe.subarray(0, header.length), metadata);
  const pt = await crypto.subtle.decrypt(
    { name: 'AES-GCM', iv: nonceFor(keys.salt, header.ctr), additionalData: aad, tagLength: TAG * 8 },
    keys.key,
    sframe.subarray(header.length),
  );
  return { kid: header.kid, ctr: header.ctr, plaintext: new Uint8Array(pt) };
}

// ---------------------------------------------------------------------------------------
// Hearth's frame layout (see the top of this file).

/** Bytes kept clear at the front of a frame: Opus TOC, VP8 keyframe header or frame tag. */
export function clearBytes(kind, data) {
  if (kind === 'audio') return 1;
  // VP8 frame tag (RFC 6386 §9.1): bit 0 of byte 0 is 0 on a keyframe.
  return data.length > 0 && (data[0] & 0x01) === 0 ? 10 : 3;
}

/** Encrypts one encoded frame; `data` is a Uint8Array, the result a new one. */
export async function protectFrame(keys, kid, ctr, kind, data) {
  const clear = Math.min(clearBytes(kind, data), data.length);
  const metadata = data.subarray(0, clear);
  const header = encodeHeader(kid, ctr);
  const ct = await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv: nonceFor(keys.salt, ctr), additionalData: concat(header, metadata), tagLength: TAG * 8 },
    keys.key,
    data.subarray(clear),
  );
  return concat(metadata, new Uint8Array(ct), header, Uint8Array.of(header.length));
}

/** Where the parts of a protected frame are, or null if it cannot be one. */
export function parseFrame(kind, data) {
  if (data.length < 2) return null;
  const headerLength = data[data.length - 1];
  if (headerLength < 1 || headerLength > 17) return null;
  const headerAt = data.length - 1 - headerLength;
  const clear = clearBytes(kind, data);
  if (headerAt - clear < TAG) return null;
  const header = decodeHeader(data.subarray(headerAt, data.length - 1), 0);
  if (!header || header.length !== headerLength) return null;
  return { kid: header.kid, ctr: header.ctr, clear, headerAt, headerLength };
}

/** Decrypts a frame `parseFrame` accepted; throws when the tag does not verify. */
export async function openFrame(keys, parsed, data) {
  const header = data.subarray(parsed.headerAt, parsed.headerAt + parsed.headerLength);
  const metadata = data.subarray(0, parsed.clear);
  const pt = await crypto.subtle.decrypt(
    { name: 'AES-GCM', iv: nonceFor(keys.salt, parsed.ctr), additionalData: concat(header, metadata), tagLength: TAG * 8 },
    keys.key,
    data.subarray(parsed.clear, parsed.headerAt),
  );
  return concat(metadata, new Uint8Array(pt));
}

// ---------------------------------------------------------------------------------------
// Hearth's key ids and per-sender base keys. One epoch secret per space and epoch (made by the
// key leader); RFC 9605 forbids two senders sharing a key, so every sender and every kind of
// stream of theirs gets its own base key from it, named by its KID:
//   KID = epoch (16 bits, unique in the session across spaces) ‖ sender index (8) ‖ context (2)

export const CONTEXT = { audio: 0, camera: 1, screen: 2 };

export function makeKid(epoch, senderIndex, context) {
  return (BigInt(epoch & 0xffff) << 10n) | (BigInt(senderIndex & 0xff) << 2n) | BigInt(context & 0x03);
}

export function splitKid(kid) {
  const k = BigInt(kid);
  return { epoch: Number((k >> 10n) & 0xffffn), senderIndex: Number((k >> 2n) & 0xffn), context: Number(k & 0x03n) };
}

/** The base key of one sender's stream kind in an epoch, from the epoch secret (raw or HKDF key). */
export async function senderBaseKey(epochSecret, senderIndex, context) {
  const info = concat(enc.encode('hearth-e2ee/1 sender'), Uint8Array.of(senderIndex & 0xff, context & 0x03));
  return hkdf(epochSecret, info, NK);
}
