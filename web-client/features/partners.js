// Accountability partners: members who check in on each other week after week.
//
// Therapists: a small "Accountability partners" section in the sidebar lists the room's saved
// partner groups (`partners`, kept by the server across sessions), saves the breakout rooms as
// they are now as the partner groups ("Save current breakout rooms as partners"), and opens
// breakout rooms with exactly those groups in one action, with a choice of where someone whose
// partners are all absent goes (join another group, or stay in the main room).
//
// Participants: one line under the room's title, "Your partners: Ana and Ben", from
// `yourPartners` (the server sends each person their own partners and nobody else's pairing).
// The server enforces every rule; this file only shows them.

import { announce } from '../lib/announce.js';
import { el } from '../lib/dom.js';
import { on } from '../core/bus.js';
import { CODES } from '../core/codes.js';
import { send } from '../core/connection.js';
import { exposeProbe } from '../core/probe.js';
import { isTherapist, state } from '../core/state.js';

const pa = {
  /** Therapists: the saved groups (participant ids). */
  groups: [],
  /** Participants: the others in my group. */
  mine: [],
  /** Therapists: the breakout plan as the server last sent it. */
  plan: { open: false, rooms: [] },
  /** Names seen this session, by participant id (partners may be in another space). */
  names: new Map(),
  status: '',
};

function nameFor(id) {
  if (id === state.participantId) return 'You';
  const p = state.participants.get(id);
  return (p && p.name) || pa.names.get(id) || null;
}

function spokenList(names) {
  if (names.length <= 1) return names.join('');
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
}

// ---- participants: "Your partners" ----

const mineLine = el('p', { id: 'partners-line', class: 'note-box partners-line', hidden: true });

function renderMine() {
  if (!mineLine.isConnected) {
    const chips = document.getElementById('room-chips');
    if (chips) chips.after(mineLine);
  }
  const show = !isTherapist() && state.admitted && pa.mine.length > 0;
  mineLine.hidden = !show;
  if (!show) return;
  const known = pa.mine.map(nameFor);
  const here = known.filter(Boolean);
  const away = known.length - here.length;
  let text = `Your accountability ${pa.mine.length === 1 ? 'partner' : 'partners'}: ${here.length ? spokenList(here) : ''}`;
  if (away) text += `${here.length ? ', and ' : ''}${away === 1 ? 'one partner who is' : `${away} partners who are`} not here right now`;
  mineLine.textContent = `${text}.`;
}

// ---- therapists: the panel ----

const absentChoice = el('select', { id: 'partners-absent' },
  el('option', { value: 'joinAnother', text: 'Join another partner group' }),
  el('option', { value: 'stayInMain', text: 'Stay in the main room' }));
const groupList = el('ul', { id: 'partners-groups', class: 'partners-groups', 'aria-labelledby': 'partners-heading' });
const emptyNote = el('p', { class: 'empty', text: 'No partner groups saved for this group yet.' });
const statusLine = el('p', { id: 'partners-status', class: 'hint', role: 'status' });
const saveButton = el('button', {
  id: 'partners-save', type: 'button', class: 'button small', text: 'Save current breakout rooms as partners',
  onclick: () => {
    const groups = currentBreakoutGroups();
    if (!groups.length) {
      setStatus('Put people in breakout rooms first (two or more per room); those rooms become the partner groups.');
      return;
    }
    setStatus('Saving…');
    send({ type: 'savePartners', groups });
  },
});
const openButton = el('button', {
  id: 'partners-open', type: 'button', class: 'button small accent', text: 'Open partner breakout rooms',
  onclick: () => {
    setStatus('Opening…');
    send({ type: 'openPartnerBreakouts', absent: absentChoice.value });
  },
});
const panel = el('section', { id: 'partners-section', class: 'panel-section partners', 'aria-labelledby': 'partners-heading', hidden: true },
  el('h2', { id: 'partners-heading', text: 'Accountability partners' }),
  el('p', { class: 'hint', text: 'Each member sees only their own partners.' }),
  emptyNote,
  groupList,
  el('div', { class: 'partners-actions' },
    saveButton,
    el('label', { for: 'partners-absent', text: 'If someone’s partners are all absent:' }),
    absentChoice,
    openButton),
  statusLine);

function setStatus(text) {
  pa.status = text;
  statusLine.textContent = text;
}

/** The breakout plan's rooms as groups of the participants in them (two or more). */
function currentBreakoutGroups() {
  const roles = new Map(pa.plan.whereabouts ? pa.plan.whereabouts.map((w) => [w.participantId, w.role]) : []);
  return pa.plan.rooms
    .map((r) => r.members.filter((id) => (roles.get(id) || 'participant') === 'participant'))
    .filter((g) => g.length >= 2);
}

function renderPanel() {
  if (!panel.isConnected) {
    const bo = document.getElementById('breakouts-section');
    const people = document.getElementById('people-section');
    if (bo) bo.after(panel);
    else if (people) people.after(panel);
  }
  panel.hidden = !(isTherapist() && state.admitted);
  if (panel.hidden) return;
  emptyNote.hidden = pa.groups.length > 0;
  groupList.replaceChildren(...pa.groups.map((g, i) => el('li', { 'data-group': String(i + 1) },
    `Group ${i + 1}: ${spokenList(g.map((id) => nameFor(id) || `someone not here (${id})`))}`)));
  saveButton.disabled = currentBreakoutGroups().length === 0;
  openButton.disabled = pa.groups.length === 0 || pa.plan.open;
}

function render() {
  renderMine();
  renderPanel();
}

function remember(list) {
  for (const p of list || []) if (p && p.id) pa.names.set(p.id, p.name);
}

on('admitted', ({ participants }) => { remember(participants); render(); });
on('participantJoined', ({ participant }) => { remember([participant]); render(); });
on('participantLeft', render);
on('spaceRoster', ({ participants }) => { remember(participants); render(); });
on('spaceChanged', ({ participants }) => { remember(participants); render(); });
on('breakoutsUpdated', ({ breakouts }) => {
  pa.plan = breakouts || { open: false, rooms: [] };
  for (const w of pa.plan.whereabouts || []) pa.names.set(w.participantId, w.name);
  if (pa.status === 'Opening…' && pa.plan.open) setStatus('Partner breakout rooms are open.');
  render();
});
on('partners', ({ groups }) => {
  const saving = pa.status === 'Saving…';
  pa.groups = groups || [];
  if (saving) {
    setStatus(`Saved ${pa.groups.length} partner ${pa.groups.length === 1 ? 'group' : 'groups'}.`);
    announce(statusLine.textContent);
  }
  render();
});
on('yourPartners', ({ partnerIds }) => {
  const had = pa.mine.length > 0;
  pa.mine = partnerIds || [];
  render();
  if (pa.mine.length && !had) announce(mineLine.textContent);
});
on('error', ({ code, message }) => {
  if (!isTherapist() || !['Saving…', 'Opening…'].includes(pa.status)) return;
  if (code === CODES.INVALID_PARTNERS || code === CODES.INVALID_FIELD) setStatus(message);
});
on('sessionEnded', () => {
  pa.mine = [];
  pa.plan = { open: false, rooms: [] };
  setStatus('');
  render();
});

exposeProbe('partners', () => ({ groups: pa.groups.map((g) => g.slice()), mine: pa.mine.slice(), line: mineLine.hidden ? '' : mineLine.textContent }));
