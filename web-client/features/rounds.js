// Go-around rounds (check-in, check-out). The server owns the order and the clock; this shows
// them: a bar above the video with whose turn it is, a large countdown (from the server's
// `secondsLeft`, counted down from when the message arrived, so a wrong clock on this device
// does not matter), and the order with who has spoken, passed or been skipped. The speaker gets
// a "Pass" / "I'm done" button when the round allows it. Therapists start a round (order, time
// per turn, passing), move on and end it. Works at phone width: the bar wraps, the countdown
// stays large.

import { announce } from '../lib/announce.js';
import { el, placeBefore } from '../lib/dom.js';
import { formatLeft } from '../lib/format.js';
import { on, onRosterChange } from '../core/bus.js';
import { CODES } from '../core/codes.js';
import { send } from '../core/connection.js';
import { exposeProbe } from '../core/probe.js';
import { can, nameOf, state } from '../core/state.js';

const r = { round: null, endsAt: null, timer: null, lastCurrent: null };

// ---- the bar everyone sees ----
const turnLine = el('p', { id: 'round-turn', class: 'round-turn' });
const countdown = el('p', { id: 'round-countdown', class: 'round-countdown', 'aria-live': 'off' });
const orderList = el('ol', { id: 'round-order', class: 'round-order', 'aria-label': 'Order of turns' });
const passButton = el('button', { type: 'button', id: 'round-pass', class: 'button accent', hidden: true, text: 'Pass' });
const nextButton = el('button', { type: 'button', id: 'round-next', class: 'button small', hidden: true, text: 'Next person' });
const endButton = el('button', { type: 'button', id: 'round-end', class: 'button small', hidden: true, text: 'End round' });
const bar = el('section', { id: 'round-bar', class: 'round-bar', 'aria-labelledby': 'round-heading', hidden: true },
  el('div', { class: 'round-head' }, el('h2', { id: 'round-heading', text: 'Go-around' }), countdown),
  turnLine,
  orderList,
  el('div', { class: 'round-actions' }, passButton, nextButton, endButton));

// ---- the therapist's start form ----
const orderSelect = el('select', { id: 'round-order-select' },
  el('option', { value: 'roster', text: 'Everyone, in the order they joined' }),
  el('option', { value: 'random', text: 'Everyone, in a random order' }),
  el('option', { value: 'queue', text: 'Raised hands first, then everyone' }));
const secondsInput = el('input', { type: 'number', id: 'round-seconds', min: '5', max: '900', step: '5', inputmode: 'numeric', placeholder: 'No limit' });
const allowPass = el('input', { type: 'checkbox', id: 'round-allow-pass', checked: true });
const startError = el('p', { class: 'form-error', role: 'alert' });
const startForm = el('form', { id: 'round-start', class: 'round-start' },
  el('label', { for: 'round-order-select', text: 'Order' }), orderSelect,
  el('label', { for: 'round-seconds', text: 'Seconds per turn (optional)' }), secondsInput,
  el('label', { class: 'choice', for: 'round-allow-pass' }, allowPass, ' People may pass'),
  el('button', { type: 'submit', class: 'button small accent', text: 'Start round' }),
  startError);
const panel = el('section', { id: 'rounds-section', class: 'panel-section rounds', 'aria-labelledby': 'rounds-heading', hidden: true },
  el('h2', { id: 'rounds-heading', text: 'Go-around round' }), startForm);

function mount() {
  placeBefore(bar, 'tiles');
  placeBefore(panel, 'room-controls');
}

const nameFor = (id) => (id === state.participantId ? 'You' : nameOf(id));

function tick() {
  if (!r.endsAt) {
    countdown.textContent = '';
    countdown.hidden = true;
    return;
  }
  countdown.hidden = false;
  const left = r.endsAt - performance.now();
  countdown.textContent = formatLeft(left);
  countdown.classList.toggle('ending', left <= 10000);
}

function render() {
  mount();
  const round = r.round;
  const inCall = state.status === 'joined' && state.admitted;
  // Whoever may start rounds runs them (therapists, and co-facilitators unless withheld).
  const therapist = can('startRound');
  panel.hidden = !(inCall && therapist);
  bar.hidden = !(inCall && round);
  clearInterval(r.timer);
  r.timer = null;
  if (!round) return;
  const current = round.current;
  if (!current) turnLine.textContent = 'Everyone has had their turn.';
  else if (current === state.participantId) turnLine.textContent = round.allowPass ? 'It is your turn. Take your time, or pass.' : 'It is your turn.';
  else turnLine.textContent = `It is ${nameOf(current)}'s turn.`;
  const at = current ? round.order.indexOf(current) : round.order.length;
  orderList.replaceChildren(...round.order.map((id, i) => {
    let status = i < at ? 'done' : i === at ? 'current' : 'next';
    if (round.passed.includes(id)) status = 'passed';
    if (round.skipped.includes(id)) status = 'skipped';
    const label = { done: 'spoke', current: 'speaking now', next: 'waiting', passed: 'passed', skipped: 'not here' }[status];
    return el('li', { class: `round-person ${status}`, 'data-participant-id': id, 'aria-current': status === 'current' ? 'step' : false },
      el('span', { class: 'round-name', text: nameFor(id) }), el('span', { class: 'visually-hidden', text: `, ${label}` }));
  }));
  passButton.hidden = !(current === state.participantId && round.allowPass);
  nextButton.hidden = !therapist || !current;
  endButton.hidden = !therapist;
  tick();
  if (r.endsAt) r.timer = setInterval(tick, 250);
}

on('roundUpdated', (m) => {
  const round = m.round || null;
  r.round = round;
  r.endsAt = round && round.current && round.secondsLeft != null ? performance.now() + round.secondsLeft * 1000 : null;
  const current = round ? round.current : null;
  if (current !== r.lastCurrent) {
    if (current === state.participantId) announce('It is your turn in the round.');
    else if (current) announce(`${nameOf(current)}'s turn.`);
    else if (round) announce('The round is complete.');
  }
  r.lastCurrent = current;
  render();
});

startForm.addEventListener('submit', (event) => {
  event.preventDefault();
  startError.textContent = '';
  const message = { type: 'startRound', order: orderSelect.value, allowPass: allowPass.checked };
  const secs = secondsInput.value.trim();
  if (secs) {
    const n = Number(secs);
    if (!Number.isInteger(n) || n < 5 || n > 900) {
      startError.textContent = 'Seconds per turn is a whole number from 5 to 900, or empty for no limit.';
      secondsInput.setAttribute('aria-invalid', 'true');
      return;
    }
    message.secondsPerTurn = n;
  }
  secondsInput.removeAttribute('aria-invalid');
  send(message);
});
passButton.addEventListener('click', () => send({ type: 'passTurn' }));
nextButton.addEventListener('click', () => send({ type: 'nextTurn' }));
endButton.addEventListener('click', () => send({ type: 'endRound' }));
onRosterChange(render);
on('sessionEnded', () => { r.round = null; r.endsAt = null; render(); });
on('error', (m) => {
  if (m.code === CODES.INVALID_ROUND) startError.textContent = m.message;
});

exposeProbe('round', () => (r.round ? { ...r.round, shown: countdown.textContent, turnText: turnLine.textContent } : null));
