// window.hearth: a read-only view of the client for the browser tests and for debugging in the
// console. Nothing in the client uses it; modules talk through imports and the bus. Getters,
// so it always reflects the current state; copies, so reading it cannot change anything; and
// the object is frozen once every feature has added its view (main.js calls sealProbe()).
//
// Besides the state, it keeps the few hooks the tests drive the page with: send(message),
// onMessage(type, fn) (a bus listener) and trace(...) (a line in the page's log).

import { announce } from '../lib/announce.js';
import { on } from './bus.js';
import { send } from './connection.js';
import { log, logLines } from './log.js';
import { state } from './state.js';

const probe = Object.defineProperties({}, {
  pc: { get: () => state.pc, enumerable: true },
  participantId: { get: () => state.participantId, enumerable: true },
  ws: { get: () => state.ws, enumerable: true },
  state: { get: () => state.status, enumerable: true },
  role: { get: () => state.role, enumerable: true },
  name: { get: () => state.name, enumerable: true },
  roomId: { get: () => state.roomId, enumerable: true },
  admitted: { get: () => state.admitted, enumerable: true },
  room: { get: () => ({ ...state.room }), enumerable: true },
  participants: { get: () => [...state.participants.values()].map((p) => ({ ...p })), enumerable: true },
  // The breakout or private room we are in ({ id, name }), or null for the main room.
  space: { get: () => (state.space ? { ...state.space } : null), enumerable: true },
  waiting: { get: () => state.waiting.slice(), enumerable: true },
  audioMuted: { get: () => state.audioMuted, enumerable: true },
  videoMuted: { get: () => state.videoMuted, enumerable: true },
  audioHardMuted: { get: () => state.audioHardMuted, enumerable: true },
  videoHardMuted: { get: () => state.videoHardMuted, enumerable: true },
  handRaised: { get: () => state.handRaised, enumerable: true },
  log: { get: () => logLines(), enumerable: true },
  self: { get: () => (state.self ? { ...state.self } : null), enumerable: true },
  trace: { value: (...args) => log(...args), enumerable: true },
  send: { value: (message) => send(message), enumerable: true },
  onMessage: { value: (type, fn) => on(type, fn), enumerable: true },
  announce: { value: (text) => announce(text), enumerable: true },
});

window.hearth = probe;

/** Adds a read-only view of a feature (`window.hearth.<name>`), before the probe is sealed. */
export function exposeProbe(name, get) {
  Object.defineProperty(probe, name, { get, enumerable: true });
}

/** No more views: the probe is frozen. */
export function sealProbe() {
  Object.freeze(probe);
}
