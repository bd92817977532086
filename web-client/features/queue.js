// The speaking queue: raised hands in the order the server stamped them (`speakingQueue`, the
// same order on every screen), and who has the floor. Everyone in the space sees the numbered
// queue and their own place ("You are 2nd"); therapists give the floor to the next hand or to
// anyone in it, optionally spotlighting them. Giving the floor never unmutes anyone: the page
// says "you have the floor; unmute when you are ready". The server decides; this mirrors it.

import { announce } from '../lib/announce.js';
import { el } from '../lib/dom.js';
import { on, onRosterChange } from '../core/bus.js';
import { CODES } from '../core/codes.js';
import { send } from '../core/connection.js';
import { exposeProbe } from '../core/probe.js';
import { can, nameOf, state } from '../core/state.js';

const q = { queue: [], floor: null };

const heading = el('h2', { id: 'queue-heading', text: 'Speaking order' });
const floorLine = el('p', { id: 'queue-floor', class: 'queue-floor', role: 'status' });
const list = el('ol', { id: 'queue-list', class: 'queue-list', 'aria-labelledby': 'queue-heading' });
const empty = el('p', { class: 'empty', text: 'No hands are raised.' });
const spotlight = el('input', { type: 'checkbox', id: 'queue-spotlight' });
const nextButton = el('button', { type: 'button', id: 'queue-next', class: 'button small accent', text: 'Give the floor to the next hand' });
const controls = el('div', { class: 'queue-controls', hidden: true },
  nextButton,
  el('label', { class: 'choice', for: 'queue-spotlight' }, spotlight, ' Spotlight the speaker'));
const panel = el('section', { id: 'queue-section', class: 'panel-section queue', 'aria-labelledby': 'queue-heading', hidden: true },
  heading, floorLine, list, empty, controls);

function mount() {
  if (panel.isConnected) return;
  const sidebar = document.getElementById('sidebar');
  const people = document.getElementById('people-section');
  if (sidebar && people && people.parentNode === sidebar) sidebar.insertBefore(panel, people);
  else if (sidebar) sidebar.append(panel);
}

const ordinal = (n) => {
  const s = ['th', 'st', 'nd', 'rd'];
  const v = n % 100;
  return `${n}${s[(v - 20) % 10] || s[v] || s[0]}`;
};

function giveFloor(participantId) {
  const message = { type: 'giveFloor', spotlight: spotlight.checked };
  if (participantId) message.participantId = participantId;
  send(message);
}

function render() {
  mount();
  const therapist = can('giveFloor');
  panel.hidden = !(state.status === 'joined' && state.admitted) || (!therapist && q.queue.length === 0 && !q.floor);
  controls.hidden = !therapist;
  nextButton.disabled = q.queue.length === 0;
  empty.hidden = q.queue.length > 0;
  const me = q.queue.findIndex((h) => h.participantId === state.participantId);
  if (q.floor) {
    floorLine.textContent = q.floor === state.participantId
      ? 'You have the floor. Unmute your microphone when you are ready.'
      : `${nameOf(q.floor)} has the floor.`;
  } else {
    floorLine.textContent = me >= 0 ? `Your hand is up: you are ${ordinal(me + 1)} in line.` : '';
  }
  floorLine.hidden = !floorLine.textContent;
  list.replaceChildren(...q.queue.map((h, i) => {
    const who = h.participantId === state.participantId ? 'You' : nameOf(h.participantId);
    const li = el('li', { class: 'queue-entry', 'data-participant-id': h.participantId, 'data-seq': h.seq },
      el('span', { class: 'queue-name', text: who }));
    if (therapist) {
      li.append(el('button', { type: 'button', class: 'button small', onclick: () => giveFloor(h.participantId) },
        'Give floor', el('span', { class: 'visually-hidden', text: ` to ${who}, ${ordinal(i + 1)} in line` })));
    }
    return li;
  }));
}

on('speakingQueue', (m) => {
  const before = q.floor;
  q.queue = m.queue || [];
  q.floor = m.floor || null;
  if (q.floor && q.floor !== before) {
    announce(q.floor === state.participantId ? 'You have the floor. Unmute when you are ready.' : `${nameOf(q.floor)} has the floor.`);
  }
  render();
});
nextButton.addEventListener('click', () => giveFloor(null));
onRosterChange(render);
on('sessionEnded', () => { q.queue = []; q.floor = null; render(); });
on('error', (m) => {
  if (m.code === CODES.QUEUE_EMPTY) announce('No hands are raised.');
});

exposeProbe('queue', () => ({ queue: q.queue.map((h) => h.participantId), seqs: q.queue.map((h) => h.seq), floor: q.floor }));
