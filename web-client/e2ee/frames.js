// Puts the frame worker (e2ee/worker.js) between the peer connection and the network: every
// sender and every receiver of the connection, in an end-to-end encrypted room.
//
// Two browser APIs do this, and the page picks one before the peer connection exists
// (`chooseTransformApi`): the standard RTCRtpScriptTransform when a probe shows the browser
// really runs it on the RECEIVING side of a sendrecv transceiver (public reports say some
// Chromium versions attach it there and never call it), else Chromium's createEncodedStreams,
// which needs `encodedInsertableStreams: true` on the connection and then EVERY sender and
// receiver piped through the worker, or its media stalls. Owns the worker and which
// senders/receivers are attached; knows nothing of keys (e2ee/keys.js posts them).

let worker = null;
let api = null; // 'script' | 'streams' | 'none'
let probeResult = null;
let nextId = 0;
const attached = new WeakSet();
const listeners = new Set();

export function frameWorker() {
  if (!worker) {
    worker = new Worker(new URL('./worker.js', import.meta.url), { name: 'hearth-e2ee', type: 'module' });
    worker.onmessage = ({ data }) => { for (const fn of listeners) fn(data); };
  }
  return worker;
}

/** Messages from the worker (`senderStatus`, `firstFrame`, `stats`). */
export function onWorkerMessage(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function transformApi() {
  return api;
}

export function probeOutcome() {
  return probeResult;
}

/** Which API this browser can encrypt frames with; probes the script transform once per page. */
export async function chooseTransformApi() {
  if (api) return api;
  const hasScript = typeof RTCRtpScriptTransform === 'function';
  const hasStreams = typeof RTCRtpSender !== 'undefined' && typeof RTCRtpSender.prototype.createEncodedStreams === 'function';
  probeResult = { hasScript, hasStreams, scriptRunsOnSendrecvReceiver: null };
  if (hasScript) {
    probeResult.scriptRunsOnSendrecvReceiver = await probeScriptTransform().catch(() => false);
  }
  if (hasScript && probeResult.scriptRunsOnSendrecvReceiver) api = 'script';
  else if (hasStreams) api = 'streams';
  else api = 'none';
  probeResult.api = api;
  return api;
}

/** Tests: use `name` ('script' or 'streams') instead of probing, before any connection exists. */
export function useTransformApi(name) {
  api = name;
  probeResult = { forced: name, api: name };
}

/** Extra RTCPeerConnection configuration the chosen API needs. */
export function peerConfig() {
  return api === 'streams' ? { encodedInsertableStreams: true } : {};
}

/**
 * Two connections on this page, a sendrecv transceiver each way, a script transform on the
 * receiver: true if it sees frames within a few seconds.
 */
async function probeScriptTransform() {
  const w = frameWorker();
  const id = `probe-${nextId++}`;
  const canvas = new OffscreenCanvas(64, 64);
  const ctx = canvas.getContext('2d');
  const el = document.createElement('canvas');
  el.width = 64;
  el.height = 64;
  const track = el.captureStream(15).getVideoTracks()[0];
  const paint = setInterval(() => {
    const g = el.getContext('2d');
    g.fillStyle = `hsl(${Date.now() % 360} 50% 50%)`;
    g.fillRect(0, 0, 64, 64);
    ctx.fillRect(0, 0, 1, 1);
  }, 60);
  const a = new RTCPeerConnection();
  const b = new RTCPeerConnection();
  const done = () => {
    clearInterval(paint);
    track.stop();
    a.close();
    b.close();
  };
  try {
    a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate).catch(() => {});
    b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate).catch(() => {});
    a.addTransceiver(track, { direction: 'sendrecv' });
    b.ontrack = (e) => {
      e.receiver.transform = new RTCRtpScriptTransform(w, { op: 'probe', kind: 'video', context: 'camera', id });
    };
    await a.setLocalDescription();
    await b.setRemoteDescription(a.localDescription);
    // b answers with sendrecv too (its own track), which is the case reported broken.
    const bt = b.getTransceivers()[0];
    bt.direction = 'sendrecv';
    await bt.sender.replaceTrack(track.clone());
    await b.setLocalDescription();
    await a.setRemoteDescription(b.localDescription);
    const deadline = Date.now() + 4000;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      const s = await workerStats();
      const mine = s.find((t) => t.id === id);
      if (mine && mine.seen > 0) return true;
    }
    return false;
  } finally {
    done();
  }
}

/** The worker's per-transform counters (see worker.js `stats`). */
export function workerStats() {
  const w = frameWorker();
  const nonce = Math.random();
  return new Promise((resolve) => {
    const off = onWorkerMessage((m) => {
      if (m.what === 'stats' && m.nonce === nonce) {
        off();
        resolve(m.stats);
      }
    });
    // A worker too busy to answer within 5 s reads as "nothing yet", never as a hang.
    setTimeout(() => { off(); resolve([]); }, 5000);
    w.postMessage({ what: 'stats', nonce });
  });
}

function attach(endpoint, options) {
  if (attached.has(endpoint)) return;
  attached.add(endpoint);
  const w = frameWorker();
  if (api === 'script') {
    endpoint.transform = new RTCRtpScriptTransform(w, options);
  } else if (api === 'streams') {
    const { readable, writable } = endpoint.createEncodedStreams();
    w.postMessage({ what: 'stream', options, readable, writable }, [readable, writable]);
  }
}

/** Encrypt what `sender` sends; `context` is 'audio', 'camera' or 'screen'. */
export function attachSender(sender, context) {
  if (!api || api === 'none' || !sender) return;
  const kind = context === 'audio' ? 'audio' : 'video';
  attach(sender, { op: 'encrypt', kind, context, id: `send-${nextId++}-${context}` });
}

/** Decrypt what `receiver` receives (called in `ontrack`, before any frame arrives). */
export function attachReceiver(receiver) {
  if (!api || api === 'none' || !receiver) return;
  const kind = receiver.track.kind;
  // The receiver's track id names its counters, so a page (or a test) can tell how the frames
  // of what it shows (a tile, the shared screen) fare.
  attach(receiver, { op: 'decrypt', kind, context: kind === 'audio' ? 'audio' : 'video', id: `recv-${nextId++}-${kind}`, track: receiver.track.id });
}

/**
 * Every sender and receiver of `pc` not piped yet. With createEncodedStreams a sender whose
 * transceiver the server created gets its track later (replaceTrack/addTrack reuse), and one
 * left unpiped would stall; `contextOf(track)` names what a sender's track is.
 */
export function attachAll(pc, contextOf) {
  if (!api || api === 'none' || !pc) return;
  for (const t of pc.getTransceivers()) {
    if (t.currentDirection === 'stopped') continue;
    // A sender without a track yet may get one later (the server made the transceiver and
    // our addTrack reuses it): it is piped now, named by the kind of its transceiver.
    const kind = t.receiver.track.kind;
    attachSender(t.sender, t.sender.track ? contextOf(t.sender.track) : (kind === 'audio' ? 'audio' : 'camera'));
    attachReceiver(t.receiver);
  }
}
