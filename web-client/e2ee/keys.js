// End-to-end encryption keys, with the server as a blind relay (docs/threat-model.md).
//
// Owns: this page's ECDH key (new on every join), a therapist's identity key (ECDSA P-256,
// kept non-extractable in IndexedDB), the key leader's view (who is where, the epochs it made),
// and the epoch secrets this page holds, which it hands to the frame worker (e2ee/frames.js).
// Must not touch the peer connection or the tiles: it publishes its view on the bus
// (`local:e2ee`) and the UI (e2ee/ui.js) and negotiation read it.
//
// The model: the first admitted therapist with an identity key is the key leader (the server
// names it in `e2eeLeader`). The leader makes one random secret per space (main room, each
// breakout, each private room) and epoch, lists who holds it in a bundle it signs, wraps the
// secret to each listed member with ECDH, and sends that through the server, which delivers
// each member only its own wrap (`e2eeKeys`). A member uses a secret only if the bundle's
// signature verifies under the leader's identity key and the list names the member with its
// own ECDH key. "Who can hear this room" is that signed list, not the server's roster.
// Any change of a space's key holders makes a new epoch: at once when someone is gone from the
// list (removed, left, moved away), 300 ms debounced when someone was added.

import { emit, on } from '../core/bus.js';
import { send } from '../core/connection.js';
import { log } from '../core/log.js';
import { state } from '../core/state.js';
import { frameWorker, onWorkerMessage } from './frames.js';
import { concat } from './sframe.js';

const REKEY_DEBOUNCE_MS = 300;
const ACTIVATE_AFTER_ADD_MS = 1000;
// In-flight frames and retransmissions under the previous epoch still open this long.
const KEEP_OLD_EPOCH_MS = 3000;
const enc = new TextEncoder();

export const e2ee = {
  mode: 'off', // the room's policy: 'off' | 'preferred' | 'required'
  ecdh: null, // { privateKey, publicKey, pub (base64url raw point) }
  identity: null, // therapists: { privateKey, publicKey, spki (base64url), fingerprint (hex) }
  leader: null, // { participantId, identityKey, ecdhPub, fingerprint, code, valid }
  confirmed: false, // the person said the code matched what the therapist read
  held: new Map(), // epoch -> { space, epoch, serial, secret, raw?, members, activeAt }
  sending: null, // { epoch, index }
  mySpace: null, // the space of the newest bundle naming us
  senderStatus: new Map(), // participantId -> 'ok' | 'error'
  // The leader's own bookkeeping.
  peers: new Map(), // participantId -> { ecdhPub, identityKey }
  spaces: new Map(), // space -> [{ id, name, role }]
  made: new Map(), // space -> { serial, set: string of id:pub, timer }
  serial: 0,
  // Test hooks (development servers only): never send e2eeHello (a member the leader does not
  // know), and keep epoch secrets extractable to hand to another page.
  test: { announce: true, extractable: false },
};

// An invite link may demand encryption (`#e2ee=1`) and pin the leader's identity (`leader=`).
const fragment = new URLSearchParams(location.hash.replace(/^#/, ''));
export const linkDemandsE2ee = fragment.get('e2ee') === '1';
const pinnedLeader = (fragment.get('leader') || '').toLowerCase();

// ---------------------------------------------------------------------------------------
// Encoding helpers.

export function b64(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let s = '';
  for (const b of u8) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function unb64(text) {
  const s = String(text).replace(/-/g, '+').replace(/_/g, '/');
  return Uint8Array.from(atob(s + '='.repeat((4 - (s.length % 4)) % 4)), (c) => c.charCodeAt(0));
}

const hex = (bytes) => [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, '0')).join('');
const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));

const ECDSA = { name: 'ECDSA', namedCurve: 'P-256' };
const ECDSA_SIGN = { name: 'ECDSA', hash: 'SHA-256' };
const ECDH = { name: 'ECDH', namedCurve: 'P-256' };

// ---------------------------------------------------------------------------------------
// Keys of this page.

function openStore() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open('hearth-e2ee', 1);
    req.onupgradeneeded = () => req.result.createObjectStore('keys');
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function idb(mode, fn) {
  const db = await openStore();
  return new Promise((resolve, reject) => {
    const tx = db.transaction('keys', mode);
    const req = fn(tx.objectStore('keys'));
    tx.oncomplete = () => resolve(req.result);
    tx.onerror = () => reject(tx.error);
  });
}

/** The therapist's identity key: made once per browser profile, private half never leaves it. */
async function loadIdentity() {
  let pair = null;
  try {
    pair = await idb('readonly', (s) => s.get('identity'));
  } catch (err) {
    log('e2ee: no IndexedDB for the identity key', err && err.name);
  }
  if (!pair) {
    pair = await crypto.subtle.generateKey(ECDSA, false, ['sign', 'verify']);
    try {
      await idb('readwrite', (s) => s.put(pair, 'identity'));
    } catch (err) {
      log('e2ee: the identity key lasts only this page', err && err.name);
    }
  }
  const spki = new Uint8Array(await crypto.subtle.exportKey('spki', pair.publicKey));
  return { privateKey: pair.privateKey, publicKey: pair.publicKey, spki: b64(spki), fingerprint: hex(await sha256(spki)) };
}

const ecdhLabel = (pub) => concat(enc.encode('hearth-e2ee/1 ecdh '), unb64(pub));

async function hello() {
  const pair = await crypto.subtle.generateKey(ECDH, false, ['deriveBits']);
  const pub = b64(await crypto.subtle.exportKey('raw', pair.publicKey));
  e2ee.ecdh = { privateKey: pair.privateKey, publicKey: pair.publicKey, pub };
  // Epoch numbers are 16 bits in every frame's key id; a random start keeps a reconnected
  // leader's new epochs from reusing the numbers of the ones still in flight.
  e2ee.serial = crypto.getRandomValues(new Uint16Array(1))[0];
  const message = { type: 'e2eeHello', ecdhPub: pub };
  if (state.role === 'therapist') {
    e2ee.identity = e2ee.identity || await loadIdentity();
    message.identityKey = e2ee.identity.spki;
    message.identitySig = b64(await crypto.subtle.sign(ECDSA_SIGN, e2ee.identity.privateKey, ecdhLabel(pub)));
  }
  if (e2ee.test.announce) send(message);
}

// ---------------------------------------------------------------------------------------
// The leader, as everyone checks it.

/** The code the therapist reads aloud: 12 digits from the leader's identity and this session's key. */
async function safetyCode(roomId, identitySpki, ecdhPub) {
  const digest = await sha256(concat(enc.encode('hearth-code/1'), enc.encode(roomId), unb64(identitySpki), unb64(ecdhPub)));
  const n = new DataView(digest.buffer).getBigUint64(0) % 1_000_000_000_000n;
  return n.toString().padStart(12, '0').replace(/(\d{4})(\d{4})(\d{4})/, '$1 $2 $3');
}

async function onLeader(m) {
  if (!m.participantId || !m.identityKey || !m.ecdhPub) {
    e2ee.leader = null;
    publish();
    return;
  }
  let valid = false;
  let key = null;
  try {
    key = await crypto.subtle.importKey('spki', unb64(m.identityKey), ECDSA, false, ['verify']);
    valid = await crypto.subtle.verify(ECDSA_SIGN, key, unb64(m.identitySig || ''), ecdhLabel(m.ecdhPub));
  } catch (err) {
    log('e2ee: leader key does not import', err && err.name);
  }
  const fingerprint = hex(await sha256(unb64(m.identityKey)));
  const changed = e2ee.leader && e2ee.leader.fingerprint !== fingerprint;
  e2ee.leader = {
    participantId: m.participantId, identityKey: m.identityKey, ecdhPub: m.ecdhPub, key, valid, fingerprint,
    code: await safetyCode(state.roomId, m.identityKey, m.ecdhPub),
  };
  if (changed) e2ee.confirmed = false;
  log('e2ee: leader', m.participantId, valid ? 'signature ok' : 'BAD SIGNATURE');
  publish();
  if (isLeader()) leaderRekeyAll();
}

export const isLeader = () => Boolean(e2ee.leader && e2ee.ecdh && e2ee.leader.participantId === state.participantId
  && e2ee.leader.ecdhPub === e2ee.ecdh.pub);

/** green: verified, amber: encrypted but not verified, red: not encrypted (or no key). */
export function lockState() {
  if (e2ee.mode === 'off') return 'red';
  if (!e2ee.sending && !isLeader()) return 'red';
  if (!e2ee.leader || !e2ee.leader.valid) return 'red';
  if (isLeader() || e2ee.confirmed || (pinnedLeader && pinnedLeader === e2ee.leader.fingerprint)) return 'green';
  return 'amber';
}

export const pinnedMatches = () => Boolean(pinnedLeader && e2ee.leader && pinnedLeader === e2ee.leader.fingerprint);

// ---------------------------------------------------------------------------------------
// Wrapping a space secret to one member (leader) and unwrapping it (member).

function wrapInfo(space, serial, participantId) {
  return enc.encode(`hearth-e2ee/1 wrap|${state.roomId}|${space}|${serial}|${participantId}`);
}

async function wrapKey(myPrivate, theirPub, info) {
  const pub = await crypto.subtle.importKey('raw', unb64(theirPub), ECDH, false, []);
  const shared = await crypto.subtle.deriveBits({ name: 'ECDH', public: pub }, myPrivate, 256);
  const ikm = await crypto.subtle.importKey('raw', shared, 'HKDF', false, ['deriveKey']);
  return crypto.subtle.deriveKey({ name: 'HKDF', hash: 'SHA-256', salt: enc.encode(state.roomId), info },
    ikm, { name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
}

// ---------------------------------------------------------------------------------------
// The leader.

function leaderSpaceMembers(space) {
  const listed = e2ee.spaces.get(space) || [];
  const members = [];
  // The leader holds every space's key (it made them, and may visit any room): listed first.
  members.push({ id: state.participantId, name: state.name, role: state.role, ecdhPub: e2ee.ecdh.pub, leader: true });
  for (const m of listed) {
    if (m.id === state.participantId) continue;
    const peer = e2ee.peers.get(m.id);
    if (peer) members.push({ id: m.id, name: m.name, role: m.role, ecdhPub: peer.ecdhPub });
  }
  return members;
}

function leaderRekeyAll() {
  for (const space of e2ee.spaces.keys()) scheduleRekey(space);
}

function scheduleRekey(space) {
  if (!isLeader()) return;
  const members = leaderSpaceMembers(space);
  const set = members.map((m) => `${m.id}:${m.ecdhPub}`).sort();
  const made = e2ee.made.get(space);
  if (made && made.set.join() === set.join()) return;
  // Someone gone from the list must lose the key now; additions can wait for the batch.
  const removal = made && made.set.some((k) => !set.includes(k));
  clearTimeout(made && made.timer);
  const entry = { set: made ? made.set : [], timer: null };
  e2ee.made.set(space, entry);
  const run = () => {
    entry.set = set;
    makeEpoch(space, members, removal ? 0 : ACTIVATE_AFTER_ADD_MS).catch((err) => log('e2ee: could not re-key', space, err));
  };
  if (removal) run();
  else entry.timer = setTimeout(() => {
    const now = leaderSpaceMembers(space);
    const nowSet = now.map((m) => `${m.id}:${m.ecdhPub}`).sort();
    entry.set = nowSet;
    makeEpoch(space, now, ACTIVATE_AFTER_ADD_MS).catch((err) => log('e2ee: could not re-key', space, err));
  }, REKEY_DEBOUNCE_MS);
}

async function makeEpoch(space, members, activateAfterMs) {
  e2ee.serial += 1;
  const serial = e2ee.serial;
  const epoch = serial & 0xffff;
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const bundle = {
    v: 1, room: state.roomId, space, serial, epoch, activateAfterMs, createdAtMs: Date.now(),
    leader: { id: state.participantId, identityKey: e2ee.identity.spki, ecdhPub: e2ee.ecdh.pub },
    members: members.map(({ id, name, role, ecdhPub, leader }) => ({ id, name, role, ecdhPub, leader: Boolean(leader) })),
  };
  const bundleBytes = enc.encode(JSON.stringify(bundle));
  const signature = b64(await crypto.subtle.sign(ECDSA_SIGN, e2ee.identity.privateKey, bundleBytes));
  const wraps = [];
  for (const m of bundle.members) {
    if (m.id === state.participantId) continue;
    const info = wrapInfo(space, serial, m.id);
    const kek = await wrapKey(e2ee.ecdh.privateKey, m.ecdhPub, info);
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const ct = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: info }, kek, secret));
    wraps.push({ participantId: m.id, wrap: b64(concat(iv, ct)) });
  }
  log('e2ee: epoch', epoch, 'for', space, 'to', bundle.members.length, 'members');
  send({ type: 'e2eeKeyBundle', space, epoch, bundle: b64(bundleBytes), signature, wraps });
  await install(bundle, secret);
  // Texts that stay current (an open poll) are sealed again under it, for those who just got it.
  emit('local:e2eeEpochMade', { space, epoch });
}

// ---------------------------------------------------------------------------------------
// Every member.

async function onKeys(m) {
  const reject = (why) => {
    log('e2ee: refused a key bundle:', why);
    emit('local:e2eeRefused', { why });
  };
  const leader = e2ee.leader;
  if (!leader || !leader.valid || !leader.key) return reject('no trusted leader yet');
  let bundle;
  let bundleBytes;
  try {
    bundleBytes = unb64(m.bundle);
    if (!await crypto.subtle.verify(ECDSA_SIGN, leader.key, unb64(m.signature), bundleBytes)) return reject('bad signature');
    bundle = JSON.parse(new TextDecoder().decode(bundleBytes));
  } catch (err) {
    return reject(`unreadable (${err && err.name})`);
  }
  if (bundle.room !== state.roomId || bundle.leader.ecdhPub !== leader.ecdhPub) return reject('for another room or leader');
  const me = bundle.members.find((x) => x.id === state.participantId);
  if (!me || !e2ee.ecdh || me.ecdhPub !== e2ee.ecdh.pub) return reject('not in the signed member list with my key');
  // Serials count up per leader connection; a new leader (or its reconnect) starts afresh.
  const newest = [...e2ee.held.values()].filter((h) => h.space === bundle.space && h.leaderPub === leader.ecdhPub)
    .reduce((n, h) => Math.max(n, h.serial), 0);
  if (bundle.serial <= newest) return reject('older than the epoch held');
  try {
    const info = wrapInfo(bundle.space, bundle.serial, state.participantId);
    const kek = await wrapKey(e2ee.ecdh.privateKey, leader.ecdhPub, info);
    const raw = unb64(m.wrap);
    const secret = new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: raw.subarray(0, 12), additionalData: info },
      kek, raw.subarray(12)));
    await install(bundle, secret);
  } catch (err) {
    return reject(`wrap does not open (${err && err.name})`);
  }
}

let installed = 0; // install order: which epoch of a space is newest, across leaders

async function install(bundle, raw) {
  const secret = await crypto.subtle.importKey('raw', raw, 'HKDF', false, ['deriveBits']);
  const entry = {
    space: bundle.space, epoch: bundle.epoch, serial: bundle.serial, secret, members: bundle.members, leaderPub: bundle.leader.ecdhPub,
    activeAt: Date.now() + (bundle.activateAfterMs || 0),
    order: ++installed,
    raw: e2ee.test.extractable ? b64(raw) : null,
  };
  raw.fill(0);
  e2ee.held.delete(entry.epoch);
  e2ee.held.set(entry.epoch, entry);
  if (!isLeader()) e2ee.mySpace = bundle.space;
  setTimeout(refreshSending, bundle.activateAfterMs || 0);
  refreshSending();
}

/** Which epoch we send with, and which epochs the worker may open; old ones age out. */
function refreshSending() {
  const now = Date.now();
  const space = isLeader() ? leaderOwnSpace() : e2ee.mySpace;
  const active = [...e2ee.held.values()]
    .filter((h) => h.space === space && h.activeAt <= now)
    .sort((a, b) => b.order - a.order)[0];
  const index = active ? active.members.findIndex((m) => m.id === state.participantId) : -1;
  e2ee.sending = active && index >= 0 ? { epoch: active.epoch, index } : null;
  // Keep: the newest of each space we may hear (the leader: every space; others: their own),
  // and for KEEP_OLD_EPOCH_MS an epoch that was replaced or a space we left.
  for (const [epoch, h] of e2ee.held) {
    if (h.pinned) continue;
    const newestOfSpace = ![...e2ee.held.values()].some((o) => o.space === h.space && o.order > h.order && o.activeAt <= now);
    const wanted = (isLeader() || h.space === space) && newestOfSpace;
    if (!wanted) {
      h.retireAt = h.retireAt || now + KEEP_OLD_EPOCH_MS;
      if (h.retireAt <= now) e2ee.held.delete(epoch);
      else setTimeout(refreshSending, h.retireAt - now + 10);
    } else h.retireAt = 0;
  }
  postKeys();
  publish();
}

function leaderOwnSpace() {
  for (const [space, list] of e2ee.spaces) if (list.some((m) => m.id === state.participantId)) return space;
  return 'main';
}

function postKeys() {
  frameWorker().postMessage({
    what: 'keys',
    epochs: [...e2ee.held.values()].map((h) => ({ epoch: h.epoch, space: h.space, secret: h.secret, members: h.members.map((m) => m.id) })),
    sending: e2ee.sending,
    allowPlain: e2ee.mode === 'preferred',
  });
}

/** The space this page is in, as its keys see it (null before any bundle named it). */
export const currentSpace = () => (isLeader() ? leaderOwnSpace() : e2ee.mySpace);

/** Resolves once every key message that arrived so far is handled: a sealed text that came
 * after its key's bundle opens with it (e2ee/text.js waits on this). */
export const keysSettled = () => chain.then(() => undefined);

/** The signed list of who can hear the space we are in (newest epoch), or null. */
export function whoCanHear() {
  const space = isLeader() ? leaderOwnSpace() : e2ee.mySpace;
  const h = [...e2ee.held.values()].filter((x) => x.space === space).sort((a, b) => b.order - a.order)[0];
  return h ? { space, epoch: h.epoch, members: h.members } : null;
}

function publish() {
  emit('local:e2ee', e2ee);
}

// ---------------------------------------------------------------------------------------
// Wiring.

function reset() {
  e2ee.held.clear();
  e2ee.sending = null;
  e2ee.mySpace = null;
  e2ee.peers.clear();
  e2ee.spaces.clear();
  for (const made of e2ee.made.values()) clearTimeout(made.timer);
  e2ee.made.clear();
  e2ee.leader = null;
  e2ee.senderStatus.clear();
}

on('joined', (m) => {
  reset();
  e2ee.mode = (m.room && m.room.e2ee) || 'off';
  if (e2ee.mode !== 'off') inOrder('hello', () => hello().then(postKeys));
  publish();
});
on('roomStateChanged', (m) => {
  const mode = (m.room && m.room.e2ee) || 'off';
  if (mode === e2ee.mode) return;
  const was = e2ee.mode;
  e2ee.mode = mode;
  if (was === 'off' && mode !== 'off' && !e2ee.ecdh) inOrder('hello', hello);
  postKeys();
  publish();
});
// One at a time, in arrival order: a bundle must not be checked before the leader it names.
let chain = Promise.resolve();
const inOrder = (what, fn) => { chain = chain.then(fn).catch((err) => log(`e2ee: ${what}`, err)); };
on('e2eeLeader', (m) => inOrder('leader', () => onLeader(m)));
on('e2eeKeys', (m) => inOrder('keys', () => onKeys(m)));
on('e2eePeerKey', (m) => {
  const before = e2ee.peers.get(m.participantId);
  e2ee.peers.set(m.participantId, { ecdhPub: m.ecdhPub, identityKey: m.identityKey || null });
  if (before && before.ecdhPub !== m.ecdhPub) emit('local:e2eeKeyChanged', { participantId: m.participantId });
  for (const [space, list] of e2ee.spaces) if (list.some((x) => x.id === m.participantId)) scheduleRekey(space);
});
on('e2eeSpaces', (m) => {
  const seen = new Set();
  for (const s of m.spaces || []) {
    seen.add(s.space);
    e2ee.spaces.set(s.space, s.members || []);
  }
  for (const space of [...e2ee.spaces.keys()]) if (!seen.has(space)) e2ee.spaces.delete(space);
  for (const space of e2ee.spaces.keys()) scheduleRekey(space);
  for (const space of [...e2ee.made.keys()]) if (!seen.has(space)) e2ee.made.delete(space);
  refreshSending();
});

onWorkerMessage((m) => {
  if (m.what === 'senderStatus') {
    e2ee.senderStatus.set(m.participantId, m.status);
    publish();
  }
});

/** The person compared the code with what the therapist read, and it matched. */
export function confirmCode() {
  e2ee.confirmed = true;
  publish();
}

/** Tests on a development server: epoch secrets this page holds, as base64url. */
export function exportEpochSecrets() {
  return [...e2ee.held.values()].map((h) => ({ space: h.space, epoch: h.epoch, secret: h.raw, members: h.members.map((m) => m.id) }));
}

/** Tests on a development server: hold a secret someone else exported (a leaked key). */
export async function installEpochSecret({ space, epoch, secret, members }) {
  const key = await crypto.subtle.importKey('raw', unb64(secret), 'HKDF', false, ['deriveBits']);
  e2ee.held.set(epoch, { space, epoch, serial: 0, order: 0, secret: key, members: members.map((id) => ({ id })), activeAt: Infinity, raw: secret, pinned: true });
  postKeys();
}
