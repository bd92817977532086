// The session in a room: what the server says about it (joined, admitted, the roster, the
// space we are in, moderation, the end), and starting, stopping and leaving it.

import { announce } from '../lib/announce.js';
import { emit, on } from './bus.js';
import { closeSocket, openSocket, send } from './connection.js';
import { showLinkView } from './landing.js';
import { dismissConfirm } from './dialog.js';
import { log } from './log.js';
import { applyLocalMutes, ensureLocalMedia, stopLocalMedia } from './media.js';
import { startPeer, teardownPeer } from './negotiation.js';
import { renderCall, renderLocalTile, renderModNotice, renderRoster, renderWaiting } from './roster.js';
import { IN_CALL, ROLE_LABEL, isTherapist, nameOf, publishes, state } from './state.js';
import { clearRemoteTiles, dropTileIfIdle, onActiveSpeaker, removeTile, tiles } from './tiles.js';
import { clearAlert, setStatus, showMessage, ui } from './view.js';

// How long a new arrival in the waiting room stays highlighted for the therapist.
const ARRIVAL_HIGHLIGHT_MS = 10_000;

function onJoined(message) {
  log('joined as', message.participantId, message.role, message.admitted ? 'admitted' : 'waiting');
  state.participantId = message.participantId;
  state.name = message.name || state.name;
  state.role = message.role || state.role;
  state.room = normaliseRoom(message.room);
  // Rejoining a room we were in: keep showing it until `admitted` (which follows at once).
  state.admitted = state.admitted && Boolean(message.admitted);
  state.self = null;
  // A fresh session on the server: nothing the therapist did before carries over.
  state.audioHardMuted = false;
  state.videoHardMuted = false;
  state.handRaised = false;
  // Back in a room we were in: keep the (dimmed) tiles until `admitted` replaces the roster.
  if (!state.admitted) {
    state.participants.clear();
    state.space = null;
  }
  state.streamOwners.clear();
  state.waiting = [];
  clearAlert();
  ui.localTile.dataset.participantId = state.participantId;
  // When admitted is true, `admitted` with the roster follows at once; until then (or while
  // waiting) the lobby shows. The media connection starts on `admitted`, which carries the
  // relay's ICE servers (TURN credentials are for admitted people only).
  setStatus(message.admitted ? 'connecting' : 'waiting');
  if (!message.admitted) {
    teardownPeer();
    announce('You are in the waiting room.');
    ui.lobbyHeading.focus();
  }
}

function onAdmitted(message) {
  log('admitted');
  const wasWaiting = state.status === 'waiting';
  state.admitted = true;
  state.iceServers = message.iceServers || [];
  state.permissions = new Set(message.permissions || []);
  startPeer();
  state.room = normaliseRoom(message.room);
  // The main room's roster; `spaceChanged` follows at once if we belong in a breakout.
  state.space = null;
  replaceRoster(message.participants || [], { render: false });
  // The server refuses setMute before admission; tell the room about choices made while waiting.
  if (publishes()) {
    if (state.audioMuted) send({ type: 'setMute', kind: 'audio', muted: true });
    if (state.videoMuted) send({ type: 'setMute', kind: 'video', muted: true });
  }
  setStatus('joined');
  renderRoster();
  if (wasWaiting) announce('The therapist let you in. Welcome.');
  if (wasWaiting || state.reconnectAttempt === 0) ui.roomHeading.focus();
}

function normaliseRoom(room) {
  return {
    locked: Boolean(room && room.locked),
    waitingRoom: Boolean(room && room.waitingRoom),
    spotlight: (room && room.spotlight) || null,
    e2ee: (room && room.e2ee) || 'off',
  };
}

function onRoomState(room) {
  const before = state.room;
  state.room = normaliseRoom(room);
  if (before.locked !== state.room.locked) {
    announce(state.room.locked ? 'The room is now locked. No one new can join.' : 'The room is unlocked.');
  }
  if (before.spotlight !== state.room.spotlight) {
    const who = state.room.spotlight;
    if (!who) announce('The spotlight was turned off.');
    else if (who === state.participantId) announce('You are in the spotlight.');
    else announce(`${nameOf(who)} is in the spotlight.`);
  }
  renderRoster();
}

function onWaitingList(waiting) {
  const known = new Set(state.waiting.map((w) => w.id));
  const now = Date.now();
  const arrived = waiting.filter((w) => !known.has(w.id));
  state.waiting = waiting;
  for (const id of [...state.arrivals.keys()]) {
    if (!waiting.some((w) => w.id === id)) state.arrivals.delete(id);
  }
  for (const w of arrived) state.arrivals.set(w.id, now);
  if (arrived.length === 1) announce(`${arrived[0].name} is waiting to join.`);
  else if (arrived.length > 1) announce(`${arrived.length} people are waiting to join.`);
  if (arrived.length) {
    clearTimeout(state.arrivalTimer);
    state.arrivalTimer = setTimeout(() => { state.arrivals.clear(); renderWaiting(); }, ARRIVAL_HIGHLIGHT_MS);
  }
  renderRoster(); // the waiting list, and the people count that mentions who waits
}

function onParticipantJoined(participant) {
  if (!participant) return;
  if (participant.id === state.participantId) {
    applySelf(participant);
    renderRoster();
    return;
  }
  state.participants.set(participant.id, participant);
  renderRoster();
  const role = participant.role === 'participant' ? '' : ` (${ROLE_LABEL[participant.role].toLowerCase()})`;
  announce(`${participant.name}${role} joined the room.`);
}

function onParticipantLeft(participantId) {
  const participant = state.participants.get(participantId);
  state.participants.delete(participantId);
  for (const [streamId, owner] of state.streamOwners) {
    if (owner === participantId) state.streamOwners.delete(streamId);
  }
  if (state.confirmRemove === participantId) state.confirmRemove = null;
  removeTile(participantId);
  renderRoster();
  if (participant) announce(`${participant.name} left the room.`);
}

// We moved (into a breakout, a private room, back to the main room): who is there now.
function onSpaceChanged(message) {
  // The speaker highlight belonged to the space we left.
  onActiveSpeaker(null);
  const before = state.space;
  state.space = message.breakout ? { id: message.breakout.id, name: message.breakout.name } : null;
  state.spacesUsed = true;
  if ((before && before.id) !== (state.space && state.space.id)) log('now in space', state.space ? state.space.id : 'main');
  replaceRoster(message.participants || []);
}

// Media, the tiles and the people list follow the space we are in: the server sends the
// whole list of who is there (us included) whenever it changes. Tiles of people who are no
// longer with us go (the server also stops forwarding them); newcomers get a tile at once,
// and their media follows by renegotiation.
function replaceRoster(list, { announceMoves = false, render = true } = {}) {
  const before = new Map(state.participants);
  if (announceMoves) state.spacesUsed = true;
  state.participants.clear();
  for (const p of list) {
    if (p.id === state.participantId) applySelf(p);
    else state.participants.set(p.id, p);
  }
  for (const id of [...tiles.keys()]) {
    if (!state.participants.has(id)) dropTileIfIdle(id);
  }
  if (state.confirmRemove && !state.participants.has(state.confirmRemove)) state.confirmRemove = null;
  if (render) renderRoster();
  if (!announceMoves) return;
  const came = [...state.participants.values()].filter((p) => !before.has(p.id));
  const went = [...before.values()].filter((p) => !state.participants.has(p.id));
  if (came.length + went.length === 1) {
    announce(came.length ? `${came[0].name} joined this room.` : `${went[0].name} left this room.`);
  } else if (came.length + went.length > 1) {
    const n = state.participants.size;
    announce(n === 0 ? 'Everyone else moved to another room. You are on your own here for now.'
      : `People moved between rooms. ${n + 1} people are in this room now, including you.`);
  }
}

function onParticipantUpdated(participant) {
  if (!participant) return;
  if (participant.id === state.participantId) {
    applySelf(participant);
  } else {
    const before = state.participants.get(participant.id);
    state.participants.set(participant.id, participant);
    if (isTherapist() && participant.handRaised && !(before && before.handRaised)) {
      announce(`${participant.name} raised their hand.`);
    }
  }
  renderRoster();
}

// The server's view of us: hand, and mutes only the therapist can lift.
function applySelf(info) {
  state.self = info;
  state.handRaised = Boolean(info.handRaised);
  state.audioHardMuted = Boolean(info.audioHardMuted);
  state.videoHardMuted = Boolean(info.videoHardMuted);
  // Our own mute choices are ours (an update sent before the server saw our latest toggle
  // must not undo it); only a hard mute overrides them, and never to turn a device on.
  if (state.audioHardMuted) state.audioMuted = true;
  if (state.videoHardMuted) state.videoMuted = true;
  applyLocalMutes();
}

function onMutedByModerator(kind, hard) {
  log('muted by moderator', kind, hard ? 'hard' : 'asked');
  // Observers send nothing; "mute all" may still include them. Nothing to say.
  if (!publishes()) return;
  if (kind === 'audio') {
    state.audioMuted = true;
    if (hard) state.audioHardMuted = true;
  } else {
    state.videoMuted = true;
    if (hard) state.videoHardMuted = true;
  }
  state.modNotes[kind] = hard ? '' : (kind === 'audio'
    ? 'The therapist asked you to mute. You can unmute when you want to speak.'
    : 'The therapist asked you to turn off your camera. You can turn it back on when you are ready.');
  applyLocalMutes();
  renderLocalTile();
  renderModNotice();
}

function onUnmutedByModerator(kind) {
  log('unmuted by moderator', kind);
  if (!publishes()) return;
  if (kind === 'audio') state.audioHardMuted = false;
  else state.videoHardMuted = false;
  // Allowed, not switched on: the person decides when their microphone or camera comes back.
  state.modNotes[kind] = kind === 'audio'
    ? 'The therapist allowed you to unmute. Your microphone stays off until you turn it on.'
    : 'The therapist allowed you to turn your camera back on. It stays off until you turn it on.';
  renderLocalTile();
  renderModNotice();
}

// What the waiting room says: the group, the therapist, their welcome. A link whose session
// is over says so instead of waiting for a therapist who will not come.
function onWaitingRoom(message) {
  const before = state.door;
  state.door = {
    groupName: message.groupName || null,
    therapistName: message.therapistName || null,
    therapistHere: Boolean(message.therapistHere),
    welcome: message.welcome || null,
    sessionEnded: Boolean(message.sessionEnded),
  };
  if (state.status !== 'waiting') {
    if (IN_CALL.has(state.status)) renderRoster(); // the heading names the group
    return;
  }
  if (state.door.sessionEnded) {
    log('the session of this link has ended');
    send({ type: 'leave' });
    state.status = 'ended';
    stopSession();
    setStatus('ended', 'Session ended.');
    const help = (state.clinic && state.clinic.supportResourcesText) || '';
    showMessage('This session has ended', `The session this link was for${state.door.therapistName ? `, with ${state.door.therapistName},` : ''} is over. Thank you for coming.`, {
      hint: 'If you expected a session now, please contact your therapist or clinic for a new link.',
      help,
      action: { label: 'Check again', run: () => startSession() },
    });
    return;
  }
  if (state.door.therapistHere && !before.therapistHere) {
    announce(`${state.door.therapistName || 'The therapist'} is here and will let you in shortly.`);
  }
  renderCall();
}

function onSessionEnded(message) {
  const reason = message.reason;
  log('session ended:', reason);
  // Set before the socket closes so nothing tries to reconnect.
  state.status = 'ended';
  stopSession();
  const again = { label: 'Join again from this window', run: () => startSession() };
  const screens = {
    declined: ['You were not admitted', 'The therapist did not admit you to this session.',
      'If you think this is a mistake, please contact your therapist.', null],
    removed: ['You have left the session', 'The therapist removed you from this session.',
      'If you have questions, please contact your therapist.', null],
    ended: ['The session has ended', isTherapist()
      ? 'You ended the session for everyone.'
      : 'The therapist ended the session. Thank you for being here.', 'You can close this window.', null],
    replaced: ['Joined somewhere else', 'You joined this session from another window or device, so this one stopped.',
      '', { label: 'Use this window instead', run: () => startSession() }],
    stalled: ['Your connection dropped', 'Your connection could not keep up with the session.',
      'Check your internet connection, then join again.', again],
  };
  const [heading, text, hint, action] = screens[reason]
    || ['Your session has ended', message.message || 'Your session has ended.', '', null];
  setStatus('ended', 'Session ended.');
  // Whoever leaves a group session may need somewhere to turn next: the clinic's resources
  // go on every participant's end screen (not the therapist's, who runs the session).
  const help = !isTherapist() && reason !== 'replaced' ? (state.clinic && state.clinic.supportResourcesText) || '' : '';
  const closing = reason === 'ended' && message.closingMessage ? `\u201C${message.closingMessage}\u201D` : '';
  showMessage(heading, text, { hint, action, more: closing, help });
}

function onTrackPublished(message) {
  // The SDP only carries stream ids; this tells us whose stream it is.
  state.streamOwners.set(message.streamId, message.participantId);
}

// ---------------------------------------------------------------------------------------
// Joining and leaving.

export function startSession() {
  clearTimeout(state.reconnectTimer);
  const claims = state.claims;
  state.roomId = claims.room;
  state.name = claims.name;
  state.role = claims.role;
  state.reconnectAttempt = 0;
  state.admitted = false;
  state.self = null;
  state.audioHardMuted = false;
  state.videoHardMuted = false;
  state.handRaised = false;
  state.modNotes = { audio: '', video: '' };
  state.room = { locked: false, waitingRoom: true, spotlight: null };
  state.door = { groupName: null, therapistName: null, therapistHere: false, welcome: null, sessionEnded: false };
  clearAlert();
  ui.roomName.textContent = state.roomId;
  ui.peopleCount.textContent = '';
  setStatus('connecting');
  ui.lobbyHeading.focus();
  // Start the camera now, so the preview shows while the server answers.
  if (publishes()) ensureLocalMedia();
  openSocket();
}

export function stopSession() {
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  state.nodeUrl = null;
  state.redirectPending = false;
  clearTimeout(state.arrivalTimer);
  closeSocket();
  teardownPeer();
  clearRemoteTiles();
  stopLocalMedia();
  state.participants.clear();
  state.space = null;
  state.spacesUsed = false;
  state.streamOwners.clear();
  state.waiting = [];
  state.arrivals.clear();
  state.admitted = false;
  state.confirmRemove = null;
  ui.soundButton.hidden = true;
  dismissConfirm();
}

/** `endSession` with the closing message the therapist wrote (asked again when support is open). */
export function endSessionMessage(extra = {}) {
  const message = { type: 'endSession', ...extra };
  if (state.closingMessage) message.closingMessage = state.closingMessage;
  return message;
}

export function leave() {
  log('leaving');
  send({ type: 'leave' });
  stopSession();
  state.participantId = null;
  clearAlert();
  setStatus('left');
  emit('local:left');
  showLinkView({ left: true });
}

on('joined', onJoined);
on('admitted', onAdmitted);
on('waitingList', (m) => onWaitingList(m.waiting || []));
on('roomStateChanged', (m) => onRoomState(m.room));
on('participantJoined', (m) => onParticipantJoined(m.participant));
on('participantLeft', (m) => onParticipantLeft(m.participantId));
on('participantUpdated', (m) => onParticipantUpdated(m.participant));
on('spaceChanged', onSpaceChanged);
on('spaceRoster', (m) => replaceRoster(m.participants || [], { announceMoves: true }));
on('mutedByModerator', (m) => onMutedByModerator(m.kind, Boolean(m.hard)));
on('unmutedByModerator', (m) => onUnmutedByModerator(m.kind));
on('sessionEnded', onSessionEnded);
on('waitingRoom', onWaitingRoom);
on('trackPublished', onTrackPublished);
