// Texts sealed end to end in rooms whose `e2ee` is `required` (docs/threat-model.md): chat,
// private messages, a poll's question and options, the notes with a celebration, a shared
// milestone or a congratulation. The server relays them and counts votes without reading them.
//
// Owns the text keys and the wire form `{ sealed: [{ space, epoch, iv, ct }] }`; must not
// touch the DOM or decide who receives what (the features do, and the server).
//
// - A text to a space is sealed with a key derived from that space's epoch secret (HKDF-SHA256,
//   info "hearth-e2ee/1 text", salt the room id): never the frame keys. One sealing per space it
//   goes to (a poll to every breakout carries one for each space the sender holds a key of).
// - A private message is sealed for its two parties only (`space: "direct"`): an ECDH key
//   between the sender's and the recipient's keys of this session, which every member knows
//   from the leader's signed member lists; another member of the space cannot open it.
// - AES-256-GCM with a fresh random 12-byte nonce per sealing; the additional data binds the
//   room, the field (chat, poll question, ...), the space and epoch, and for chat and
//   congratulations who wrote it (and to whom), so the server cannot pass one text off as
//   another. In a `required` room a plain text is not shown as a member's.
// - Opening waits until the key messages that arrived before the text are handled; a text no
//   held key opens gives `null`, and the features show "Encrypted message, no key yet".

import { state } from '../core/state.js';
import { b64, currentSpace, e2ee, isLeader, keysSettled, unb64 } from './keys.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const ECDH = { name: 'ECDH', namedCurve: 'P-256' };
const DIRECT = 'direct';

/** Shown in place of a text this page holds no key for. */
export const NO_KEY_TEXT = 'Encrypted message, no key yet';

/** Texts are sealed in `required` rooms only; elsewhere they go plain, as before. */
export const sealing = () => e2ee.mode === 'required';

export class NoKeyError extends Error {}

// Text keys per held epoch entry (e2ee.held values), derived once each.
const spaceKeys = new WeakMap();

async function aesKey(bits) {
  const key = await crypto.subtle.importKey('raw', bits, 'AES-GCM', false, ['encrypt', 'decrypt']);
  new Uint8Array(bits).fill(0);
  return key;
}

function spaceKey(held) {
  if (!spaceKeys.has(held)) {
    spaceKeys.set(held, crypto.subtle.deriveBits(
      { name: 'HKDF', hash: 'SHA-256', salt: enc.encode(state.roomId), info: enc.encode('hearth-e2ee/1 text') },
      held.secret, 256,
    ).then(aesKey));
  }
  return spaceKeys.get(held);
}

/** The ECDH key of `id` in this session: from the leader's signed lists, or the leader's own. */
function ecdhPubOf(id) {
  if (id === state.participantId) return e2ee.ecdh && e2ee.ecdh.pub;
  if (e2ee.leader && e2ee.leader.participantId === id) return e2ee.leader.ecdhPub;
  const held = [...e2ee.held.values()].sort((a, b) => b.order - a.order);
  for (const h of held) {
    const m = (h.members || []).find((x) => x.id === id && x.ecdhPub);
    if (m) return m.ecdhPub;
  }
  // The leader made those lists from the keys it was told; it trusts its own view.
  if (isLeader() && e2ee.peers.has(id)) return e2ee.peers.get(id).ecdhPub;
  return null;
}

async function directKey(from, to) {
  const other = from === state.participantId ? to : from;
  const pub = ecdhPubOf(other);
  if (!pub || !e2ee.ecdh) return null;
  const theirs = await crypto.subtle.importKey('raw', unb64(pub), ECDH, false, []);
  const shared = await crypto.subtle.deriveBits({ name: 'ECDH', public: theirs }, e2ee.ecdh.privateKey, 256);
  const ikm = await crypto.subtle.importKey('raw', shared, 'HKDF', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits({
    name: 'HKDF', hash: 'SHA-256', salt: enc.encode(state.roomId), info: enc.encode(`hearth-e2ee/1 direct|${from}|${to}`),
  }, ikm, 256);
  return aesKey(bits);
}

// Texts whose sender the additional data names, so the server cannot pass one person's words
// off as another's (a poll's and a celebration's come without a sender on the wire).
const SENDER_BOUND = new Set(['chat', 'congratulation']);

function aad(field, space, epoch, from, to) {
  const parties = space === DIRECT || SENDER_BOUND.has(field) ? `|${from || ''}|${to || ''}` : '';
  return enc.encode(`hearth-e2ee/1 text|${state.roomId}|${field}|${space}|${epoch}${parties}`);
}

/** The newest epoch this page holds of `space`. */
function newestOf(space) {
  return [...e2ee.held.values()].filter((h) => h.space === space).sort((a, b) => b.order - a.order)[0] || null;
}

async function sealWith(key, text, additionalData) {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ct = await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData }, key, enc.encode(text));
  return { iv: b64(iv), ct: b64(ct) };
}

/**
 * `text` sealed for the wire. `field` names what it is (`chat`, `pollQuestion`, ...); `to`
 * seals a private message for its two parties; `spaces` (default: the one this page is in)
 * lists the spaces it goes to, `'all'` every space whose key this page holds.
 * Throws NoKeyError when this page holds no key to seal with (nothing should be sent then).
 */
export async function sealText(text, { field, to = null, spaces = null } = {}) {
  await keysSettled();
  if (to) {
    const key = await directKey(state.participantId, to);
    if (!key) throw new NoKeyError('no key shared with that person yet');
    const s = await sealWith(key, text, aad(field, DIRECT, 0, state.participantId, to));
    return { sealed: [{ space: DIRECT, epoch: 0, ...s }] };
  }
  const wanted = spaces === 'all' ? [...new Set([...e2ee.held.values()].map((h) => h.space))] : (spaces || [currentSpace()]);
  const sealed = [];
  for (const space of wanted) {
    const held = space && newestOf(space);
    if (!held) continue;
    const additional = aad(field, space, held.epoch, state.participantId, null);
    sealed.push({ space, epoch: held.epoch, ...await sealWith(await spaceKey(held), text, additional) });
  }
  if (sealed.length === 0) throw new NoKeyError('no key for this room yet');
  return { sealed };
}

/**
 * The text of a wire value: a plain string as it is, a sealed one opened, or null when no key
 * this page holds opens it. `from`/`to` are the parties of a private message.
 */
export async function openText(value, { field, from = null, to = null } = {}) {
  // In a `required` room every text is sealed by its sender: a plain one did not come from a
  // member, and is not shown as if it had.
  if (typeof value === 'string') return sealing() ? null : value;
  if (!value || !Array.isArray(value.sealed)) return null;
  await keysSettled();
  for (const s of value.sealed) {
    try {
      let key = null;
      if (s.space === DIRECT) {
        if (from && to && (from === state.participantId || to === state.participantId)) key = await directKey(from, to);
      } else {
        const held = [...e2ee.held.values()].find((h) => h.space === s.space && h.epoch === s.epoch);
        if (held) key = await spaceKey(held);
      }
      if (!key) continue;
      const additionalData = aad(field, s.space, s.epoch, from, s.space === DIRECT ? to : null);
      const plain = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: unb64(s.iv), additionalData },
        key, unb64(s.ct));
      return dec.decode(plain);
    } catch {
      // Another sealing may open; a text none opens is shown as such, never as garbage.
    }
  }
  return null;
}

/** A plain text as it is, or sealed in a `required` room (see sealText). */
export async function outgoing(text, options) {
  return sealing() ? sealText(text, options) : text;
}
