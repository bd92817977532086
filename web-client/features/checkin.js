// Hearth web client: check-in and check-out (a 0–10 scale, pass allowed) and the trends drawn
// from them.
//
// - Therapists open a check-in at the start of a session and a check-out at its end, see each
//   person's answer as it comes (with the change since this session's check-in, and their
//   check-in last session as the server sends it), close it, and
//   may share the counts (never who said what) with the group. Each member's trend is a small
//   chart in the people list, and the session's chart shows check-in against check-out.
// - Participants answer with one click (or pass) and can see their own trend. Their number goes
//   to the therapists only; the page says so.
// Charts are SVG drawn here: check-ins are filled circles, check-outs hollow squares (told apart
// by shape, not only colour), each with a text alternative. Anonymous rounds keep counts only.

import { announce } from '../lib/announce.js';
import { el } from '../lib/dom.js';
import { formatDate } from '../lib/format.js';
import { on } from '../core/bus.js';
import { send } from '../core/connection.js';
import { exposeProbe } from '../core/probe.js';
import { peopleRows } from '../core/roster.js';
import { isTherapist, state } from '../core/state.js';

const SVG = 'http://www.w3.org/2000/svg';
const PHASE_LABEL = { checkIn: 'Check-in', checkOut: 'Check-out' };

const ci = {
  open: null, // the open round (CheckInInfo)
  mine: undefined, // my answer to it: undefined (none yet), null (passed) or a number
  values: new Map(), // therapists: participantId -> { value, change } for the open round
  counts: null, // therapists: the live histogram
  session: new Map(), // therapists: participantId -> { checkIn, checkOut } this session
  trends: new Map(), // participantId -> [{ sessionId, phase, value, atMs }]
  sessionId: null,
};

const names = new Map(); // participantId -> name, of everyone heard of this session
const nameOf = (id) => (id === state.participantId ? 'You' : names.get(id) || 'Someone');

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

// ---------------------------------------------------------------------------------------
// Charts.

/** A small trend chart: one point per answer over sessions, check-ins as filled circles and
 *  check-outs as hollow squares, with a text alternative listing every value. */
export function trendChart(points, { width = 120, height = 32, min = 0, max = 10, who = 'Check-ins' } = {}) {
  const answered = points.filter((p) => p.value !== null && p.value !== undefined);
  const summary = answered.length === 0
    ? `${who}: no check-ins yet.`
    : `${who}: ${answered.map((p) => `${formatDate(p.atMs)} ${PHASE_LABEL[p.phase] || p.phase} ${p.value}`).join('; ')}.`;
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', class: 'trend-chart' });
  const title = svg('title');
  title.textContent = summary;
  chart.append(title);
  chart.append(svg('line', { x1: 0, y1: height - 1, x2: width, y2: height - 1, class: 'trend-axis' }));
  const n = answered.length;
  const x = (i) => (n <= 1 ? width / 2 : 4 + (i * (width - 8)) / (n - 1));
  const y = (v) => height - 4 - ((v - min) / Math.max(1, max - min)) * (height - 8);
  const line = answered.filter((p) => p.phase === 'checkIn').map((p) => `${x(answered.indexOf(p))},${y(p.value)}`);
  if (line.length > 1) chart.append(svg('polyline', { points: line.join(' '), class: 'trend-line' }));
  answered.forEach((p, i) => {
    const mark = p.phase === 'checkOut'
      ? svg('rect', { x: x(i) - 3, y: y(p.value) - 3, width: 6, height: 6, class: 'trend-out' })
      : svg('circle', { cx: x(i), cy: y(p.value), r: 3, class: 'trend-in' });
    chart.append(mark);
  });
  return el('figure', { class: 'trend', 'data-points': String(n) }, chart, el('figcaption', { class: 'visually-hidden', text: summary }));
}

/** This session's chart: per person, check-in (circle) to check-out (square) on one line. */
function sessionChart() {
  const rows = [...ci.session.entries()].filter(([, v]) => v.checkIn != null || v.checkOut != null);
  const width = 240;
  const rowH = 22;
  const left = 90;
  const height = Math.max(1, rows.length) * rowH + 20;
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', class: 'session-chart' });
  const x = (v) => left + (v / 10) * (width - left - 10);
  const lines = [];
  rows.forEach(([id, v], i) => {
    const cy = i * rowH + 14;
    const label = svg('text', { x: 0, y: cy + 4, class: 'session-chart-name' });
    label.textContent = nameOf(id);
    chart.append(label);
    if (v.checkIn != null && v.checkOut != null) chart.append(svg('line', { x1: x(v.checkIn), y1: cy, x2: x(v.checkOut), y2: cy, class: 'trend-line' }));
    if (v.checkIn != null) chart.append(svg('circle', { cx: x(v.checkIn), cy, r: 4, class: 'trend-in' }));
    if (v.checkOut != null) chart.append(svg('rect', { x: x(v.checkOut) - 4, y: cy - 4, width: 8, height: 8, class: 'trend-out' }));
    lines.push(`${nameOf(id)}: check-in ${v.checkIn ?? 'none'}, check-out ${v.checkOut ?? 'none'}`);
  });
  for (const t of [0, 5, 10]) {
    const tick = svg('text', { x: x(t) - 3, y: height - 2, class: 'session-chart-tick' });
    tick.textContent = String(t);
    chart.append(tick);
  }
  const summary = rows.length ? `This session, check-in and check-out: ${lines.join('; ')}.` : 'No check-in values this session yet.';
  const title = svg('title');
  title.textContent = summary;
  chart.prepend(title);
  return el('figure', { id: 'session-chart', class: 'session-chart-figure' },
    el('figcaption', { class: 'session-chart-caption', text: 'This session: check-in (circle) and check-out (square)' }),
    chart, el('p', { class: 'visually-hidden', text: summary }));
}

// ---------------------------------------------------------------------------------------
// Trends from the server (GET /api/rooms/{room}/trends/{participant}, with our own token).

async function loadTrend(participantId) {
  try {
    const res = await fetch(`/api/rooms/${encodeURIComponent(state.roomId)}/trends/${encodeURIComponent(participantId)}`, {
      headers: { Authorization: `Bearer ${state.token}` },
    });
    if (!res.ok) return;
    const body = await res.json();
    ci.trends.set(participantId, body.values || []);
    renderTrends();
  } catch (err) {
    console.debug('[hearth] trend not loaded:', err);
  }
}

function refreshTrends() {
  if (isTherapist()) {
    for (const [id, li] of peopleRows) if (li.dataset.role === 'participant' || !li.dataset.role) loadTrend(id);
  } else if (state.participantId) {
    loadTrend(state.participantId);
  }
}

function renderTrends() {
  if (isTherapist()) {
    for (const [id, li] of peopleRows) {
      if (id === state.participantId) continue;
      const points = ci.trends.get(id);
      if (!points) continue;
      const old = li.querySelector('.trend');
      const chart = trendChart(points, { who: `${names.get(id) || 'Their'} check-ins` });
      if (old) old.replaceWith(chart);
      else li.append(chart);
    }
  }
  const own = ci.trends.get(state.participantId);
  if (own && !isTherapist()) {
    const box = card.querySelector('.my-trend');
    box.replaceChildren(el('p', { class: 'my-trend-title', text: 'Your check-ins so far (only you and your therapists see these)' }),
      trendChart(own, { width: 200, height: 40, who: 'Your check-ins' }));
    box.hidden = false;
  }
}

// ---------------------------------------------------------------------------------------
// The participant's card: the question, 0..10 buttons, Pass.

const card = el('section', { id: 'checkin-card', class: 'panel-section checkin-card', 'aria-labelledby': 'checkin-question', hidden: true },
  el('h2', { id: 'checkin-question', class: 'checkin-question' }),
  el('p', { class: 'hint checkin-privacy' }),
  el('div', { class: 'checkin-scale', role: 'group', 'aria-labelledby': 'checkin-question' }),
  el('p', { class: 'checkin-ends' }),
  el('p', { class: 'checkin-mine', role: 'status' }),
  el('div', { class: 'my-trend', hidden: true }));

function renderCard() {
  const r = ci.open;
  if (!r || isTherapist()) {
    card.hidden = true;
    return;
  }
  if (!card.isConnected) {
    const room = document.getElementById('room-panel');
    if (room) room.prepend(card);
  }
  card.hidden = false;
  card.querySelector('.checkin-question').textContent = `${PHASE_LABEL[r.phase]}: ${r.question}`;
  card.querySelector('.checkin-privacy').textContent = r.anonymous
    ? 'Anonymous: nobody, not even the therapist, sees your answer; only the counts are kept.'
    : 'Only the therapists see your answer. The group sees at most how many chose each number.';
  const scale = card.querySelector('.checkin-scale');
  const buttons = [];
  for (let v = r.min; v <= r.max; v += 1) {
    buttons.push(el('button', {
      type: 'button', class: 'button small checkin-value', 'data-value': String(v), 'aria-pressed': String(ci.mine === v),
      onclick: () => answer(v),
    }, el('span', { text: String(v) })));
  }
  buttons.push(el('button', {
    type: 'button', class: 'button small checkin-pass', 'data-value': 'pass', 'aria-pressed': String(ci.mine === null), onclick: () => answer(null),
  }, el('span', { text: 'Pass' })));
  scale.replaceChildren(...buttons);
  card.querySelector('.checkin-ends').textContent = `${r.min} = ${r.minLabel}, ${r.max} = ${r.maxLabel}`;
  const mine = card.querySelector('.checkin-mine');
  mine.textContent = ci.mine === undefined ? '' : ci.mine === null ? 'You passed. That is fine.' : `Your answer: ${ci.mine}.`;
  if (r.anonymous && ci.mine !== undefined) for (const b of scale.querySelectorAll('button')) b.disabled = true;
}

function answer(value) {
  if (!ci.open) return;
  send({ type: 'answerCheckIn', checkInId: ci.open.checkInId, value });
}

// ---------------------------------------------------------------------------------------
// The therapist's panel.

const question = el('input', { id: 'checkin-q', class: 'text-field', type: 'text', maxlength: '200', value: 'How are you feeling right now?' });
const phase = el('select', { id: 'checkin-phase', class: 'text-field' },
  el('option', { value: 'checkIn', text: 'Check-in (start of session)' }), el('option', { value: 'checkOut', text: 'Check-out (end of session)' }));
const anonymous = el('input', { id: 'checkin-anon', type: 'checkbox' });
const share = el('input', { id: 'checkin-share', type: 'checkbox' });
const answers = el('ul', { id: 'checkin-answers', class: 'checkin-answers', 'aria-label': 'Answers' });
const counts = el('p', { id: 'checkin-counts', class: 'hint' });
const startForm = el('form', { class: 'checkin-start', onsubmit: (e) => {
  e.preventDefault();
  send({ type: 'startCheckIn', phase: phase.value, question: question.value, anonymous: anonymous.checked });
} },
el('label', { for: 'checkin-phase', text: 'Round' }), phase,
el('label', { for: 'checkin-q', text: 'Question (0 to 10)' }), question,
el('label', { class: 'checkin-anon-label' }, anonymous, el('span', { text: ' Anonymous (counts only, no trend)' })),
el('button', { type: 'submit', class: 'button small accent', id: 'checkin-start', text: 'Start' }));
const running = el('div', { class: 'checkin-running', hidden: true },
  el('p', { class: 'checkin-running-title' }), answers, counts,
  el('label', { class: 'checkin-share-label' }, share, el('span', { text: ' Show the group the counts (never who said what)' })),
  el('button', { type: 'button', class: 'button small', id: 'checkin-close', text: 'Close', onclick: () => {
    if (ci.open) send({ type: 'closeCheckIn', checkInId: ci.open.checkInId, share: share.checked });
  } }));
const chartBox = el('div', { class: 'checkin-session-chart' });
const panel = el('section', { id: 'checkin-section', class: 'panel-section', 'aria-labelledby': 'checkin-heading', hidden: true },
  el('h2', { id: 'checkin-heading', text: 'Check-in' }), startForm, running, chartBox);

function renderPanel() {
  if (!isTherapist()) return;
  if (!panel.isConnected) {
    const controls = document.getElementById('room-controls');
    if (controls) controls.before(panel);
  }
  panel.hidden = false;
  const r = ci.open;
  startForm.hidden = Boolean(r);
  running.hidden = !r;
  if (r) {
    running.querySelector('.checkin-running-title').textContent = `${PHASE_LABEL[r.phase]} open: ${r.question}${r.anonymous ? ' (anonymous)' : ''}`;
    const rows = [...ci.values.entries()].map(([id, v]) => {
      const parts = [`${nameOf(id)}: ${v.value === null ? 'passed' : v.value}`];
      if (v.change != null) parts.push(`${v.change >= 0 ? '+' : ''}${v.change} since check-in`);
      // The server's own: their check-in at the latest earlier session.
      if (v.previous != null) parts.push(`last time ${v.previous}`);
      return el('li', { 'data-participant-id': id, text: parts.join(', ') });
    });
    answers.replaceChildren(...rows);
    answers.hidden = r.anonymous;
    const c = ci.counts;
    counts.textContent = c ? `Answers: ${c.counts.reduce((a, b) => a + b, 0)}, passed: ${c.passed}. ${c.counts.map((n, i) => (n ? `${c.min + i}: ${n}` : '')).filter(Boolean).join(', ')}` : 'No answers yet.';
  }
  chartBox.replaceChildren(sessionChart());
}

// ---------------------------------------------------------------------------------------
// Server messages.

function remember(list) {
  for (const p of list || []) names.set(p.id, p.name);
}

on('joined', ({ sessionId }) => {
  if (sessionId && sessionId !== ci.sessionId) ci.session.clear();
  ci.sessionId = sessionId || ci.sessionId;
});
on('admitted', ({ participants, sessionId }) => {
  remember(participants);
  if (sessionId && sessionId !== ci.sessionId) ci.session.clear();
  ci.sessionId = sessionId || ci.sessionId;
  renderPanel();
  refreshTrends();
});
on('participantJoined', ({ participant }) => {
  remember([participant]);
  if (isTherapist()) loadTrend(participant.id);
});
on('spaceRoster', ({ participants }) => { remember(participants); renderTrends(); });
on('spaceChanged', ({ participants }) => { remember(participants); renderTrends(); });
on('participantUpdated', () => renderTrends());

on('checkInStarted', ({ checkIn }) => {
  const same = ci.open && ci.open.checkInId === checkIn.checkInId;
  ci.open = checkIn;
  if (!same) {
    ci.mine = undefined;
    ci.values.clear();
    ci.counts = null;
    announce(`${PHASE_LABEL[checkIn.phase]}: ${checkIn.question}`);
  }
  renderCard();
  renderPanel();
});
on('checkInAnswered', ({ value }) => {
  ci.mine = value;
  renderCard();
  announce(value === null ? 'You passed.' : `Your answer ${value} was received.`);
});
on('checkInValue', ({ participantId, value, change, previous }) => {
  ci.values.set(participantId, { value, change, previous });
  if (ci.open) {
    const row = ci.session.get(participantId) || {};
    row[ci.open.phase] = value;
    ci.session.set(participantId, row);
  }
  renderPanel();
});
on('checkInCounts', (histogram) => {
  ci.counts = histogram;
  renderPanel();
});
on('checkInClosed', ({ histogram }) => {
  const closed = ci.open;
  ci.open = null;
  renderCard();
  renderPanel();
  if (histogram && !isTherapist()) {
    const counts = histogram.counts.map((n, i) => (n ? `${histogram.min + i}: ${n}` : '')).filter(Boolean).join(', ');
    announce(`The therapist shared the counts: ${counts || 'no numbers'}${histogram.passed ? `, ${histogram.passed} passed` : ''}.`);
  }
  // The round's named answers join the trends at once (the server stored the same values).
  if (closed && !closed.anonymous) {
    const point = (value) => ({ sessionId: ci.sessionId, phase: closed.phase, value, atMs: Date.now() });
    const add = (id, value) => {
      if (value === null || value === undefined) return;
      ci.trends.set(id, [...(ci.trends.get(id) || []), point(value)]);
    };
    if (isTherapist()) for (const [id, v] of ci.values) add(id, v.value);
    else if (typeof ci.mine === 'number') add(state.participantId, ci.mine);
    renderTrends();
  }
});
on('sessionEnded', () => {
  ci.open = null;
  renderCard();
});

// Read-only view for tests and debugging.
exposeProbe('checkIn', () => ({
  open: ci.open && { ...ci.open },
  mine: ci.mine,
  values: [...ci.values.entries()].map(([id, v]) => ({ participantId: id, ...v })),
  trends: [...ci.trends.entries()].map(([id, points]) => ({ participantId: id, points: points.length })),
  session: [...ci.session.entries()].map(([id, v]) => ({ participantId: id, ...v })),
}));
