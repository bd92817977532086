// The one frame worker: encrypts every frame this page sends and decrypts every frame it
// receives, in an end-to-end encrypted room. It owns the keys it is given (never asks for
// them), the per-key counters, and the counters the tests and the page read; it touches no
// page state and never passes a frame it could not protect (fail closed), unless the page
// says plaintext is allowed (a `preferred` room where someone cannot encrypt).
//
// Frames reach it two ways, both handled by `pump`:
//   - RTCRtpScriptTransform: the browser fires `rtctransform` here with the options the page
//     gave (`op`, `kind`, `context`, `id`);
//   - Chromium's createEncodedStreams: the page transfers the streams in a `stream` message.
// The key of a received frame is chosen by the KID in the frame, never by the transceiver it
// came on (transceivers are reused by the SFU for other people).

import { CONTEXT, makeKid, openFrame, parseFrame, protectFrame, senderBaseKey, splitKid, deriveKeys } from './sframe.js';

let epochs = new Map(); // epoch -> { space, secret (HKDF CryptoKey), members: [participantId] }
let sending = null; // { epoch, index }: the KID epoch and our place in its member list
let allowPlain = false;
const derived = new Map(); // KID (string) -> Promise<{ key, salt }>
const counters = new Map(); // KID (string) -> next CTR
const transforms = new Map(); // id -> stats
const senders = new Map(); // participantId -> { ok, failed, lastStatus }

function keysFor(kid) {
  const name = kid.toString();
  let keys = derived.get(name);
  if (!keys) {
    const { epoch, senderIndex, context } = splitKid(kid);
    const ep = epochs.get(epoch);
    if (!ep || senderIndex >= ep.members.length) return null;
    keys = senderBaseKey(ep.secret, senderIndex, context).then((base) => deriveKeys(base, kid));
    derived.set(name, keys);
  }
  return keys;
}

function statsFor(options) {
  let s = transforms.get(options.id);
  if (!s) {
    s = {
      id: options.id, op: options.op, kind: options.kind, context: options.context, track: options.track || null,
      seen: 0, ok: 0, passed: 0, dropped: {}, times: [],
    };
    transforms.set(options.id, s);
  }
  return s;
}

function drop(s, reason) {
  s.dropped[reason] = (s.dropped[reason] || 0) + 1;
}

function senderStatus(participantId, ok) {
  let st = senders.get(participantId);
  if (!st) {
    st = { ok: 0, failed: 0, status: null };
    senders.set(participantId, st);
  }
  if (ok) st.ok += 1;
  else st.failed += 1;
  // A few failures in a row are in-flight frames across a key change; a run is a problem.
  const status = ok ? 'ok' : (st.failed > 20 && st.ok === 0 ? 'error' : st.status);
  if (ok) st.failed = 0;
  if (status !== st.status) {
    st.status = status;
    self.postMessage({ what: 'senderStatus', participantId, status });
  }
}

function record(s, started) {
  s.times.push(performance.now() - started);
  if (s.times.length > 1000) s.times.splice(0, s.times.length - 1000);
}

async function encrypt(s, frame, controller) {
  const data = new Uint8Array(frame.data);
  if (!sending) {
    if (allowPlain) {
      s.passed += 1;
      controller.enqueue(frame);
    } else drop(s, 'noKeyYet');
    return;
  }
  const started = performance.now();
  const kid = makeKid(sending.epoch, sending.index, CONTEXT[s.context] ?? CONTEXT.camera);
  const name = kid.toString();
  const ctr = counters.get(name) || 0;
  counters.set(name, ctr + 1);
  const keys = await keysFor(kid);
  if (!keys) {
    drop(s, 'noKeyYet');
    return;
  }
  frame.data = (await protectFrame(keys, kid, ctr, s.kind, data)).buffer;
  record(s, started);
  s.ok += 1;
  if (s.ok === 1) self.postMessage({ what: 'firstFrame', id: s.id });
  controller.enqueue(frame);
}

async function decrypt(s, frame, controller) {
  const data = new Uint8Array(frame.data);
  if (data.length === 0) {
    controller.enqueue(frame);
    return;
  }
  const started = performance.now();
  const parsed = parseFrame(s.kind, data);
  const from = parsed ? splitKid(parsed.kid) : null;
  const ep = from ? epochs.get(from.epoch) : null;
  if (!ep) {
    if (allowPlain && !parsed) {
      s.passed += 1;
      controller.enqueue(frame);
    } else drop(s, parsed ? 'noKey' : 'notEncrypted');
    return;
  }
  const participantId = ep.members[from.senderIndex];
  const keys = await keysFor(parsed.kid);
  if (!keys || !participantId) {
    drop(s, 'unknownSender');
    return;
  }
  try {
    frame.data = (await openFrame(keys, parsed, data)).buffer;
  } catch {
    drop(s, 'decryptFailed');
    senderStatus(participantId, false);
    return;
  }
  record(s, started);
  s.ok += 1;
  senderStatus(participantId, true);
  controller.enqueue(frame);
}

function pump(options, readable, writable) {
  const s = statsFor(options);
  const step = options.op === 'encrypt' ? encrypt : options.op === 'decrypt' ? decrypt : null;
  const transform = new TransformStream({
    async transform(frame, controller) {
      s.seen += 1;
      if (!step) {
        // The start-up probe: pass frames and count them.
        s.passed += 1;
        controller.enqueue(frame);
        return;
      }
      try {
        await step(s, frame, controller);
      } catch (err) {
        drop(s, `error:${err && err.name}`);
      }
    },
  });
  readable.pipeThrough(transform).pipeTo(writable).catch(() => {});
}

function percentile(times, p) {
  if (times.length === 0) return null;
  const sorted = times.slice().sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function stats() {
  return [...transforms.values()].map((s) => ({
    id: s.id, op: s.op, kind: s.kind, context: s.context, track: s.track, seen: s.seen, ok: s.ok, passed: s.passed,
    dropped: { ...s.dropped }, p50Ms: percentile(s.times, 50), p95Ms: percentile(s.times, 95), samples: s.times.length,
  }));
}

self.onrtctransform = (event) => {
  const t = event.transformer;
  pump(t.options, t.readable, t.writable);
};

self.onmessage = ({ data: m }) => {
  if (m.what === 'stream') pump(m.options, m.readable, m.writable);
  else if (m.what === 'keys') {
    const next = new Map(m.epochs.map((e) => [e.epoch, e]));
    for (const name of [...derived.keys()]) {
      const { epoch } = splitKid(BigInt(name));
      if (!next.has(epoch) || next.get(epoch).secret !== epochs.get(epoch)?.secret) {
        derived.delete(name);
        counters.delete(name);
      }
    }
    epochs = next;
    sending = m.sending;
    allowPlain = Boolean(m.allowPlain);
  } else if (m.what === 'stats') self.postMessage({ what: 'stats', nonce: m.nonce, stats: stats() });
  else if (m.what === 'resetStats') for (const s of transforms.values()) s.times = [];
};
