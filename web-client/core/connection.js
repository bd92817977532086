// The signaling websocket: the join token (read from the join link, remembered for this tab),
// joining, pings, reconnecting with backoff, redirects to another node, and the server's errors.
// Every server message is emitted on the bus under its `type`.

import { on, emit } from './bus.js';
import { CODES } from './codes.js';
import { log } from './log.js';
import { teardownPeer } from './negotiation.js';
import { startSession, stopSession } from './session.js';
import { IN_CALL, ROLE_LABEL, state } from './state.js';
import { detachRemoteMedia } from './tiles.js';
import { setStatus, showAlert, showMessage, showView, ui } from './view.js';

const PROTOCOL_VERSION = 1;
const PING_INTERVAL_MS = 20_000;
// Two missed pings without any message from the server means the socket is dead even if the
// browser has not noticed yet (phones switching networks do this a lot).
const SILENCE_LIMIT_MS = 50_000;
const RECONNECT_BASE_MS = 1_000;
const RECONNECT_MAX_MS = 15_000;

// Join refusals that retrying cannot fix. The person sees the message and nothing retries.
const FATAL_JOIN_ERRORS = new Set([
  CODES.INVALID_FIELD, CODES.INVALID_MESSAGE, CODES.ROOM_FULL, CODES.UNSUPPORTED_VERSION, CODES.ALREADY_JOINED,
  CODES.TOKEN_MISSING, CODES.TOKEN_EXPIRED, CODES.TOKEN_INVALID, CODES.TOKEN_WRONG_ROOM, CODES.ROOM_LOCKED, CODES.BANNED,
  CODES.INVALID_NAME, CODES.SEAT_TAKEN,
]);
// Plain-language versions of the server's error codes; the server's text is the fallback.
export const FRIENDLY_ERRORS = {
  [CODES.ROOM_FULL]: 'This group is full at the moment. Please check with your therapist.',
  [CODES.UNSUPPORTED_VERSION]: 'This page is out of date. Please reload it and join again.',
  [CODES.SHUTTING_DOWN]: 'The server is restarting. We will reconnect you in a moment.',
  [CODES.CLUSTER_UNAVAILABLE]: 'Your session is moving to another server. We will reconnect you in a moment.',
  [CODES.NEGOTIATION]: 'The video connection had a problem. Reconnecting you…',
  [CODES.JOIN_TIMEOUT]: 'The connection was slow to start. Reconnecting you…',
  [CODES.INTERNAL]: 'Something went wrong on our side. Please try again in a moment.',
  [CODES.TOKEN_MISSING]: 'This page needs your personal join link. Ask your therapist for your join link.',
  [CODES.TOKEN_EXPIRED]: 'Your join link has expired. Ask your therapist for a new one.',
  [CODES.TOKEN_INVALID]: "This join link doesn't work. It may be incomplete: try copying the whole link, or ask your therapist for a new one.",
  [CODES.TOKEN_WRONG_ROOM]: 'This join link is for a different group. Ask your therapist for the right link.',
  [CODES.FORBIDDEN]: 'Only the therapist can do that.',
  [CODES.ROOM_LOCKED]: 'The therapist has locked this session, so no one new can join right now. Please contact your therapist.',
  [CODES.BANNED]: 'You were removed from this session and cannot rejoin it. Please contact your therapist if you have questions.',
  [CODES.HARD_MUTED]: 'The therapist turned this off for you. Only they can turn it back on.',
  [CODES.UNKNOWN_PARTICIPANT]: 'That person is no longer in the room.',
  [CODES.RATE_LIMITED]: 'That was a lot at once. Please wait a moment, then try again.',
  [CODES.NOT_ADMITTED]: "You're still in the waiting room. The therapist will let you in shortly.",
  [CODES.UNKNOWN_BREAKOUT]: 'That breakout room is not open any more.',
  [CODES.RETURN_NOT_ALLOWED]: 'The therapist asked everyone to stay in their breakout room for now.',
  [CODES.INVALID_NAME]: 'The name in this join link cannot be shown to the group. Please ask your therapist for a new link.',
  [CODES.SEAT_TAKEN]: 'This join link belongs to someone already in the session in another role. Please ask your therapist for your own link.',
  [CODES.TOO_MANY_TRACKS]: 'Only a microphone, a camera and one screen can be shared at a time.',
};
export const ERROR_HEADINGS = {
  [CODES.TOKEN_EXPIRED]: 'This link has expired',
  [CODES.TOKEN_INVALID]: "This link doesn't work",
  [CODES.TOKEN_WRONG_ROOM]: 'This link is for another group',
  [CODES.TOKEN_MISSING]: 'A join link is needed',
  [CODES.ROOM_LOCKED]: 'The session is locked',
  [CODES.BANNED]: 'You cannot rejoin this session',
  [CODES.ROOM_FULL]: 'The group is full',
  [CODES.INVALID_NAME]: 'This link needs a different name',
  [CODES.SEAT_TAKEN]: 'This link is already in use',
};

// ---------------------------------------------------------------------------------------
// Tokens.

// The join link's token, read once: it is taken out of the address bar at once (and out of
// the history entry), so it does not show on a shared screen, in the history list or in a
// copied address. The page keeps it in memory for reconnects, and in this tab's
// sessionStorage so a reload still rejoins as the same person; closing the tab forgets it.
const TOKEN_KEY = 'hearth.joinToken';

export function tokenFromFragment() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  const token = (params.get('token') || '').trim();
  if (token) {
    rememberToken(token);
    params.delete('token');
    const rest = params.toString();
    history.replaceState(history.state, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
    return token;
  }
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch (err) {
    return '';
  }
}

export function rememberToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch (err) {
    // Storage off (private mode settings): reloads then need the link again.
  }
}

// Reads a JWT's payload without verifying it: only to greet the person and pick the room.
// The server verifies the signature on join.
export function decodeToken(token) {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    if (!claims || typeof claims.room !== 'string' || typeof claims.name !== 'string') return null;
    if (!ROLE_LABEL[claims.role]) return null;
    return claims;
  } catch (err) {
    return null;
  }
}

export function tokenExpired(claims) {
  return typeof claims.exp === 'number' && claims.exp * 1000 < Date.now();
}

// ---------------------------------------------------------------------------------------
// Websocket signaling.

// The page's own server is the entry point (in a deployment, the load balancer). With
// relay nodes, it may redirect us to the node that runs our room; we stay there until that
// node goes away, then come back through the entry point.
function socketUrl() {
  if (state.nodeUrl) return state.nodeUrl;
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

export function send(message) {
  const ws = state.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    log('not sent (socket not open):', message.type);
    return false;
  }
  ws.send(JSON.stringify(message));
  return true;
}

export function openSocket() {
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  const ws = new WebSocket(socketUrl());
  state.ws = ws;
  log('opening websocket', ws.url);
  // Every handler checks `ws === state.ws` so events from an abandoned socket are ignored.
  ws.onopen = () => {
    if (ws !== state.ws) return;
    log('websocket open; joining', state.roomId);
    state.lastHeardAt = Date.now();
    startPing();
    send({ type: 'join', protocolVersion: PROTOCOL_VERSION, roomId: state.roomId, token: state.token });
  };
  ws.onmessage = (event) => {
    if (ws !== state.ws) return;
    state.lastHeardAt = Date.now();
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (err) {
      log('unparseable message from server', err);
      return;
    }
    handleMessage(message);
  };
  ws.onclose = (event) => {
    if (ws !== state.ws) return;
    log('websocket closed', event.code, event.reason || '');
    onSocketLost();
  };
  ws.onerror = () => log('websocket error');
}

export function closeSocket() {
  const ws = state.ws;
  state.ws = null;
  stopPing();
  if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, 'bye');
}

function onSocketLost() {
  state.ws = null;
  // After a redirect we go straight to the node named; any other loss means that node may
  // be gone, so the next attempt goes through the entry point again.
  const redirected = state.redirectPending;
  state.redirectPending = false;
  if (!redirected) state.nodeUrl = null;
  stopPing();
  teardownPeer();
  // Keep the tiles and the roster (dimmed) while we reconnect: the server holds our place,
  // and `admitted` / `spaceChanged` bring the real picture back. Only the media is gone.
  detachRemoteMedia();
  state.waiting = [];
  if (IN_CALL.has(state.status)) {
    if (state.admitted) ui.peopleCount.textContent = 'Reconnecting… You will see and hear everyone again in a moment.';
    scheduleReconnect(redirected);
  }
}

function scheduleReconnect(now) {
  // A redirect during the first join is part of connecting, not a reconnect.
  if (!(now && state.status === 'connecting')) setStatus('reconnecting');
  if (now) {
    log('reconnecting at once to', state.nodeUrl);
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = setTimeout(openSocket, 0);
    return;
  }
  // Exponential backoff with jitter so a restarted server is not hit by everyone at once.
  const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** state.reconnectAttempt);
  const delay = Math.round(ceiling * (0.5 + Math.random() * 0.5));
  state.reconnectAttempt += 1;
  log(`reconnect attempt ${state.reconnectAttempt} in ${delay} ms`);
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = setTimeout(openSocket, delay);
}

function startPing() {
  stopPing();
  state.pingTimer = setInterval(() => {
    if (Date.now() - state.lastHeardAt > SILENCE_LIMIT_MS) {
      restartConnection('server silent for too long');
      return;
    }
    send({ type: 'ping' });
  }, PING_INTERVAL_MS);
}

function stopPing() {
  clearInterval(state.pingTimer);
  state.pingTimer = null;
}

// Every server message goes out on the bus under its type: the core modules' handlers first,
// then the features' (see bus.js).
function handleMessage(message) {
  if (!emit(message.type, message)) log('ignoring unknown message type', message.type);
}

function onServerError(message) {
  log('server error', message.code, message.message);
  const code = message.code;
  // A video preference for a track that just went away: nothing for a person to do.
  if (code === CODES.UNKNOWN_TRACK) return undefined;
  const joining = state.status === 'connecting' || state.status === 'reconnecting';
  // In the call, a rate limit on asking for help says honestly that the earlier calls reached
  // the therapists and where to turn now: the server's words, not a generic "slow down".
  const said = code === CODES.RATE_LIMITED && !joining && message.message;
  const own = said && `${said.charAt(0).toUpperCase()}${said.slice(1)}.`;
  const text = code === CODES.INVALID_FIELD
    ? `Please check what you entered: ${message.message}.`
    : own || FRIENDLY_ERRORS[code] || message.message || 'Something went wrong.';
  // These codes only answer `join` (on a first connect or a reconnect): retrying cannot help.
  if (joining && FATAL_JOIN_ERRORS.has(code)) return refuseJoin(code, text);
  if (joining && (code === CODES.RATE_LIMITED || code === CODES.SHUTTING_DOWN || code === CODES.CLUSTER_UNAVAILABLE || code === CODES.JOIN_TIMEOUT)) {
    // Too many joins from this address, or a restart: try again later, with backoff.
    showAlert(text);
    return restartConnection(`server error ${code}`);
  }
  if (code === CODES.NEGOTIATION) {
    // The server gave up on this connection's media: a fresh join is the way back.
    showAlert(text);
    return restartConnection('server error negotiation');
  }
  showAlert(text);
  return undefined;
}

// A join the server refused for good (bad or expired link, locked, removed...).
function refuseJoin(code, text) {
  stopSession();
  if (state.devTokens && state.fromForm) {
    // On the development form the fix is usually a different room or name.
    setStatus('idle', 'Not connected.');
    showView('form');
    showAlert(text);
    return;
  }
  setStatus('ended', 'Not connected.');
  const retry = [CODES.ROOM_LOCKED, CODES.ROOM_FULL].includes(code)
    ? { label: 'Try again', run: () => startSession() }
    : null;
  showMessage(ERROR_HEADINGS[code] || 'We could not connect you', text, { action: retry });
}

export function restartConnection(why) {
  log('restarting connection:', why);
  const ws = state.ws;
  onSocketLost();
  if (ws) ws.close(1000, 'restart');
}

// Relay nodes: our room runs on (or just moved to) another node. Join there with the same
// token; the server closes this socket next.
function onRedirect(message) {
  let url;
  try {
    url = new URL(message.url);
  } catch (err) {
    log('ignoring redirect to an unparseable address');
    return;
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    log('ignoring redirect to a non-websocket address');
    return;
  }
  log('redirected to', url.href, message.reason);
  state.nodeUrl = url.href;
  state.redirectPending = true;
  state.reconnectAttempt = 0;
  if (message.reason === 'draining' || message.reason === 'moved') {
    // Only a move during the call is worth saying; a first join's redirect is invisible.
    showAlert('Moving your session to another server. You will see and hear everyone again in a moment.');
  }
}

function onGoodbye(message) {
  log('goodbye:', message.reason);
  // The socket closes next; onclose starts reconnecting because the server usually returns.
  showAlert("The server is restarting. We'll reconnect you automatically when it's back.");
}

on('pong', () => {}); // lastHeardAt is already updated
on('error', onServerError);
on('goodbye', onGoodbye);
on('redirect', onRedirect);
