// What end-to-end encryption looks like on the page: the lock in the header (green: verified,
// amber: encrypted but not verified, red: not encrypted), its panel (the safety code, the
// signed list of who can hear this room, what the server still sees), each tile's and the
// shared screen's "no key" and "cannot decrypt" states, and refusing a room an invite link demanded be encrypted.
// Reads e2ee/keys.js's view (bus event `local:e2ee`); changes nothing but its own elements.

import { announce } from '../lib/announce.js';
import { el } from '../lib/dom.js';
import { on, onRosterChange } from '../core/bus.js';
import { closeSocket } from '../core/connection.js';
import { exposeProbe } from '../core/probe.js';
import { state } from '../core/state.js';
import { setStatus, showAlert, showMessage, ui } from '../core/view.js';
import { stopLocalMedia } from '../core/media.js';
import { teardownPeer } from '../core/negotiation.js';
import { probeOutcome, transformApi, workerStats } from './frames.js';
import { confirmCode, e2ee, exportEpochSecrets, installEpochSecret, isLeader, linkDemandsE2ee, lockState, pinnedMatches, whoCanHear } from './keys.js';

const LOCK_TEXT = {
  green: 'End-to-end encrypted',
  amber: 'Encrypted — not verified yet',
  red: 'Not encrypted',
};

const lockButton = el('button', {
  id: 'e2ee-lock', type: 'button', class: 'e2ee-lock', 'aria-expanded': 'false', 'aria-controls': 'e2ee-panel', hidden: true,
},
el('svg', { 'aria-hidden': 'true' }),
el('span', { class: 'text' }));
lockButton.replaceChild(lockIcon(), lockButton.firstChild);

function lockIcon() {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'icon');
  svg.setAttribute('aria-hidden', 'true');
  const rect = document.createElementNS(ns, 'rect');
  for (const [k, v] of Object.entries({ x: 5, y: 11, width: 14, height: 10, rx: 2 })) rect.setAttribute(k, v);
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', 'M8 11V8a4 4 0 0 1 8 0v3');
  svg.append(rect, path);
  return svg;
}

const codeEl = el('p', { class: 'e2ee-code', id: 'e2ee-code' });
const codeHint = el('p', { class: 'hint' });
const confirmButton = el('button', { type: 'button', class: 'button small', id: 'e2ee-confirm', text: 'The code matches' });
const statusText = el('p', { class: 'e2ee-status', id: 'e2ee-status' });
const membersList = el('ul', { class: 'e2ee-members', id: 'e2ee-members', 'aria-labelledby': 'e2ee-members-heading' });
const fingerprintEl = el('p', { class: 'e2ee-fingerprint hint' });
// The leader: what to add to invite links so members' browsers check the key themselves.
const linkHint = el('p', { class: 'e2ee-fingerprint hint', id: 'e2ee-link-hint' });
const panel = el('section', { id: 'e2ee-panel', class: 'e2ee-panel card', 'aria-labelledby': 'e2ee-heading', hidden: true },
  el('h2', { id: 'e2ee-heading', tabindex: '-1', text: 'Encryption' }),
  statusText,
  el('h3', { text: 'Safety code' }),
  codeEl,
  codeHint,
  confirmButton,
  fingerprintEl,
  linkHint,
  el('h3', { id: 'e2ee-members-heading', text: 'Who can hear this room' }),
  membersList,
  el('p', { class: 'hint', text: 'This list comes from the key the therapist\'s device signed, not from the server. '
    + 'If someone is listed you do not expect, tell the therapist.' }),
  el('h3', { text: 'What the server still sees' }),
  el('p', { class: 'hint', text: 'Who is in which room, who speaks when and how loudly, poll counts and milestone types. '
    + 'It cannot see or hear the video and sound.' }),
  el('button', { type: 'button', class: 'button small', text: 'Close', onclick: () => togglePanel(false) }));

function togglePanel(open) {
  panel.hidden = !open;
  lockButton.setAttribute('aria-expanded', String(open));
  if (open) panel.querySelector('h2').focus();
  else lockButton.focus();
}

lockButton.addEventListener('click', () => togglePanel(panel.hidden));
confirmButton.addEventListener('click', () => {
  confirmCode();
  announce('Thank you. The connection is verified.');
});

const header = document.querySelector('.site-header');
const roleChip = document.getElementById('role-chip');
if (header) header.insertBefore(lockButton, roleChip ? roleChip.nextSibling : null);
document.getElementById('main').append(panel);

function render() {
  const on = e2ee.mode !== 'off' && ['joined', 'connecting', 'reconnecting', 'waiting'].includes(state.status);
  lockButton.hidden = !on;
  if (!on) {
    panel.hidden = true;
    renderTiles();
    return;
  }
  const s = lockState();
  lockButton.dataset.state = s;
  const noKey = s === 'red' && e2ee.mode !== 'off';
  const text = noKey ? (e2ee.leader ? 'Encrypted — waiting for your key' : 'Encrypted — waiting for the therapist') : LOCK_TEXT[s];
  lockButton.querySelector('.text').textContent = text;
  lockButton.setAttribute('aria-label', `${text}. Show encryption details`);
  statusText.textContent = noKey
    ? 'This room is end-to-end encrypted. You cannot see or hear others until the therapist\'s device gives you the key.'
    : s === 'green' ? 'Only the people listed below can see and hear this room.'
      : 'Encrypted. Compare the safety code with the one your therapist reads aloud.';
  const leader = e2ee.leader;
  codeEl.textContent = leader ? leader.code : '—';
  codeHint.textContent = isLeader() ? 'Read this code aloud at the start. Everyone should see the same one.'
    : pinnedMatches() ? 'Your invite link confirmed the therapist\'s key.'
      : 'Your therapist reads this code aloud at the start. It should match.';
  confirmButton.hidden = !leader || isLeader() || e2ee.confirmed || pinnedMatches();
  fingerprintEl.textContent = leader ? `Therapist key fingerprint: ${leader.fingerprint.replace(/(.{4})/g, '$1 ').trim()}` : '';
  linkHint.hidden = !isLeader();
  linkHint.textContent = isLeader() && leader
    ? `Add this to the end of invite links so people's browsers check your key and refuse an unencrypted room: &e2ee=1&leader=${leader.fingerprint}`
    : '';
  const hear = whoCanHear();
  membersList.replaceChildren(...(hear ? hear.members.map((m) => el('li', { 'data-participant-id': m.id },
    el('span', { class: 'name', text: m.id === state.participantId ? `${m.name} (you)` : m.name }),
    m.role === 'therapist' ? el('span', { class: 'badge-inline', text: 'Therapist' }) : null,
    m.role === 'observer' ? el('span', { class: 'badge-inline', text: 'Observer' }) : null,
    m.leader ? el('span', { class: 'badge-inline', text: 'holds the keys, can join any room' }) : null)) : [el('li', { text: 'No key yet.' })]));
  renderTiles();
}

// The shared screen on the stage (features/screen.js names its sharer in `data-participant-id`).
const stage = document.getElementById('screen-stage');

/**
 * Each remote tile, and the shared screen: "no key" when its owner is not in our signed list,
 * "cannot decrypt" on failures.
 */
function renderTiles() {
  const hear = e2ee.mode === 'off' ? null : whoCanHear();
  const holders = new Set(hear ? hear.members.map((m) => m.id) : []);
  const boxes = [...ui.tiles.querySelectorAll('.tile.remote')];
  if (stage) boxes.push(stage);
  for (const box of boxes) {
    const id = box.dataset.participantId;
    let mark = '';
    if (!id) mark = ''; // an empty stage
    else if (e2ee.mode === 'required' && (!hear || !holders.has(id))) mark = 'nokey';
    else if (e2ee.mode !== 'off' && e2ee.senderStatus.get(id) === 'error') mark = 'error';
    if ((box.dataset.e2ee || '') === mark) continue;
    box.dataset.e2ee = mark;
    let badge = box.querySelector('.e2ee-badge');
    if (!badge) {
      badge = el('span', { class: 'badge e2ee-badge' });
      (box.querySelector('.badges') || box).prepend(badge);
    }
    badge.hidden = !mark;
    badge.textContent = mark === 'nokey' ? 'Encrypted — no key yet' : mark === 'error' ? 'Cannot decrypt: key problem' : '';
  }
}

new MutationObserver(renderTiles).observe(ui.tiles, { childList: true });
if (stage) new MutationObserver(renderTiles).observe(stage, { attributes: true, attributeFilter: ['data-participant-id'] });
on('local:e2ee', render);
on('local:e2eeKeyChanged', ({ participantId }) => {
  if (state.role !== 'therapist') return;
  const p = state.participants.get(participantId);
  showAlert(`${p ? p.name : 'Someone'}'s encryption key changed (a new device or a reconnect). They get a new key.`);
});
on('joined', (m) => {
  const mode = (m.room && m.room.e2ee) || 'off';
  if (linkDemandsE2ee && mode === 'off') {
    // The link promised an encrypted session: leave before any media flows.
    setStatus('ended', 'Not joined: this session is not encrypted.');
    closeSocket();
    teardownPeer();
    stopLocalMedia();
    showMessage('This session is not encrypted', 'Your invite link asks for an end-to-end encrypted session, '
      + 'but this room is not encrypted. Ask your therapist for a new link.');
    return;
  }
  render();
});
on('roomStateChanged', render);
onRosterChange(render);

exposeProbe('e2ee', () => ({
  mode: e2ee.mode,
  api: transformApi(),
  probe: probeOutcome(),
  lock: lockState(),
  leader: e2ee.leader ? { participantId: e2ee.leader.participantId, fingerprint: e2ee.leader.fingerprint, code: e2ee.leader.code, valid: e2ee.leader.valid } : null,
  isLeader: isLeader(),
  sending: e2ee.sending ? { ...e2ee.sending } : null,
  epochs: [...e2ee.held.values()].map((h) => ({ space: h.space, epoch: h.epoch, members: h.members.map((m) => m.id) })),
  whoCanHear: whoCanHear(),
  senderStatus: Object.fromEntries(e2ee.senderStatus),
  stats: () => workerStats(),
  // Development servers only (tests): a member that never announces its key, and leaked keys.
  test: state.devTokens ? {
    configure: (opts) => Object.assign(e2ee.test, opts),
    exportEpochSecrets,
    installEpochSecret,
  } : null,
}));
