// Absences are said: when the therapist is not with the group in the main room (they left
// without ending the session, their connection dropped, or they stepped into a private room
// with someone), everyone else sees a neutral note saying so, and hears when they are back.
// Reads the roster the core keeps; owns only its note.

import { el } from '../lib/dom.js';
import { announce } from '../lib/announce.js';
import { on, onRosterChange } from '../core/bus.js';
import { exposeProbe } from '../core/probe.js';
import { isTherapist, participantList, state } from '../core/state.js';

const text = el('p', { class: 'status-bar-text' });
const bar = el('div', { id: 'presence-note', class: 'status-bar presence-note', role: 'status', hidden: true }, text);

// The therapist last seen in the main room, and what the note says now ('' when nothing).
let lastTherapist = null;
let shown = '';

function mount() {
  const room = document.getElementById('room-panel');
  if (!room || bar.isConnected) return;
  room.insertBefore(bar, room.querySelector('.room-body'));
}

function render() {
  mount();
  let note = '';
  if (state.admitted && !isTherapist() && !state.space) {
    const therapists = participantList().filter((p) => p.role === 'therapist');
    const present = therapists.find((p) => !p.reconnecting);
    if (present) {
      if (shown) announce(`${present.name} is back.`);
      lastTherapist = present.name;
    } else if (therapists.length) {
      lastTherapist = therapists[0].name;
      note = `${lastTherapist}'s connection dropped. They will be back in a moment.`;
    } else if (lastTherapist) {
      note = `${lastTherapist} stepped out for a moment.`;
    }
  }
  if (note !== shown && note) announce(note);
  shown = note;
  text.textContent = note;
  bar.hidden = !note;
}

onRosterChange(render);
const reset = () => {
  lastTherapist = null;
  shown = '';
  bar.hidden = true;
};
on('sessionEnded', reset);
on('local:left', reset);

exposeProbe('presence', () => shown);
