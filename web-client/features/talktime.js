// Talk-time balance, for therapists only: a small bar chart beside the people list of how long
// each participant has spoken this session (`talkTime`, from the server's audio levels; the
// server sends it to therapists only). "Quietest first" sorts it so the people to draw in are on
// top. Bars are drawn through the CSSOM (the page's CSP refuses style attributes); each row
// also says its value in words for screen readers.

import { el } from '../lib/dom.js';
import { on } from '../core/bus.js';
import { exposeProbe } from '../core/probe.js';
import { isTherapist, nameOf, state } from '../core/state.js';

const tt = { people: [] };

const quietest = el('input', { type: 'checkbox', id: 'talk-quietest' });
const list = el('ul', { id: 'talk-list', class: 'talk-list', 'aria-labelledby': 'talk-heading' });
const panel = el('section', { id: 'talk-section', class: 'panel-section talk', 'aria-labelledby': 'talk-heading', hidden: true },
  el('h2', { id: 'talk-heading', text: 'Talk time' }),
  el('p', { class: 'hint', text: 'Only you see this. Muted time counts as silence.' }),
  el('label', { class: 'choice', for: 'talk-quietest' }, quietest, ' Quietest first'),
  list);

function mount() {
  if (panel.isConnected) return;
  const people = document.getElementById('people-section');
  if (people) people.after(panel);
}

const minutes = (s) => (s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`);

function render() {
  mount();
  panel.hidden = !(isTherapist() && state.status === 'joined' && state.admitted && tt.people.length > 0);
  if (panel.hidden) return;
  const rows = tt.people.slice();
  if (quietest.checked) rows.sort((a, b) => a.seconds - b.seconds);
  const max = Math.max(1, ...rows.map((p) => p.seconds));
  list.replaceChildren(...rows.map((p) => {
    const fill = el('span', { class: 'talk-fill' });
    fill.style.width = `${Math.round((100 * p.seconds) / max)}%`;
    return el('li', { class: 'talk-row', 'data-participant-id': p.participantId, 'data-seconds': p.seconds },
      el('span', { class: 'talk-name', text: nameOf(p.participantId) }),
      el('span', { class: 'talk-bar', 'aria-hidden': 'true' }, fill),
      el('span', { class: 'talk-value', text: minutes(p.seconds) }));
  }));
}

on('talkTime', (m) => {
  tt.people = m.people || [];
  render();
});
quietest.addEventListener('change', render);
on('admitted', render);
on('participantJoined', render);
on('participantLeft', render);
on('sessionEnded', () => { tt.people = []; render(); });

exposeProbe('talkTime', () => tt.people.map((p) => ({ ...p })));
