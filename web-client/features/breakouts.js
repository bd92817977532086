// Hearth web client: breakout rooms. A module: it hears the server through
// the bus (on(type, fn)) and talks to it through send(message) (core/connection.js). The core
// itself makes the video grid and the people list follow the space you are in (spaceChanged,
// spaceRoster); this file shows where you are and lets the therapist run the rooms.
//
// Everyone: a bar at the top of the room says which room you are in ("You are in breakout:
// Garden", "You are in the main room"), the time left (the server's `closesAtMs`, counted down
// here every second, announced politely at minute marks and at the warning), the close-all
// countdown, the therapist's broadcasts (a banner, announced), "Ask for help" while in a
// breakout (confirmed on screen), and "Return to main room" when the therapist allows it.
//
// Therapists: a "Breakout rooms" panel in the sidebar: create named rooms, choose a room per
// person (a labelled select each; dragging a name onto a room also works), assign evenly at
// random, options (duration, warning, may return), Open; while open: who is where (live),
// Visit a room and Back to main room, reassign, Broadcast to every room, Close all with a
// countdown. A participant's "Ask for help" raises an alert that cannot be missed, with a
// "Go to their room" button. The server enforces every rule; this file only mirrors them.

import { announce } from '../lib/announce.js';
import { el, visuallyHidden as vh } from '../lib/dom.js';
import { formatLeft } from '../lib/format.js';
import { ICONS, svgIcon } from '../lib/icons.js';
import { on } from '../core/bus.js';
import { CODES } from '../core/codes.js';
import { send as sendToServer } from '../core/connection.js';
import { exposeProbe } from '../core/probe.js';
import { can, isStaff, state } from '../core/state.js';

const LIMITS = { name: 60, broadcast: 500, maxMinutes: 240, maxCountdown: 300 };
/** After asking for help, the button rests this long before it can be pressed again. */
const HELP_REST_MS = 30000;
/** How long "You are back in the main room" stays up after the breakouts close. */
const BACK_NOTE_MS = 10000;
const DEFAULT_CLOSE_COUNTDOWN = 10;
const WARNINGS = [['30', '30 seconds before'], ['60', '1 minute before'], ['120', '2 minutes before'], ['300', '5 minutes before']];
const ERRORS = {
  [CODES.UNKNOWN_BREAKOUT]: 'That breakout room is not open any more.',
  [CODES.RETURN_NOT_ALLOWED]: 'The therapist asked everyone to stay in their breakout room for now.',
  [CODES.INVALID_FIELD]: 'Please check what you entered: ',
  [CODES.UNKNOWN_PARTICIPANT]: 'That person is no longer in the session.',
};

const bo = {
  /** The breakout you are in ({ id, name }); null in the main room or a private room. */
  space: null,
  inPrivate: false,
  /** When the breakouts close by themselves (server clock, ms since the epoch), if they do. */
  closesAtMs: null,
  allowReturn: false,
  /** The breakout you were last in, to go back to it after stepping out. */
  lastBreakout: null,
  steppedOut: false,
  /** The close-all countdown ends at this (local) time. */
  closingAt: null,
  warned: false,
  /** Whole minutes left at the last tick, so each minute mark is announced once. */
  lastMark: null,
  backUntil: 0,
  help: { state: 'idle', timer: null },
  /** Therapists: the last breakout plan from the server. */
  plan: { open: false, rooms: [], closesAtMs: null, allowReturn: false, whereabouts: [] },
  alerts: new Map(), // participantId -> { request, node }
  /** What we last asked for, so an error lands next to the right control. */
  pending: null,
  admitted: false,
  events: [], // server message types seen, for tests and support
  ticker: null,
};

const me = () => state.participantId;

// ---------------------------------------------------------------------------------------
// Spoken times and room names.

function spokenMinutes(minutes) {
  return minutes === 1 ? '1 minute' : `${minutes} minutes`;
}

function spokenSeconds(secs) {
  if (secs >= 60 && secs % 60 === 0) return spokenMinutes(secs / 60);
  return secs === 1 ? '1 second' : `${secs} seconds`;
}

const roomName = (id) => {
  if (!id) return 'the main room';
  if (id.startsWith('private-')) return 'a private room';
  const room = bo.plan.rooms.find((r) => r.id === id);
  return room ? room.name : 'a breakout room';
};

// ---------------------------------------------------------------------------------------
// Everyone: where you are, the time left, and the ways out.

const spaceTitle = el('h2', { id: 'space-title', class: 'space-title', tabindex: '-1' });
const spaceTime = el('p', { id: 'space-time', class: 'space-time', role: 'timer', 'aria-atomic': 'true' });
const spaceClosing = el('p', { id: 'space-closing', class: 'space-closing', hidden: true });
const spaceStatus = el('p', { id: 'space-status', class: 'space-status', role: 'status' });
const helpButton = el('button', {
  id: 'space-help', type: 'button', class: 'button small space-help', 'aria-describedby': 'space-help-hint',
  onclick: () => askForHelp(),
}, svgIcon(ICONS.help), el('span', { class: 'label', text: 'Ask for help' }));
const helpHint = el('span', { id: 'space-help-hint', class: 'visually-hidden', text: 'Asks the therapist to come to your room.' });
const returnButton = el('button', {
  id: 'space-return', type: 'button', class: 'button small', onclick: () => goTo(null),
}, el('span', { class: 'label', text: 'Return to main room' }));
const rejoinButton = el('button', {
  id: 'space-rejoin', type: 'button', class: 'button small accent',
  onclick: () => { if (bo.lastBreakout) goTo(bo.lastBreakout.id); },
}, el('span', { class: 'label', text: 'Back to my breakout' }));
const banner = el('section', { id: 'space-banner', class: 'space-banner', 'aria-labelledby': 'space-title', hidden: true },
  el('div', { class: 'space-icon', 'aria-hidden': 'true' }, svgIcon(ICONS.door)),
  el('div', { class: 'space-body' },
    el('div', { class: 'space-head' }, spaceTitle, spaceTime),
    spaceClosing,
    spaceStatus,
    el('div', { class: 'space-actions' }, helpButton, returnButton, rejoinButton, helpHint)));

const broadcastText = el('p', { class: 'bb-text' });
const broadcastFrom = el('p', { class: 'bb-from' });
const broadcastBanner = el('section', { id: 'breakout-broadcast', class: 'breakout-broadcast', 'aria-label': 'Message to all rooms', hidden: true },
  el('div', { class: 'bb-icon', 'aria-hidden': 'true' }, svgIcon(ICONS.megaphone)),
  el('div', { class: 'bb-body' }, broadcastFrom, broadcastText),
  el('button', {
    id: 'breakout-broadcast-ok', type: 'button', class: 'button small',
    onclick: () => { broadcastBanner.hidden = true; },
  }, el('span', { text: 'OK' }), vh(', hide this message')));

function mountBanner() {
  const room = document.getElementById('room-panel');
  if (!room || banner.isConnected) return;
  const body = room.querySelector('.room-body');
  room.insertBefore(broadcastBanner, body || null);
  room.insertBefore(banner, body || null);
}

function closingLeft() {
  return bo.closingAt ? Math.max(0, Math.ceil((bo.closingAt - Date.now()) / 1000)) : 0;
}

function canRejoin() {
  return !isStaff() && bo.steppedOut && bo.allowReturn && Boolean(bo.lastBreakout) && !bo.closingAt
    && (!bo.closesAtMs || bo.closesAtMs > Date.now());
}

function renderBanner() {
  mountBanner();
  const therapist = isStaff();
  const inBreakout = Boolean(bo.space);
  const closing = Boolean(bo.closingAt);
  const backNote = !inBreakout && Date.now() < bo.backUntil;
  const therapistWatching = therapist && bo.plan.open;
  const show = bo.admitted && !bo.inPrivate && (inBreakout || closing || backNote || canRejoin() || therapistWatching);
  banner.hidden = !show;
  if (!show) return;
  banner.classList.toggle('in-breakout', inBreakout);
  banner.classList.toggle('warning', (inBreakout && bo.warned) || closing);
  if (inBreakout) {
    spaceTitle.textContent = therapist ? `You are visiting breakout: ${bo.space.name}` : `You are in breakout: ${bo.space.name}`;
  } else {
    spaceTitle.textContent = backNote && !closing ? 'You are back in the main room' : 'You are in the main room';
  }
  renderTime();
  helpButton.hidden = !inBreakout || therapist || closing;
  returnButton.hidden = !inBreakout || !(therapist || bo.allowReturn);
  returnButton.querySelector('.label').textContent = therapist ? 'Back to main room' : 'Return to main room';
  rejoinButton.hidden = inBreakout || !canRejoin();
  if (bo.lastBreakout) rejoinButton.querySelector('.label').textContent = `Back to ${bo.lastBreakout.name}`;
}

/** The countdowns; called every second while one runs. */
function renderTime() {
  const inBreakout = Boolean(bo.space);
  const closing = Boolean(bo.closingAt);
  const closesAt = inBreakout ? bo.closesAtMs : bo.plan.open ? bo.plan.closesAtMs : null;
  if (closing) {
    const left = closingLeft();
    spaceTime.hidden = false;
    spaceTime.textContent = left > 0 ? `0:${String(left).padStart(2, '0')}` : '0:00';
    spaceClosing.hidden = false;
    spaceClosing.textContent = left > 0
      ? `The breakout rooms are closing. ${inBreakout ? 'You return' : 'Everyone returns'} to the main room in ${spokenSeconds(left)}.`
      : 'The breakout rooms are closing now. Everyone is returning to the main room.';
  } else {
    spaceClosing.hidden = true;
    spaceTime.hidden = !(inBreakout || (isStaff() && bo.plan.open));
    if (closesAt) {
      const ms = closesAt - Date.now();
      spaceTime.textContent = `${formatLeft(ms)} left`;
      spaceTime.setAttribute('aria-label', `${spokenMinutes(Math.ceil(Math.max(0, ms) / 60000))} left`);
    } else {
      spaceTime.textContent = 'No time limit';
      spaceTime.removeAttribute('aria-label');
    }
  }
}

/** Minute marks, announced politely: every minute in the last five, every five before that. */
function announceMinuteMarks() {
  if (!bo.space || !bo.closesAtMs || bo.closingAt) return;
  const secs = Math.ceil((bo.closesAtMs - Date.now()) / 1000);
  const mark = Math.ceil(secs / 60);
  if (bo.lastMark !== null && mark < bo.lastMark && mark > 0 && (mark <= 5 || mark % 5 === 0)) {
    announce(`${spokenMinutes(mark)} left in ${bo.space.name}.`);
  }
  bo.lastMark = mark;
}

function tick() {
  if (bo.closingAt && Date.now() > bo.closingAt + 5000) bo.closingAt = null; // we never moved
  announceMinuteMarks();
  renderBanner();
  renderPanelState();
  const running = bo.closingAt || (bo.space && bo.closesAtMs) || (bo.plan.open && bo.plan.closesAtMs)
    || Date.now() < bo.backUntil || (bo.steppedOut && bo.closesAtMs);
  if (!running) stopTicker();
}

function startTicker() {
  if (!bo.ticker) bo.ticker = setInterval(tick, 1000);
}

function stopTicker() {
  clearInterval(bo.ticker);
  bo.ticker = null;
}

function goTo(breakoutId) {
  bo.pending = { kind: 'goTo', breakoutId };
  if (!sendToServer({ type: 'goToBreakout', breakoutId })) {
    bo.pending = null;
    setSpaceStatus('Not connected right now. Please try again in a moment.');
  }
}

function setSpaceStatus(text, { ok = false } = {}) {
  spaceStatus.replaceChildren(...(text ? [ok ? svgIcon(ICONS.check) : '', text].filter(Boolean) : []));
  spaceStatus.classList.toggle('ok', ok && Boolean(text));
}

function askForHelp() {
  if (bo.help.state === 'sent') return;
  if (!sendToServer({ type: 'askForHelp' })) {
    setSpaceStatus('Not connected right now. Please try again in a moment.');
    return;
  }
  bo.help.state = 'sent';
  helpButton.disabled = true;
  helpButton.classList.add('requested');
  helpButton.querySelector('.label').textContent = 'Help requested';
  setSpaceStatus(`The therapist has been asked to come to ${bo.space ? bo.space.name : 'your room'}. They will join you as soon as they can.`, { ok: true });
  clearTimeout(bo.help.timer);
  bo.help.timer = setTimeout(resetHelp, HELP_REST_MS);
}

function resetHelp() {
  clearTimeout(bo.help.timer);
  bo.help.state = 'idle';
  helpButton.disabled = false;
  helpButton.classList.remove('requested');
  helpButton.querySelector('.label').textContent = 'Ask for help';
}

// A broadcast is about now ("5 minutes left"): after a while it turns grey and says when it
// was sent, so an old message is never read as a new one.
const BROADCAST_FRESH_MS = 3 * 60_000;
let broadcastTimer = null;

function showBroadcast(from, text) {
  mountBanner();
  const sentAt = new Date();
  broadcastFrom.textContent = `Message to all rooms from ${from}`;
  broadcastText.textContent = text;
  broadcastBanner.classList.remove('stale');
  broadcastBanner.hidden = false;
  clearTimeout(broadcastTimer);
  broadcastTimer = setTimeout(() => {
    broadcastBanner.classList.add('stale');
    const at = sentAt.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    broadcastFrom.textContent = `Earlier message to all rooms from ${from} (sent at ${at})`;
  }, BROADCAST_FRESH_MS);
}

// ---------------------------------------------------------------------------------------
// Therapists: the breakout panel.

let uid = 0;
const heading = el('h2', { id: 'breakouts-heading', tabindex: '-1', text: 'Breakout rooms' });
const stateChip = el('span', { id: 'bo-state', class: 'bo-state' });
const intro = el('p', { id: 'bo-intro', class: 'hint bo-intro', text: 'Split the group into smaller rooms: name the rooms, choose who goes where, then open them.' });

const nameInput = el('input', {
  id: 'bo-name', type: 'text', maxlength: String(LIMITS.name), autocomplete: 'off', placeholder: 'For example: Garden',
});
const createError = el('p', { id: 'bo-create-error', class: 'form-error bo-error', role: 'alert' });
const createForm = el('form', { id: 'bo-create-form', class: 'bo-create', novalidate: true },
  el('label', { for: 'bo-name', text: 'New room name' }),
  el('div', { class: 'bo-inline' }, nameInput, el('button', { id: 'bo-add', type: 'submit', class: 'button small accent', text: 'Add room' })),
  createError);

const roomList = el('ul', { id: 'bo-rooms', class: 'bo-rooms', 'aria-label': 'Rooms and who is in them' });

const autoButton = el('button', {
  id: 'bo-auto', type: 'button', class: 'button small', onclick: () => send({ type: 'autoAssignBreakouts' }, 'auto'),
}, el('span', { text: 'Assign evenly at random' }));
const peopleList = el('ul', { id: 'bo-people', class: 'bo-people', 'aria-labelledby': 'bo-people-heading' });
const peopleEmpty = el('p', { id: 'bo-people-empty', class: 'empty', text: 'No participants yet.' });
const assignBlock = el('div', { id: 'bo-assign', class: 'bo-block' },
  el('div', { class: 'bo-block-head' }, el('h3', { id: 'bo-people-heading', text: 'Who goes where' }), autoButton),
  el('p', { class: 'hint', id: 'bo-assign-hint' }),
  peopleEmpty,
  peopleList);

const durationInput = el('input', {
  id: 'bo-duration', type: 'number', class: 'text-field', min: '1', max: String(LIMITS.maxMinutes), step: '1', inputmode: 'numeric',
  placeholder: 'No limit', 'aria-describedby': 'bo-duration-hint',
});
const warningSelect = el('select', { id: 'bo-warning', 'aria-describedby': 'bo-warning-hint' },
  WARNINGS.map(([value, text]) => el('option', { value, text, selected: value === '60' })));
const allowReturn = el('input', { id: 'bo-allow-return', type: 'checkbox' });
const openError = el('p', { id: 'bo-open-error', class: 'form-error bo-error', role: 'alert' });
const openButton = el('button', { id: 'bo-open', type: 'submit', class: 'button accent bo-open', text: 'Open breakout rooms' });
const optionsForm = el('form', { id: 'bo-options', class: 'bo-block bo-options', novalidate: true },
  el('h3', { text: 'Options' }),
  el('div', { class: 'bo-field' },
    el('label', { for: 'bo-duration', text: 'Duration in minutes (optional)' }),
    durationInput,
    el('p', { id: 'bo-duration-hint', class: 'hint', text: 'Leave empty for no time limit. Everyone sees the time left.' })),
  el('div', { class: 'bo-field' },
    el('label', { for: 'bo-warning', text: 'Warn everyone' }),
    warningSelect,
    el('p', { id: 'bo-warning-hint', class: 'hint', text: 'Only with a duration.' })),
  el('label', { class: 'bo-check', for: 'bo-allow-return' }, allowReturn, el('span', { text: 'Participants may return to the main room by themselves' })),
  openButton,
  openError);

const broadcastInput = el('textarea', {
  id: 'bo-broadcast', class: 'text-field', rows: '2', maxlength: String(LIMITS.broadcast), 'aria-describedby': 'bo-broadcast-status',
});
const broadcastStatus = el('p', { id: 'bo-broadcast-status', class: 'hint', role: 'status' });
const broadcastForm = el('form', { id: 'bo-broadcast-form', class: 'bo-block', novalidate: true },
  el('label', { for: 'bo-broadcast', text: 'Message to every room' }),
  broadcastInput,
  el('div', { class: 'bo-inline bo-end' }, el('button', { id: 'bo-broadcast-send', type: 'submit', class: 'button small accent', text: 'Send to all rooms' })),
  broadcastStatus);

const closeSecs = el('input', {
  id: 'bo-close-secs', type: 'number', class: 'text-field', min: '0', max: String(LIMITS.maxCountdown), step: '1', inputmode: 'numeric',
  value: String(DEFAULT_CLOSE_COUNTDOWN), 'aria-describedby': 'bo-close-hint',
});
const closeButton = el('button', { id: 'bo-close', type: 'submit', class: 'button danger bo-close', text: 'Close all rooms' });
const closeError = el('p', { id: 'bo-close-error', class: 'form-error bo-error', role: 'alert' });
const closeForm = el('form', { id: 'bo-close-form', class: 'bo-block bo-close-form', novalidate: true },
  el('div', { class: 'bo-field' },
    el('label', { for: 'bo-close-secs', text: 'Countdown before everyone returns (seconds)' }),
    closeSecs,
    el('p', { id: 'bo-close-hint', class: 'hint', text: 'Everyone sees the countdown, then comes back to the main room.' })),
  closeButton,
  closeError);

const panel = el('section', { id: 'breakouts-section', class: 'panel-section breakouts', 'aria-labelledby': 'breakouts-heading', hidden: true },
  el('div', { class: 'section-head' }, heading, stateChip),
  intro,
  roomList,
  createForm,
  assignBlock,
  optionsForm,
  broadcastForm,
  closeForm);

function mountPanel() {
  if (panel.isConnected) return;
  const sidebar = document.getElementById('sidebar');
  if (!sidebar) return;
  const people = document.getElementById('people-section');
  if (people && people.parentNode === sidebar) sidebar.insertBefore(panel, people);
  else sidebar.append(panel);
}

function send(message, kind) {
  bo.pending = { kind };
  if (!sendToServer(message)) {
    bo.pending = null;
    return false;
  }
  return true;
}

createForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const name = nameInput.value.trim();
  if (!name || [...name].length > LIMITS.name) {
    createError.textContent = `A room name is 1 to ${LIMITS.name} characters.`;
    nameInput.setAttribute('aria-invalid', 'true');
    nameInput.focus();
    return;
  }
  nameInput.removeAttribute('aria-invalid');
  createError.textContent = '';
  if (send({ type: 'createBreakout', name }, 'create')) {
    nameInput.value = '';
    nameInput.focus();
  } else {
    createError.textContent = 'Not connected right now. Please try again in a moment.';
  }
});

optionsForm.addEventListener('submit', (event) => {
  event.preventDefault();
  openError.textContent = '';
  const raw = durationInput.value.trim();
  const message = { type: 'openBreakouts', allowReturn: allowReturn.checked };
  if (raw) {
    const minutes = Number(raw);
    if (!Number.isFinite(minutes) || minutes <= 0 || minutes > LIMITS.maxMinutes) {
      openError.textContent = `The duration is 1 to ${LIMITS.maxMinutes} minutes; leave it empty for no limit.`;
      durationInput.setAttribute('aria-invalid', 'true');
      durationInput.focus();
      return;
    }
    message.durationSecs = Math.max(1, Math.round(minutes * 60));
    message.warningSecs = Number(warningSelect.value);
  }
  durationInput.removeAttribute('aria-invalid');
  if (!send(message, 'open')) openError.textContent = 'Not connected right now. Please try again in a moment.';
});

broadcastForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = broadcastInput.value.trim();
  if (!text || [...text].length > LIMITS.broadcast) {
    broadcastStatus.textContent = `A message is 1 to ${LIMITS.broadcast} characters.`;
    broadcastInput.focus();
    return;
  }
  if (send({ type: 'broadcastToBreakouts', text }, 'broadcast')) {
    bo.pending.text = text;
    broadcastStatus.textContent = 'Sending…';
  } else {
    broadcastStatus.textContent = 'Not connected right now. Your message was not sent.';
  }
});
broadcastInput.addEventListener('keydown', (event) => {
  // Enter sends; Shift+Enter starts a new line (as in the chat).
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    broadcastForm.requestSubmit();
  }
});

closeForm.addEventListener('submit', (event) => {
  event.preventDefault();
  closeError.textContent = '';
  const raw = closeSecs.value.trim();
  const secs = raw === '' ? DEFAULT_CLOSE_COUNTDOWN : Number(raw);
  if (!Number.isInteger(secs) || secs < 0 || secs > LIMITS.maxCountdown) {
    closeError.textContent = `The countdown is 0 to ${LIMITS.maxCountdown} seconds.`;
    closeSecs.focus();
    return;
  }
  if (!send({ type: 'closeBreakouts', countdownSecs: secs }, 'close')) {
    closeError.textContent = 'Not connected right now. Please try again in a moment.';
  }
});

/** Where the therapist is, per the server. */
function myPlace() {
  const w = bo.plan.whereabouts.find((x) => x.participantId === me());
  return w ? w.breakoutId : null;
}

/**
 * Everyone in the session as the plan lists them. Before the first breakout exists the server
 * sends no plan, so the main room is the roster: ourselves and everyone in our space.
 */
function whereabouts() {
  const plan = bo.plan;
  if (plan.rooms.length || plan.whereabouts.length) return plan.whereabouts;
  const me = state.self ? [state.self] : [];
  return [...me, ...state.participants.values()].map((p) => ({ participantId: p.id, name: p.name, role: p.role, breakoutId: null }));
}

/** Who is (open) or will be (not yet open) in each room, main room included (key ''). */
function occupancy() {
  const plan = bo.plan;
  const byRoom = new Map([['', []], ...plan.rooms.map((r) => [r.id, []])]);
  const assigned = new Map();
  if (!plan.open) for (const r of plan.rooms) for (const id of r.members) assigned.set(id, r.id);
  for (const w of whereabouts()) {
    const where = plan.open ? (w.breakoutId || '') : (assigned.get(w.participantId) || '');
    if (!byRoom.has(where)) byRoom.set(where, []);
    byRoom.get(where).push(w);
  }
  return { byRoom, assigned };
}

const roomCards = new Map(); // breakoutId ('' for the main room) -> li

function renderRooms() {
  const plan = bo.plan;
  const { byRoom } = occupancy();
  const here = myPlace() || '';
  const rooms = [{ id: '', name: 'Main room' }, ...plan.rooms];
  // Someone in a private room with a therapist (chat.js opens those) is listed there.
  for (const id of byRoom.keys()) if (id.startsWith('private-')) rooms.push({ id, name: 'Private room', private: true });
  const focused = document.activeElement && roomList.contains(document.activeElement)
    ? { id: document.activeElement.closest('li').dataset.breakoutId, action: document.activeElement.dataset.action } : null;
  const ids = new Set(rooms.map((r) => r.id));
  for (const [id, li] of roomCards) if (!ids.has(id)) { li.remove(); roomCards.delete(id); }
  for (const room of rooms) {
    let li = roomCards.get(room.id);
    if (!li) {
      li = el('li', { class: `bo-room${room.id ? '' : ' main'}`, 'data-breakout-id': room.id });
      wireDrop(li);
      roomCards.set(room.id, li);
    }
    const people = byRoom.get(room.id) || [];
    const names = people.map((w) => (w.participantId === me() ? 'You' : w.name));
    const youHere = plan.open ? here === room.id : false;
    const count = el('span', { class: 'count-badge' }, String(people.length), vh(people.length === 1 ? ' person' : ' people'));
    const head = el('div', { class: 'bo-room-head' },
      el('h3', { class: 'bo-room-name', text: room.name }), count,
      youHere ? el('span', { class: 'bo-here', text: 'You are here' }) : null);
    const members = names.length
      ? el('ul', { class: 'bo-members', 'aria-label': `In ${room.name}` }, names.map((n) => el('li', { text: n })))
      : el('p', { class: 'bo-members empty', text: room.id ? (plan.open ? 'No one here now.' : 'No one assigned yet.') : (plan.open ? 'No one here now.' : 'Everyone not assigned stays here.') });
    const actions = el('div', { class: 'bo-room-actions' });
    if (plan.open && !youHere && !room.private) {
      actions.append(room.id
        ? el('button', { type: 'button', class: 'button small accent', 'data-action': 'visit', onclick: () => goTo(room.id) },
          el('span', { text: 'Visit' }), vh(` ${room.name}`))
        : el('button', { type: 'button', class: 'button small accent', 'data-action': 'visit', onclick: () => goTo(null) },
          el('span', { text: 'Back to main room' })));
    }
    if (!plan.open && room.id) {
      actions.append(el('button', {
        type: 'button', class: 'button small danger-outline', 'data-action': 'delete',
        onclick: () => send({ type: 'deleteBreakout', breakoutId: room.id }, 'delete'),
      }, el('span', { text: 'Delete' }), vh(` ${room.name}`)));
    }
    li.classList.toggle('here', youHere);
    li.replaceChildren(head, members, ...(actions.children.length ? [actions] : []));
  }
  const order = rooms.map((r) => roomCards.get(r.id));
  if (!(roomList.children.length === order.length && order.every((li, i) => roomList.children[i] === li))) roomList.replaceChildren(...order);
  if (focused) {
    const li = roomCards.get(focused.id);
    const target = li && (li.querySelector(`[data-action="${focused.action}"]`) || li.querySelector('button'));
    (target || heading).focus();
  }
}

const personRows = new Map(); // participantId -> { li, select }

function renderPeople() {
  const plan = bo.plan;
  const { assigned } = occupancy();
  const people = plan.whereabouts.filter((w) => w.role !== 'therapist');
  const ids = new Set(people.map((w) => w.participantId));
  for (const [id, row] of personRows) if (!ids.has(id)) { row.li.remove(); personRows.delete(id); }
  const signature = plan.rooms.map((r) => `${r.id}:${r.name}`).join('|');
  for (const w of people) {
    let row = personRows.get(w.participantId);
    if (!row) {
      uid += 1;
      const selectId = `bo-assign-${uid}`;
      const select = el('select', { id: selectId, 'data-participant-id': w.participantId });
      select.addEventListener('change', () => {
        send({ type: 'assignBreakout', participantId: w.participantId, breakoutId: select.value || null }, 'assign');
      });
      const label = el('label', { for: selectId, class: 'bo-person-name' });
      const li = el('li', { class: 'bo-person', 'data-participant-id': w.participantId, draggable: 'true' }, label, select);
      li.addEventListener('dragstart', (event) => {
        event.dataTransfer.setData('text/plain', w.participantId);
        event.dataTransfer.effectAllowed = 'move';
        li.classList.add('dragging');
      });
      li.addEventListener('dragend', () => li.classList.remove('dragging'));
      row = { li, select, label, signature: null };
      personRows.set(w.participantId, row);
    }
    // Their connection dropped (in any space): the therapist sees it here, in words.
    row.label.textContent = `${w.role === 'observer' ? `${w.name} (observer)` : w.name}${w.reconnecting ? ' (reconnecting…)' : ''}`;
    row.li.classList.toggle('reconnecting', Boolean(w.reconnecting));
    const place = plan.open ? (w.breakoutId || '') : (assigned.get(w.participantId) || '');
    const optionsKey = `${signature}#${place.startsWith('private-') ? place : ''}`;
    if (row.signature !== optionsKey) {
      const options = [el('option', { value: '', text: 'Main room' }), ...plan.rooms.map((r) => el('option', { value: r.id, text: r.name }))];
      if (place.startsWith('private-')) options.push(el('option', { value: place, text: 'Private room (with a therapist)', disabled: true }));
      row.select.replaceChildren(...options);
      row.signature = optionsKey;
    }
    if (row.select.value !== place) row.select.value = place;
    row.select.disabled = plan.rooms.length === 0;
  }
  const order = people.map((w) => personRows.get(w.participantId).li);
  if (!(peopleList.children.length === order.length && order.every((li, i) => peopleList.children[i] === li))) {
    const focused = document.activeElement;
    peopleList.replaceChildren(...order);
    if (focused && focused.isConnected && peopleList.contains(focused) && document.activeElement !== focused) focused.focus();
  }
  peopleEmpty.hidden = people.length > 0;
  document.getElementById('bo-assign-hint').textContent = plan.open
    ? 'Changing a room moves that person at once.'
    : 'Pick a room for each person, or drag a name onto a room.';
}

function wireDrop(li) {
  li.addEventListener('dragover', (event) => {
    if (!bo.plan.rooms.length) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'move';
    li.classList.add('drop-target');
  });
  li.addEventListener('dragleave', () => li.classList.remove('drop-target'));
  li.addEventListener('drop', (event) => {
    event.preventDefault();
    li.classList.remove('drop-target');
    const participantId = event.dataTransfer.getData('text/plain');
    if (!participantId || !personRows.has(participantId)) return;
    send({ type: 'assignBreakout', participantId, breakoutId: li.dataset.breakoutId || null }, 'assign');
  });
}

/** The chip next to the heading: closed, open with the time left, or closing. */
function renderPanelState() {
  if (panel.hidden) return;
  const plan = bo.plan;
  let text;
  if (!plan.open) text = plan.rooms.length ? 'Not open yet' : '';
  else if (bo.closingAt) text = `Closing in ${closingLeft()} s`;
  else if (plan.closesAtMs) text = `Open · ${formatLeft(plan.closesAtMs - Date.now())} left`;
  else text = 'Open';
  stateChip.textContent = text;
  stateChip.hidden = !text;
  stateChip.classList.toggle('open', plan.open);
  stateChip.classList.toggle('closing', Boolean(plan.open && bo.closingAt));
}

function renderPanel() {
  mountPanel();
  // The plan is for whoever may make breakouts (therapists, co-facilitators unless withheld).
  const therapist = can('createBreakout') && bo.admitted;
  panel.hidden = !therapist;
  if (!therapist) return;
  const plan = bo.plan;
  const hasRooms = plan.rooms.length > 0;
  intro.hidden = hasRooms;
  createForm.hidden = false;
  assignBlock.hidden = !hasRooms;
  autoButton.disabled = !hasRooms;
  optionsForm.hidden = plan.open || !hasRooms;
  broadcastForm.hidden = !plan.open;
  closeForm.hidden = !plan.open;
  closeButton.disabled = Boolean(bo.closingAt);
  closeButton.textContent = bo.closingAt ? 'Closing…' : 'Close all rooms';
  renderRooms();
  renderPeople();
  renderPanelState();
}

// ---------------------------------------------------------------------------------------
// Therapists: help requests.

const helpStack = el('div', { id: 'help-alerts', class: 'urgent-alerts help-alerts', role: 'alert', 'aria-live': 'assertive' });

function onHelpRequested(request) {
  if (!isStaff()) return;
  if (!helpStack.isConnected) document.body.append(helpStack);
  const existing = bo.alerts.get(request.participantId);
  if (existing) existing.node.remove();
  const where = roomName(request.breakoutId);
  const inThere = request.breakoutId && request.breakoutId === myPlace();
  const goButton = el('button', {
    type: 'button', class: 'button help-go', 'data-action': 'go-to-room',
    onclick: () => { goTo(request.breakoutId || null); status.textContent = `Going to ${where}…`; goButton.disabled = true; },
  }, el('span', { text: 'Go to their room' }), vh(`, ${where}`));
  const status = el('p', { class: 'urgent-alert-status help-alert-status' });
  const node = el('section', { class: 'urgent-alert help-alert', 'data-participant-id': request.participantId, 'aria-label': `${request.name} asks for help` },
    el('div', { class: 'urgent-alert-icon help-alert-icon', 'aria-hidden': 'true' }, svgIcon(ICONS.help)),
    el('div', { class: 'urgent-alert-body help-alert-body' },
      el('p', { class: 'urgent-alert-title help-alert-title', text: `${request.name} asks for help` }),
      el('p', { class: 'urgent-alert-detail help-alert-detail', text: `In ${where}.${inThere ? ' You are already there.' : ''}` }),
      status,
      el('div', { class: 'urgent-alert-actions help-alert-actions' },
        inThere ? null : goButton,
        el('button', {
          type: 'button', class: 'button small help-dismiss', 'data-action': 'dismiss',
          onclick: () => dismissAlert(request.participantId),
        }, el('span', { text: 'Dismiss' }), vh(` the request from ${request.name}`)))));
  bo.alerts.set(request.participantId, { request, node });
  helpStack.append(node);
}

function dismissAlert(participantId) {
  const a = bo.alerts.get(participantId);
  if (!a) return;
  a.node.remove();
  bo.alerts.delete(participantId);
}

// ---------------------------------------------------------------------------------------
// Server messages.

function seen(type) {
  bo.events.push(type);
  if (bo.events.length > 200) bo.events.shift();
}

function reset() {
  bo.space = null;
  bo.inPrivate = false;
  bo.closesAtMs = null;
  bo.allowReturn = false;
  bo.lastBreakout = null;
  bo.steppedOut = false;
  bo.closingAt = null;
  bo.warned = false;
  bo.lastMark = null;
  bo.backUntil = 0;
  bo.plan = { open: false, rooms: [], closesAtMs: null, allowReturn: false, whereabouts: [] };
  bo.pending = null;
  for (const id of [...bo.alerts.keys()]) dismissAlert(id);
  resetHelp();
  setSpaceStatus('');
  broadcastBanner.hidden = true;
  clearTimeout(broadcastTimer);
  stopTicker();
}

on('joined', (m) => {
  seen('joined');
  if (!m.admitted && !bo.admitted) reset();
});

on('admitted', () => {
  seen('admitted');
  bo.admitted = true;
  // `admitted` carries the main room; `spaceChanged` follows at once if we are in a breakout.
  bo.space = null;
  bo.inPrivate = false;
  renderPanel();
  renderBanner();
});

on('spaceChanged', (m) => {
  seen('spaceChanged');
  const b = m.breakout || null;
  const before = bo.space;
  const wasPrivate = bo.inPrivate;
  // Private rooms and family spaces are not breakouts: their own panels say where you are.
  bo.inPrivate = Boolean(b && (b.id.startsWith('private-') || b.id.startsWith('family-')));
  bo.space = b && !bo.inPrivate ? { id: b.id, name: b.name } : null;
  bo.allowReturn = Boolean(m.allowReturn);
  const pending = bo.pending && bo.pending.kind === 'goTo' ? bo.pending : null;
  if (pending) bo.pending = null;
  setSpaceStatus('');
  if (bo.space) {
    bo.closesAtMs = m.closesAtMs || null;
    if (!before || before.id !== bo.space.id) {
      bo.lastMark = null;
      bo.warned = false;
      resetHelp();
      const others = (m.participants || []).filter((p) => p.id !== me()).map((p) => p.name);
      const time = bo.closingAt ? '' : bo.closesAtMs ? ` ${spokenMinutes(Math.max(1, Math.ceil((bo.closesAtMs - Date.now()) / 60000)))} left.` : '';
      const withWhom = others.length ? ` With ${others.join(', ')}.` : ' No one else is here yet.';
      announce(`You are now in breakout ${bo.space.name}.${withWhom}${time}`);
    }
    bo.lastBreakout = { ...bo.space };
    bo.steppedOut = false;
    // Help requests from this room are answered by being here.
    for (const [id, a] of bo.alerts) if (a.request.breakoutId === bo.space.id) dismissAlert(id);
  } else if (!bo.inPrivate) {
    if (before) {
      if (pending && pending.breakoutId === null && !bo.closingAt) {
        bo.steppedOut = true;
        announce('You are back in the main room.');
      } else {
        bo.steppedOut = false;
        bo.closingAt = null;
        bo.backUntil = Date.now() + BACK_NOTE_MS;
        announce('The breakout rooms have closed. You are back in the main room with everyone.');
      }
    } else if (!wasPrivate) {
      bo.closingAt = null;
    }
    resetHelp();
  }
  renderBanner();
  renderPanel();
  startTicker();
});

// A help request is answered when a therapist comes into the room: the confirmation ends.
on('spaceRoster', ({ participants }) => {
  if (bo.help.state !== 'sent' || !bo.space) return;
  if (!(participants || []).some((p) => p.role === 'therapist')) return;
  resetHelp();
  setSpaceStatus('The therapist is here with you.', { ok: true });
});

on('breakoutsUpdated', ({ breakouts }) => {
  seen('breakoutsUpdated');
  const wasOpen = bo.plan.open;
  bo.plan = {
    open: Boolean(breakouts && breakouts.open),
    rooms: (breakouts && breakouts.rooms) || [],
    closesAtMs: (breakouts && breakouts.closesAtMs) || null,
    allowReturn: Boolean(breakouts && breakouts.allowReturn),
    whereabouts: (breakouts && breakouts.whereabouts) || [],
  };
  if (bo.pending && ['create', 'delete', 'assign', 'auto', 'open', 'close'].includes(bo.pending.kind)) bo.pending = null;
  if (!bo.plan.open) bo.closingAt = null;
  if (isStaff() && bo.plan.open !== wasOpen) {
    announce(bo.plan.open ? 'The breakout rooms are open.' : 'The breakout rooms are closed. Everyone is back in the main room.');
    if (!bo.plan.open) {
      broadcastInput.value = '';
      broadcastStatus.textContent = '';
    }
  }
  renderPanel();
  renderBanner();
  if (bo.plan.open) startTicker();
  // Open (or Close all) hid the button that had focus: land at the top of the panel.
  const focus = document.activeElement;
  if (isStaff() && bo.plan.open !== wasOpen && (!focus || focus === document.body || (panel.contains(focus) && focus.offsetParent === null))) {
    heading.focus();
  }
});

on('breakoutWarning', ({ secondsLeft }) => {
  seen('breakoutWarning');
  bo.warned = true;
  const left = spokenSeconds(secondsLeft);
  announce(bo.space
    ? `${left} left in ${bo.space.name}. The breakout rooms close soon.`
    : `The breakout rooms close in ${left}.`);
  bo.lastMark = Math.ceil(secondsLeft / 60); // the warning says it; skip the minute mark
  renderBanner();
  startTicker();
});

on('breakoutsClosing', ({ secondsLeft }) => {
  seen('breakoutsClosing');
  bo.closingAt = Date.now() + secondsLeft * 1000;
  bo.steppedOut = false;
  announce(bo.space
    ? `The therapist is closing the breakout rooms. You return to the main room in ${spokenSeconds(secondsLeft)}.`
    : `The therapist is closing the breakout rooms. Everyone returns here in ${spokenSeconds(secondsLeft)}.`);
  renderBanner();
  renderPanel();
  startTicker();
});

on('breakoutBroadcast', ({ from, text }) => {
  seen('breakoutBroadcast');
  if (isStaff() && bo.pending && bo.pending.kind === 'broadcast' && bo.pending.text === text) {
    // Our own message: confirm it where we wrote it.
    bo.pending = null;
    broadcastInput.value = '';
    broadcastStatus.textContent = 'Sent to every room.';
    return;
  }
  showBroadcast(from, text);
  announce(`Message to all rooms from ${from}: ${text}`);
});

on('helpRequested', (request) => {
  seen('helpRequested');
  onHelpRequested(request);
});

// Without a plan the main room's card shows the roster, which these change.
const rosterChanged = () => {
  if (!bo.plan.rooms.length) renderPanel();
};
on('participantJoined', rosterChanged);
on('participantLeft', rosterChanged);
on('participantUpdated', rosterChanged);

on('participantLeft', ({ participantId }) => {
  const a = bo.alerts.get(participantId);
  if (a) {
    a.node.querySelector('.help-alert-status').textContent = `${a.request.name} has left the session.`;
    const go = a.node.querySelector('[data-action="go-to-room"]');
    if (go) go.disabled = true;
  }
});

on('error', ({ code, message }) => {
  const pending = bo.pending;
  if (!pending) return;
  bo.pending = null;
  const text = code === CODES.INVALID_FIELD ? `${ERRORS[CODES.INVALID_FIELD]}${message}.` : ERRORS[code] || message;
  switch (pending.kind) {
    case 'goTo': setSpaceStatus(text); break;
    case 'create': createError.textContent = text; break;
    case 'open': openError.textContent = text; break;
    case 'close': closeError.textContent = text; break;
    case 'broadcast': broadcastStatus.textContent = text; break;
    default: break;
  }
});

on('sessionEnded', () => {
  bo.admitted = false;
  reset();
  renderPanel();
  renderBanner();
});
on('local:left', () => {
  bo.admitted = false;
  reset();
  renderPanel();
  renderBanner();
});

// Read-only view for tests and debugging.
exposeProbe('breakouts', () => ({
    space: bo.space && { ...bo.space },
    closesAtMs: bo.closesAtMs,
    closing: Boolean(bo.closingAt),
    allowReturn: bo.allowReturn,
    plan: JSON.parse(JSON.stringify(bo.plan)),
    alerts: [...bo.alerts.values()].map((a) => ({ ...a.request })),
    events: bo.events.slice(),
  }));

mountBanner();
mountPanel();
