// The client's event bus. The connection emits every server message under its `type`
// (`joined`, `pollStarted`, ... exactly the server's ServerMessage tags, see docs/protocol.md);
// core modules and features register with `on(type, fn)`. Handlers run in the order they were
// registered: the core modules first (main.js imports them before the features), so a feature
// always sees the state the core has already updated. A failing handler is logged and does not
// stop the others.
//
// Events the page makes itself (not server messages) are named `local:<name>`, so they can
// never be confused with a server message type (tests/suite/web_client_protocol.rs checks every
// other name against the server's list).

import { log } from './log.js';

const handlers = new Map(); // type -> [fn]

/** Calls `fn(payload)` for every event of `type` from now on. */
export function on(type, fn) {
  if (!handlers.has(type)) handlers.set(type, []);
  handlers.get(type).push(fn);
}

/** The server messages after which who is here, or where, may have changed. */
export const ROSTER_CHANGES = ['admitted', 'participantJoined', 'participantLeft', 'participantUpdated', 'spaceChanged', 'spaceRoster'];

/** Calls `fn()` after every message that may change who is here (views drawn from the roster). */
export function onRosterChange(fn) {
  for (const type of ROSTER_CHANGES) on(type, () => fn());
}

/** Runs every handler of `type` with `payload`; false when no one listens for it. */
export function emit(type, payload) {
  const list = handlers.get(type);
  if (!list || list.length === 0) return false;
  for (const fn of list) {
    try {
      fn(payload);
    } catch (err) {
      log('listener for', type, 'failed:', err);
    }
  }
  return true;
}
