// Hearth web client: in-call chat and the private "I need support" signal.
// A module: it hears the server through the bus (on(type, fn), core/bus.js) and talks to it
// through send(message) (core/connection.js).
//
// - Chat: a panel in the sidebar, opened from a Chat button (with an unread counter) in the
//   control bar. Messages go to everyone in the room you are in (the main room, a breakout or a
//   private room), or privately to a therapist (to other participants only when the therapist
//   allows it). Every message is shown as text (textContent), never as markup.
// - Chat is ephemeral: the panel says that messages sent before you joined are not shown.
// - "I need support" (participants): one calm button; the page says truthfully where the
//   request stands (nobody connected, sent, seen by the therapist) and shows the crisis
//   resources at once. Therapists get a standing item that cannot be missed (a fixed banner in
//   a colour used nowhere else, a soft chime, the tab title, and an assertive screen reader
//   alert) until they resolve it with an outcome: "I have seen this", a private room, Resolve.
// The server enforces every rule (roles, limits); this file mirrors them to help people.

import { announce } from '../lib/announce.js';
import { el } from '../lib/dom.js';
import { clock } from '../lib/format.js';
import { ICONS, svgIcon } from '../lib/icons.js';
import { on } from '../core/bus.js';
import { CODES } from '../core/codes.js';
import { confirmAction } from '../core/dialog.js';
import { send } from '../core/connection.js';
import { endSessionMessage } from '../core/session.js';
import { log } from '../core/log.js';
import { exposeProbe } from '../core/probe.js';
import { isStaff, isTherapist, state } from '../core/state.js';
import { NO_KEY_TEXT, NoKeyError, openText, outgoing } from '../e2ee/text.js';

const responds = () => isStaff() || state.role === 'peerSupport';

const MAX_CHARS = 1000;
const CHAT_ERRORS = {
  [CODES.SEALED_TEXT_REQUIRED]: 'This room is end-to-end encrypted and your message was not sealed, so it was not sent. Please reload the page.',
  [CODES.CHAT_DISABLED]: 'The therapist has paused the chat for now.',
  [CODES.INVALID_CHAT]: `A message can be 1 to ${MAX_CHARS} characters.`,
  [CODES.RATE_LIMITED]: 'You are sending messages quickly. Please wait a few seconds, then try again.',
  [CODES.PRIVATE_MESSAGES_OFF]: 'Private messages between participants are off. You can still write privately to the therapist.',
  [CODES.UNKNOWN_PARTICIPANT]: 'That person is not in this room any more.',
  [CODES.FORBIDDEN]: 'Only the therapist can do that.',
};
const SUPPORT_ERRORS = {
  [CODES.PRIVATE_ROOM_BUSY]: 'A private room is already open. Close it first.',
  [CODES.UNKNOWN_PARTICIPANT]: 'That person is not in the session any more.',
  [CODES.UNKNOWN_PRIVATE_ROOM]: 'That private room has already closed.',
};

const chat = {
  settings: { enabled: true, privateMessages: false, keepTranscript: false },
  messages: new Map(), // id -> { entry, node }
  unread: 0,
  open: false,
  admitted: false,
  /** id -> { name, role } of everyone this page has heard of in the session. */
  people: new Map(),
  /** Ids of those in the same space as you (you included). */
  here: new Set(),
  /** The space you are in: null for the main room, else { id, name }. */
  space: null,
  /** What we last asked the server for, so an error lands next to the right control. */
  pending: null,
  support: { state: 'idle', delivery: null, routedToPeers: false },
  alerts: new Map(), // participantId -> { request, node, status }
  sessionOver: false,
};

const me = () => state.participantId;
const nameOf = (id) => (id === me() ? 'You' : (chat.people.get(id) || {}).name || 'Someone');
const isPrivateSpace = (space) => Boolean(space && space.id.startsWith('private-'));

// ---------------------------------------------------------------------------------------
// Small DOM helpers (text only: nothing from the server is ever parsed as HTML).

// ---------------------------------------------------------------------------------------
// The control bar: Chat (with the unread counter) and, for participants, I need support.

const unreadBadge = el('span', { id: 'chat-unread', class: 'chat-unread', hidden: true });
const chatButton = el('button', {
  id: 'chat-button', type: 'button', class: 'button toggle chat-toggle', 'aria-expanded': 'false',
  'aria-controls': 'chat-section', hidden: true, onclick: () => setOpen(!chat.open, true),
}, svgIcon(ICONS.chat), el('span', { class: 'label', text: 'Chat' }), el('span', { class: 'short', text: 'Chat' }), unreadBadge);

const supportButton = el('button', {
  id: 'support-button', type: 'button', class: 'button support-button', hidden: true,
  'aria-describedby': 'support-hint', onclick: () => requestSupport(),
}, svgIcon(ICONS.heart), el('span', { class: 'label', text: 'I need support' }), el('span', { class: 'short', text: 'Support' }));
const supportHint = el('span', { id: 'support-hint', class: 'visually-hidden', text: 'Tells only the therapist, privately.' });

function mountControls() {
  const controls = document.getElementById('controls');
  if (!controls || chatButton.isConnected) return;
  // Before "More": the everyday buttons come first, the ways out last.
  const more = document.getElementById('more');
  controls.insertBefore(chatButton, more || null);
  controls.insertBefore(supportButton, more || null);
  controls.append(supportHint);
}

function renderUnread() {
  unreadBadge.hidden = chat.unread === 0;
  unreadBadge.textContent = chat.unread > 99 ? '99+' : String(chat.unread);
  const label = chat.unread === 0 ? 'Chat' : `Chat, ${chat.unread} unread ${chat.unread === 1 ? 'message' : 'messages'}`;
  chatButton.setAttribute('aria-label', label);
}

// ---------------------------------------------------------------------------------------
// The chat panel.

const note = el('p', { id: 'chat-note', class: 'chat-note' });
const pausedNote = el('p', { id: 'chat-paused', class: 'note-box chat-paused', hidden: true });
const list = el('ol', { id: 'chat-list', class: 'chat-list', role: 'log', 'aria-live': 'polite', 'aria-label': 'Messages' });
const empty = el('p', { id: 'chat-empty', class: 'empty', text: 'No messages yet.' });
const toSelect = el('select', { id: 'chat-to' });
const input = el('textarea', {
  id: 'chat-input', class: 'text-field', rows: '2', maxlength: String(MAX_CHARS), autocomplete: 'off',
  'aria-describedby': 'chat-private-hint chat-count chat-error',
});
const count = el('p', { id: 'chat-count', class: 'hint chat-count', 'aria-live': 'polite' });
const error = el('p', { id: 'chat-error', class: 'form-error chat-error', role: 'alert' });
const privateHint = el('p', { id: 'chat-private-hint', class: 'chat-private-hint', hidden: true });
const sendButton = el('button', { id: 'chat-send', type: 'submit', class: 'button small accent', text: 'Send' });
const form = el('form', { id: 'chat-form', class: 'chat-form', novalidate: true, 'aria-label': 'Write a message' },
  el('div', { class: 'chat-to-row' }, el('label', { for: 'chat-to', text: 'To' }), toSelect),
  privateHint,
  el('label', { for: 'chat-input', class: 'visually-hidden', text: 'Message' }),
  input,
  el('div', { class: 'chat-form-foot' }, count, sendButton),
  error);

const settingsBox = buildSettings();
const closeButton = el('button', {
  id: 'chat-close', type: 'button', class: 'button small', onclick: () => setOpen(false, true),
}, el('span', { text: 'Hide' }), el('span', { class: 'visually-hidden', text: ' chat' }));
const heading = el('h2', { id: 'chat-heading', tabindex: '-1', text: 'Chat' });
const section = el('section', { id: 'chat-section', class: 'panel-section chat-section', 'aria-labelledby': 'chat-heading', hidden: true },
  el('div', { class: 'section-head' }, heading, closeButton),
  note,
  settingsBox.box,
  pausedNote,
  empty,
  list,
  form);

function mountPanel() {
  if (section.isConnected) return;
  const sidebar = document.getElementById('sidebar');
  if (!sidebar) return;
  const waiting = document.getElementById('waiting-section');
  if (waiting && waiting.parentNode === sidebar) sidebar.insertBefore(section, waiting.nextSibling);
  else sidebar.prepend(section);
}

function setOpen(open, byUser) {
  chat.open = open;
  section.hidden = !open;
  chatButton.setAttribute('aria-expanded', String(open));
  chatButton.setAttribute('aria-pressed', String(open));
  if (open) {
    chat.unread = 0;
    renderUnread();
    if (byUser) {
      section.scrollIntoView({ block: 'nearest' });
      if (!input.disabled) input.focus();
      else heading.focus();
    }
    list.scrollTop = list.scrollHeight;
  } else if (byUser) {
    chatButton.focus();
  }
}

function buildSettings() {
  // Each switch shows what the server last said (`on`) and asks it for the other state; the
  // page flips only when the server's answer comes back.
  const make = (key, label, hint, on, ask) => {
    const id = `chat-setting-${key}`;
    const button = el('button', {
      id, type: 'button', class: 'switch', role: 'switch', 'aria-checked': 'false', 'aria-describedby': `${id}-hint`,
      onclick: () => ask(button.getAttribute('aria-checked') !== 'true'),
    }, el('span', { class: 'switch-track', 'aria-hidden': 'true' }), el('span', { text: label }));
    return { on, button, row: el('div', { class: 'setting' }, button, el('p', { id: `${id}-hint`, class: 'hint', text: hint })) };
  };
  const chatSetting = (key, label, hint) =>
    make(key, label, hint, () => chat.settings[key], (enable) => send({ type: 'setChatSettings', [key]: enable }));
  const switches = [
    chatSetting('enabled', 'Chat', 'When off, only therapists can post.'),
    chatSetting('privateMessages', 'Private messages between participants', 'Participants can always write privately to you.'),
    chatSetting('keepTranscript', 'Keep messages for this session', 'People who join later can read them. Kept in memory only, never saved; gone when the session ends.'),
    make('peerSupport', '"I need support" also goes to peer-support staff',
      'Peer-support staff in the room are alerted and can answer. You and co-facilitators always are.',
      () => chat.support.routedToPeers, (enable) => send({ type: 'routeSupport', peerSupport: enable })),
  ];
  const box = el('details', { id: 'chat-settings', class: 'chat-settings', hidden: true },
    el('summary', { text: 'Chat and support settings' }),
    switches.map((s) => s.row));
  return {
    box,
    render() {
      box.hidden = !isTherapist();
      for (const s of switches) s.button.setAttribute('aria-checked', String(Boolean(s.on())));
    },
  };
}

function renderNotes() {
  note.textContent = chat.settings.keepTranscript
    ? 'This session keeps its messages until it ends, so people who join later can read them. Nothing is saved afterwards.'
    : 'Messages sent before you joined are not shown. Nothing from this chat is saved.';
  const paused = !chat.settings.enabled;
  pausedNote.hidden = !paused;
  pausedNote.textContent = isTherapist()
    ? 'Chat is paused for participants. You can still post.'
    : 'The therapist has paused the chat for now.';
  const canWrite = !paused || isTherapist();
  input.disabled = !canWrite;
  toSelect.disabled = !canWrite;
  sendButton.disabled = !canWrite;
  settingsBox.render();
  renderCount();
}

function renderCount() {
  const n = [...input.value.trim()].length;
  count.textContent = n > MAX_CHARS - 200 ? `${n} / ${MAX_CHARS}` : '';
  count.classList.toggle('over', n > MAX_CHARS);
}

/** Who you may write to from here: everyone in your room, or privately one person. */
function renderRecipients() {
  const previous = toSelect.value;
  const everyone = el('option', { value: '', text: roomLabel('Everyone in ') });
  const therapist = isTherapist();
  const candidates = [...chat.people.entries()]
    .filter(([id]) => id !== me())
    .filter(([id, p]) => {
      if (therapist) return chat.here.has(id) || p.role === 'therapist';
      if (p.role === 'therapist') return true;
      return chat.settings.privateMessages && chat.here.has(id);
    })
    .sort(([, a], [, b]) => (a.role === 'therapist' ? 0 : 1) - (b.role === 'therapist' ? 0 : 1) || a.name.localeCompare(b.name));
  const privately = el('optgroup', { label: 'Privately, only to' },
    candidates.map(([id, p]) => el('option', { value: id, text: p.role === 'therapist' ? `${p.name} (therapist)` : p.name })));
  toSelect.replaceChildren(everyone, ...(candidates.length ? [privately] : []));
  toSelect.value = candidates.some(([id]) => id === previous) ? previous : '';
  renderPrivateHint();
}

function renderPrivateHint() {
  const to = toSelect.value;
  privateHint.hidden = !to;
  privateHint.textContent = to ? `Private: only ${nameOf(to)} will see this message.` : '';
  form.classList.toggle('private', Boolean(to));
}

function roomLabel(prefix) {
  if (!chat.space) return `${prefix}the main room`;
  if (isPrivateSpace(chat.space)) return `${prefix}this private room`;
  return `${prefix}${chat.space.name}`;
}

function renderEmpty() {
  empty.hidden = list.children.length > 0;
}

function addMessage(entry, { history = false } = {}) {
  if (chat.messages.has(entry.id)) return;
  const mine = entry.from === me();
  const meta = el('p', { class: 'chat-meta' }, el('span', { class: 'chat-from', text: mine ? 'You' : entry.fromName }));
  if (entry.private) {
    const other = mine ? `to ${nameOf(entry.to)}` : 'to you';
    meta.append(el('span', { class: 'chat-private-tag', text: `Private, ${other}` }));
  }
  meta.append(el('time', { class: 'chat-time', datetime: new Date(entry.sentAtMs).toISOString(), text: clock(entry.sentAtMs) }));
  const text = entry.text === null
    ? el('p', { class: 'chat-text chat-no-key', text: NO_KEY_TEXT })
    : el('p', { class: 'chat-text', text: entry.text });
  const node = el('li', {
    class: `chat-msg${mine ? ' mine' : ''}${entry.private ? ' private' : ''}`, 'data-message-id': entry.id,
  }, meta, text);
  if (isTherapist()) {
    node.append(el('button', {
      type: 'button', class: 'button small chat-delete', 'data-action': 'delete',
      onclick: () => {
        chat.pending = { kind: 'delete', id: entry.id };
        send({ type: 'deleteChatMessage', messageId: entry.id });
      },
    }, el('span', { text: 'Delete for everyone' }), el('span', { class: 'visually-hidden', text: `: message from ${mine ? 'you' : entry.fromName}` })));
  }
  chat.messages.set(entry.id, { entry, node });
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  list.append(node);
  if (nearBottom || mine) list.scrollTop = list.scrollHeight;
  renderEmpty();
  // A private message is answered privately: the reply box turns to its sender, unless the
  // person is already writing something (their choice of recipient then stands).
  if (entry.private && !mine && !history && !input.value.trim()
    && [...toSelect.options].some((o) => o.value === entry.from)) {
    toSelect.value = entry.from;
    renderPrivateHint();
  }
  if (!mine && !history && (!chat.open || document.hidden)) {
    chat.unread += 1;
    renderUnread();
    if (!chat.open) announce(`New ${entry.private ? 'private ' : ''}message from ${entry.fromName}.`);
  }
}

function addDivider(text) {
  list.append(el('li', { class: 'chat-divider', text }));
  list.scrollTop = list.scrollHeight;
  renderEmpty();
}

function removeMessage(id) {
  const m = chat.messages.get(id);
  if (!m) return;
  m.node.classList.add('deleted');
  m.node.querySelector('.chat-text').textContent = 'This message was removed by the therapist.';
  const del = m.node.querySelector('.chat-delete');
  if (del) del.remove();
  m.entry.text = '';
}

function showError(text) {
  error.textContent = text;
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text) {
    showError('Write a message first.');
    input.focus();
    return;
  }
  if ([...text].length > MAX_CHARS) {
    showError(CHAT_ERRORS[CODES.INVALID_CHAT]);
    input.focus();
    return;
  }
  const to = toSelect.value || null;
  let wire;
  try {
    // In an end-to-end encrypted room the words leave this page sealed (e2ee/text.js).
    wire = await outgoing(text, { field: 'chat', to });
  } catch (err) {
    showError(err instanceof NoKeyError
      ? 'This room is end-to-end encrypted and your browser has no key for it yet. Wait a moment, then send again.'
      : 'Your message could not be encrypted, so it was not sent.');
    return;
  }
  const message = { type: 'chat', text: wire };
  if (to) message.to = to;
  if (!send(message)) {
    showError('Not connected right now. Your message was not sent.');
    return;
  }
  chat.pending = { kind: 'chat', text };
  showError('');
  if (input.value.trim() === text) input.value = '';
  renderCount();
  input.focus();
});
input.addEventListener('keydown', (event) => {
  // Enter sends; Shift+Enter starts a new line.
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});
toSelect.addEventListener('change', renderPrivateHint);
input.addEventListener('input', () => {
  renderCount();
  if (error.textContent) showError('');
});
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && chat.open) {
    chat.unread = 0;
    renderUnread();
  }
});

// ---------------------------------------------------------------------------------------
// "I need support": the participant's side. The request is state on the server: the page says
// only what the server says about it (`supportStatus`), and shows the crisis resources at once.

const SUPPORT_TEXT = {
  noTherapist: 'No therapist is connected right now. Your request is kept and goes to the therapist as soon as one connects.',
  alerted: 'Your request was sent to the therapist, privately. They have not seen it yet.',
  seen: 'Your therapist has seen this. They will be with you as soon as they can.',
  resolved: 'Your therapist closed your request. You can ask again at any time.',
};
const supportStatus = el('div', { id: 'support-status', class: 'status-bar support-status', role: 'status', hidden: true },
  el('div', { class: 'support-status-body' },
    el('p', { class: 'status-bar-text support-status-text' }),
    el('p', { class: 'support-resources', hidden: true })),
  el('button', { type: 'button', class: 'button small', text: 'OK', onclick: () => { supportStatus.hidden = true; } }));

function requestSupport() {
  if (chat.support.state === 'sent' || chat.support.state === 'open') return;
  if (!send({ type: 'requestSupport' })) {
    showSupportStatus('Not connected right now. Please try again in a moment.');
    return;
  }
  chat.support.state = 'sent';
  supportButton.disabled = true;
  supportButton.querySelector('.label').textContent = 'Asking for support…';
  showSupportStatus('Sending your request…');
}

function showSupportStatus(text, resources) {
  supportStatus.querySelector('.support-status-text').textContent = text;
  const res = supportStatus.querySelector('.support-resources');
  if (resources !== undefined) {
    res.textContent = resources || '';
    res.hidden = !resources;
  }
  supportStatus.hidden = false;
  const room = document.getElementById('room-panel');
  if (room && !supportStatus.isConnected) room.prepend(supportStatus);
}

function onSupportStatus({ delivery, resourcesText }) {
  const done = delivery === 'resolved';
  chat.support.state = done ? 'idle' : 'open';
  chat.support.delivery = delivery;
  supportButton.disabled = !done;
  supportButton.classList.toggle('requested', !done);
  supportButton.querySelector('.label').textContent = done ? 'I need support' : 'Support requested';
  showSupportStatus(SUPPORT_TEXT[delivery] || SUPPORT_TEXT.alerted, resourcesText);
}

// ---------------------------------------------------------------------------------------
// "I need support": the therapist's side. Each request not yet resolved is a standing item
// (not a toast) until a therapist resolves it with an outcome; a new one chimes and shows in
// the tab title. The list comes from the server (`supportRequests`), so a reload or a second
// therapist sees the same.

const alertStack = el('div', {
  id: 'support-alerts', class: 'urgent-alerts support-alerts', role: 'alert', 'aria-live': 'assertive',
});
const baseTitle = document.title;
const OUTCOMES = [
  ['resolvedInSession', 'Resolved in session'],
  ['followUpNeeded', 'Follow-up needed'],
  ['escalated', 'Escalated'],
];

function mountAlerts() {
  if (!alertStack.isConnected) document.body.append(alertStack);
}

function whereLabel(breakoutId) {
  if (!breakoutId) return 'in the main room';
  if (breakoutId.startsWith('private-')) return 'in a private room';
  if (breakoutId.startsWith('family-')) return 'in a family space';
  return 'in a breakout room';
}

function ensureAlert(request) {
  mountAlerts();
  const existing = chat.alerts.get(request.participantId);
  if (existing && existing.request.requestId === request.requestId) {
    existing.request = { ...existing.request, ...request };
    renderAlert(existing);
    return existing;
  }
  if (existing) existing.node.remove();
  const status = el('p', { class: 'urgent-alert-status support-alert-status' });
  const state = el('p', { class: 'support-alert-state' });
  const openButton = el('button', {
    type: 'button', class: 'button support-open', 'data-action': 'open-private-room',
    onclick: () => {
      chat.pending = { kind: 'openPrivateRoom', participantId: request.participantId };
      openButton.disabled = true;
      status.textContent = `Opening a private room with ${request.name}…`;
      send({ type: 'openPrivateRoom', participantId: request.participantId });
    },
  }, el('span', { text: `Open private room with ${request.name}` }));
  const ackButton = el('button', {
    type: 'button', class: 'button support-ack', 'data-action': 'acknowledge',
    onclick: () => send({ type: 'acknowledgeSupport', requestId: a.request.requestId }),
  }, el('span', { text: 'I have seen this' }), el('span', { class: 'visually-hidden', text: ` (tells ${request.name})` }));
  const outcomeId = `support-outcome-${request.requestId}`;
  const outcome = el('select', { id: outcomeId, class: 'text-field support-outcome' },
    OUTCOMES.map(([value, label]) => el('option', { value, text: label })));
  const resolveButton = el('button', {
    type: 'button', class: 'button small support-resolve', 'data-action': 'resolve',
    onclick: () => send({ type: 'resolveSupport', requestId: a.request.requestId, outcome: outcome.value }),
  }, el('span', { text: 'Resolve' }), el('span', { class: 'visually-hidden', text: ` the request from ${request.name}` }));
  const node = el('section', { class: 'urgent-alert support-alert', 'data-participant-id': request.participantId, 'data-request-id': request.requestId, 'aria-label': `${request.name} needs support` },
    el('div', { class: 'urgent-alert-icon support-alert-icon', 'aria-hidden': 'true' }, svgIcon(ICONS.heart)),
    el('div', { class: 'urgent-alert-body support-alert-body' },
      el('p', { class: 'urgent-alert-title support-alert-title', text: `${request.name} needs support` }),
      el('p', { class: 'urgent-alert-detail support-alert-detail', text: `Asked at ${clock(request.atMs)}, ${whereLabel(request.breakoutId)}. Only staff see this.` }),
      state,
      status,
      el('div', { class: 'urgent-alert-actions support-alert-actions' }, ackButton, openButton,
        el('span', { class: 'support-resolve-group' },
          el('label', { for: outcomeId, class: 'support-outcome-label', text: 'Outcome' }), outcome, resolveButton))));
  // What each responder may do (the server's permission table): a co-facilitator acknowledges
  // and opens a private room, only a therapist records the outcome; peer support reads.
  openButton.hidden = !isStaff();
  node.querySelector('.support-resolve-group').hidden = !isTherapist();
  const a = { request, node, status, state, openButton, ackButton };
  chat.alerts.set(request.participantId, a);
  alertStack.append(node);
  renderAlert(a);
  renderTitle();
  return a;
}

function renderAlert(a) {
  const r = a.request;
  const acked = r.state === 'acknowledged';
  a.node.classList.toggle('acknowledged', acked);
  a.ackButton.hidden = acked || !isStaff();
  const who = r.acknowledgedBy === me() ? 'you' : 'a therapist';
  let text = acked ? `Seen by ${who}; ${r.name} was told.` : `Not seen yet: ${r.name} is waiting for a therapist to answer.`;
  if (r.requesterPresent === false) text += ` ${r.name} has left the session with this request open: follow up after the session.`;
  a.state.textContent = text;
  a.openButton.disabled = r.requesterPresent === false;
}

// The server sends requests only to those who respond to them: therapists, co-facilitators, and
// peer-support staff while a therapist routes requests to them.
function onSupportRequested(request) {
  if (!responds()) return;
  ensureAlert({ state: 'open', requesterPresent: true, ...request });
  chime();
  // Focus stays where the therapist is (they may be typing): the banner and the screen
  // reader alert do the telling.
}

/** The standing list: every request not yet resolved, as the server holds it. */
function onSupportRequests({ requests, peerSupport }) {
  chat.support.routedToPeers = Boolean(peerSupport);
  settingsBox.render();
  if (!responds()) return;
  const live = new Set();
  for (const r of requests || []) {
    live.add(r.participantId);
    ensureAlert(r);
  }
  for (const id of [...chat.alerts.keys()]) if (!live.has(id)) resolveAlert(id);
}

function onRequesterLeft({ participantId }) {
  const a = chat.alerts.get(participantId);
  if (!a) return;
  a.request = { ...a.request, requesterPresent: false };
  renderAlert(a);
  chime();
}

function resolveAlert(participantId) {
  const a = chat.alerts.get(participantId);
  if (!a) return;
  a.node.remove();
  chat.alerts.delete(participantId);
  renderTitle();
}


function renderTitle() {
  document.title = chat.alerts.size > 0 ? `(${chat.alerts.size}) Support requested · ${baseTitle}` : baseTitle;
}

/** A soft two-note chime (no file to fetch). Silent if the browser does not allow sound. */
let audio = null;
function chime() {
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    const t = audio.currentTime;
    for (const [i, f] of [[0, 660], [1, 880]]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = f;
      gain.gain.setValueAtTime(0.0001, t + i * 0.25);
      gain.gain.exponentialRampToValueAtTime(0.12, t + i * 0.25 + 0.03);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + i * 0.25 + 0.6);
      osc.connect(gain).connect(audio.destination);
      osc.start(t + i * 0.25);
      osc.stop(t + i * 0.25 + 0.65);
    }
  } catch (err) {
    console.debug('[hearth] no chime:', err);
  }
}

const privateBar = el('div', { id: 'private-room-bar', class: 'status-bar private-room-bar', role: 'status', hidden: true },
  el('p', { class: 'status-bar-text private-room-text' }));
const closePrivate = el('button', {
  id: 'private-room-close', type: 'button', class: 'button small', hidden: true,
  onclick: () => {
    if (!chat.space) return;
    chat.pending = { kind: 'closePrivateRoom' };
    send({ type: 'closePrivateRoom', spaceId: chat.space.id });
  },
}, el('span', { text: 'Close private room' }));
privateBar.append(closePrivate);

function renderPrivateBar() {
  const room = document.getElementById('room-panel');
  if (room && !privateBar.isConnected) {
    const body = room.querySelector('.room-body');
    room.insertBefore(privateBar, body || null);
  }
  const inPrivate = isPrivateSpace(chat.space);
  privateBar.hidden = !inPrivate;
  if (!inPrivate) return;
  const others = [...chat.here].filter((id) => id !== me()).map(nameOf);
  const withWhom = others.length ? others.join(' and ') : 'the therapist';
  privateBar.querySelector('.private-room-text').textContent = isTherapist()
    ? `Private room with ${withWhom}. The rest of the group cannot see or hear you two.`
    : `You are in a private room with ${withWhom}. The rest of the group cannot see or hear you here.`;
  closePrivate.hidden = !isTherapist();
}

// ---------------------------------------------------------------------------------------
// People and spaces (for recipients and the private room bar).

function remember(p) {
  chat.people.set(p.id, { name: p.name, role: p.role });
}

function setHere(participants) {
  chat.here = new Set(participants.map((p) => p.id));
  for (const p of participants) remember(p);
}

function resetSession() {
  chat.messages.clear();
  list.replaceChildren();
  chat.unread = 0;
  chat.space = null;
  chat.here = new Set();
  chat.pending = null;
  for (const id of [...chat.alerts.keys()]) resolveAlert(id);
  supportStatus.hidden = true;
  chat.support.state = 'idle';
  supportButton.disabled = false;
  supportButton.classList.remove('requested');
  supportButton.querySelector('.label').textContent = 'I need support';
  showError('');
  renderUnread();
  renderEmpty();
}

// ---------------------------------------------------------------------------------------
// Server messages.

on('joined', () => {
  if (chat.sessionOver) resetSession();
  chat.sessionOver = false;
});

on('admitted', ({ participants }) => {
  chat.admitted = true;
  mountControls();
  mountPanel();
  setHere(participants || []);
  if (!chat.space) renderRecipients();
  chatButton.hidden = false;
  supportButton.hidden = state.role !== 'participant';
  renderNotes();
  renderUnread();
  renderEmpty();
  renderPrivateBar();
});

on('participantJoined', ({ participant }) => {
  remember(participant);
  chat.here.add(participant.id);
  renderRecipients();
});
on('participantUpdated', ({ participant }) => remember(participant));
on('participantLeft', ({ participantId }) => {
  chat.here.delete(participantId);
  chat.people.delete(participantId);
  renderRecipients();
  // Someone who asked for support and then left must not vanish from the therapist's view.
  const a = chat.alerts.get(participantId);
  if (a) {
    a.status.textContent = `${a.request.name} has left the session.`;
    a.openButton.disabled = true;
  }
});

on('spaceChanged', ({ breakout, participants }) => {
  const before = chat.space;
  chat.space = breakout || null;
  setHere(participants || []);
  renderRecipients();
  renderPrivateBar();
  if ((before && before.id) !== (chat.space && chat.space.id)) {
    if (isPrivateSpace(chat.space)) {
      const others = (participants || []).filter((p) => p.id !== me()).map((p) => p.name);
      addDivider(`You are now in a private room with ${others.join(' and ') || 'the therapist'}. Messages here are only between you.`);
      if (!isTherapist()) {
        supportStatus.hidden = true;
        announce('You are now in a private room with the therapist.');
      }
    } else {
      addDivider(`You are now in ${roomLabel('')}. Messages sent there before you arrived are not shown.`);
    }
  }
});
on('spaceRoster', ({ participants }) => {
  setHere(participants || []);
  renderRecipients();
  renderPrivateBar();
});

on('chatSettings', (settings) => {
  const before = chat.settings;
  chat.settings = { enabled: settings.enabled, privateMessages: settings.privateMessages, keepTranscript: settings.keepTranscript };
  renderNotes();
  renderRecipients();
  if (chat.admitted && before.enabled !== chat.settings.enabled) {
    addDivider(chat.settings.enabled ? 'The therapist turned the chat back on.' : 'The therapist paused the chat.');
  }
});
// Sealed texts open asynchronously; one chain keeps messages, history and deletions in the
// order the server sent them.
let incoming = Promise.resolve();
const inOrder = (fn) => (m) => { incoming = incoming.then(() => fn(m)).catch((err) => log('chat: a message could not be shown', err)); };
/** The entry with its text opened (`null`: sealed under a key this page does not hold). */
async function opened(entry) {
  const sealed = typeof entry.text !== 'string';
  const text = await openText(entry.text, { field: 'chat', from: entry.from, to: entry.private ? entry.to : null });
  return { ...entry, text, sealed };
}
on('chatMessage', inOrder(async (entry) => {
  const shown = await opened(entry);
  if (chat.pending && chat.pending.kind === 'chat' && entry.from === me()) chat.pending = null;
  addMessage(shown);
}));
on('chatHistory', inOrder(async ({ messages }) => {
  if (!messages || messages.length === 0) return;
  const shown = [];
  for (const entry of messages) shown.push(await opened(entry));
  addDivider('Earlier in this room:');
  for (const entry of shown) addMessage(entry, { history: true });
  addDivider('New messages:');
}));
on('chatMessageDeleted', inOrder(({ messageId }) => removeMessage(messageId)));

on('supportRequested', onSupportRequested);
on('supportRequests', onSupportRequests);
on('supportRequesterLeft', onRequesterLeft);
on('supportStatus', onSupportStatus);

on('error', ({ code, message }) => {
  const pending = chat.pending;
  if (!pending) return;
  if (pending.kind === 'chat' && code in CHAT_ERRORS) {
    chat.pending = null;
    showError(CHAT_ERRORS[code]);
    // Give the words back, so nothing typed is lost.
    if (!input.value) input.value = pending.text;
    renderCount();
  } else if (pending.kind === 'delete' && code === CODES.UNKNOWN_CHAT_MESSAGE) {
    chat.pending = null;
    showError('That message is too old to delete, or was already deleted.');
  } else if (pending.kind === 'openPrivateRoom') {
    chat.pending = null;
    const a = chat.alerts.get(pending.participantId);
    if (a) {
      a.status.textContent = SUPPORT_ERRORS[code] || message;
      a.openButton.disabled = false;
    }
  } else if (pending.kind === 'closePrivateRoom') {
    chat.pending = null;
  }
});
on('error', async ({ code, message }) => {
  // Ending the session while support requests are open needs one more, explicit yes.
  if (code !== CODES.SUPPORT_OPEN) return;
  const sure = await confirmAction({
    heading: 'Support requests are still open',
    body: `${message} Each open request is kept for follow-up after the session.`,
    confirm: 'End session anyway',
  });
  if (sure) send(endSessionMessage({ confirm: true }));
});

on('sessionEnded', () => {
  chat.sessionOver = true;
  chat.admitted = false;
});
on('local:left', () => { chat.sessionOver = true; chat.admitted = false; });

// Read-only view for tests and debugging.
exposeProbe('chat', () => ({
    settings: { ...chat.settings },
    messages: [...chat.messages.values()].map((m) => ({ ...m.entry })),
    unread: chat.unread,
    open: chat.open,
    space: chat.space && { ...chat.space },
    alerts: [...chat.alerts.values()].map((a) => ({ ...a.request })),
    support: { ...chat.support },
  }));

mountControls();
mountPanel();
renderNotes();
renderUnread();
renderEmpty();
