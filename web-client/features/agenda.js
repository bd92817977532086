// The session's agenda and segment timer. Everyone sees a calm line above the video with the
// current item and the time left (the server's `secondsLeft`, counted down from receipt), and a
// polite warning a minute before the end; when the time is up it says so and keeps counting
// nothing down (the therapist moves on). Therapists get an "Agenda" panel: write the items (one
// per line, "Title, minutes"), start, extend by 5 minutes, end, and save or load templates kept
// for them on the server.

import { announce } from '../lib/announce.js';
import { el, placeBefore } from '../lib/dom.js';
import { formatLeft } from '../lib/format.js';
import { on } from '../core/bus.js';
import { CODES } from '../core/codes.js';
import { send } from '../core/connection.js';
import { exposeProbe } from '../core/probe.js';
import { isTherapist, state } from '../core/state.js';

const ag = { agenda: null, endsAt: null, timer: null, templates: [] };

// ---- the line everyone sees ----
const itemLine = el('span', { id: 'agenda-item', class: 'agenda-item' });
const leftLine = el('span', { id: 'agenda-left', class: 'agenda-left' });
const bar = el('p', { id: 'agenda-bar', class: 'agenda-bar', hidden: true }, itemLine, ' ', leftLine);

// ---- the therapist's panel ----
const itemsInput = el('textarea', { id: 'agenda-items', rows: '4', 'aria-describedby': 'agenda-items-hint' });
const formError = el('p', { class: 'form-error', role: 'alert' });
const list = el('ol', { id: 'agenda-list', class: 'agenda-list' });
const extendButton = el('button', { type: 'button', id: 'agenda-extend', class: 'button small', text: '5 more minutes' });
const endButton = el('button', { type: 'button', id: 'agenda-end', class: 'button small', text: 'End this item' });
const templateName = el('input', { type: 'text', id: 'agenda-template-name', maxlength: '60', autocomplete: 'off' });
const templateSelect = el('select', { id: 'agenda-template-select', 'aria-label': 'Saved agendas' });
const setForm = el('form', { id: 'agenda-form', class: 'agenda-form' },
  el('label', { for: 'agenda-items', text: 'Items, one per line: title, minutes' }),
  itemsInput,
  el('p', { id: 'agenda-items-hint', class: 'hint', text: 'For example: Check-in round, 10' }),
  el('button', { type: 'submit', class: 'button small accent', text: 'Set agenda' }),
  formError);
const templates = el('div', { class: 'agenda-templates' },
  el('label', { for: 'agenda-template-name', text: 'Save this agenda as' }), templateName,
  el('button', { type: 'button', id: 'agenda-save', class: 'button small', text: 'Save template',
    onclick: () => send({ type: 'saveAgendaTemplate', name: templateName.value.trim() }) }),
  templateSelect,
  el('button', { type: 'button', id: 'agenda-load', class: 'button small', text: 'Use saved agenda', onclick: () => {
    const t = ag.templates.find((x) => x.name === templateSelect.value);
    if (t) send({ type: 'setAgenda', items: t.items });
  } }));
const panel = el('section', { id: 'agenda-section', class: 'panel-section agenda', 'aria-labelledby': 'agenda-heading', hidden: true },
  el('h2', { id: 'agenda-heading', text: 'Agenda' }), list, el('div', { class: 'round-actions' }, extendButton, endButton), setForm, templates);

function mount() {
  placeBefore(bar, 'tiles');
  placeBefore(panel, 'room-controls');
}

function tick() {
  if (ag.endsAt === null) return;
  const left = ag.endsAt - performance.now();
  leftLine.textContent = left > 0 ? `${formatLeft(left)} left` : 'Time is up';
  bar.classList.toggle('over', left <= 0);
}

function render() {
  mount();
  const a = ag.agenda;
  const inCall = state.status === 'joined' && state.admitted;
  const current = a && a.current !== null && a.current !== undefined ? a.items[a.current] : null;
  bar.hidden = !(inCall && current);
  panel.hidden = !(inCall && isTherapist());
  clearInterval(ag.timer);
  ag.timer = null;
  if (current) {
    itemLine.textContent = `Now: ${current.title}.`;
    tick();
    ag.timer = setInterval(tick, 1000);
  }
  if (!panel.hidden) {
    list.replaceChildren(...(a ? a.items : []).map((item, i) => {
      const status = a.current === i ? 'current' : a.done.includes(i) ? 'done' : 'next';
      return el('li', { class: `agenda-entry ${status}`, 'aria-current': status === 'current' ? 'step' : false },
        el('span', { text: `${item.title} (${item.minutes} min)` }),
        status !== 'current' ? el('button', { type: 'button', class: 'button small', onclick: () => send({ type: 'startSegment', index: i }) },
          'Start', el('span', { class: 'visually-hidden', text: ` ${item.title}` })) : null);
    }));
    extendButton.hidden = !current;
    endButton.hidden = !current;
    templateSelect.replaceChildren(...ag.templates.map((t) => el('option', { value: t.name, text: t.name })));
    templateSelect.hidden = ag.templates.length === 0;
  }
}

on('agendaUpdated', (m) => {
  const before = ag.agenda && ag.agenda.current;
  ag.agenda = m.agenda;
  const a = m.agenda;
  ag.endsAt = a.secondsLeft !== null && a.secondsLeft !== undefined ? performance.now() + a.secondsLeft * 1000 : null;
  if (a.current !== null && a.current !== undefined && a.current !== before) announce(`Now: ${a.items[a.current].title}.`);
  render();
});
on('agendaWarning', (m) => {
  announce(`${Math.round(m.secondsLeft / 60) || 1} minute left in this part of the session.`);
});
on('agendaTemplates', (m) => {
  ag.templates = m.templates || [];
  render();
});
on('admitted', () => {
  if (isTherapist()) send({ type: 'getAgendaTemplates' });
  render();
});
on('sessionEnded', () => { ag.agenda = null; render(); });
on('error', (m) => {
  if (m.code === CODES.INVALID_AGENDA) formError.textContent = m.message;
});

setForm.addEventListener('submit', (event) => {
  event.preventDefault();
  formError.textContent = '';
  const items = [];
  for (const line of itemsInput.value.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const cut = line.lastIndexOf(',');
    const minutes = Number(cut > 0 ? line.slice(cut + 1).trim() : NaN);
    const title = cut > 0 ? line.slice(0, cut).trim() : '';
    if (!title || !Number.isInteger(minutes) || minutes < 1 || minutes > 240) {
      formError.textContent = `"${line}" needs a title, a comma and 1 to 240 minutes.`;
      return;
    }
    items.push({ title, minutes });
  }
  send({ type: 'setAgenda', items });
});
extendButton.addEventListener('click', () => send({ type: 'extendSegment', minutes: 5 }));
endButton.addEventListener('click', () => send({ type: 'endSegment' }));

exposeProbe('agenda', () => (ag.agenda ? { ...ag.agenda, shown: bar.hidden ? '' : bar.textContent } : null));
