// Hearth milestone celebrations: the overlay over the video grid, congratulations,
// preferences, sharing a milestone, the therapist's controls and a participant's timeline.
//
// It talks to the page only through the bus (on(type, fn)), send(message) and the read-only
// core state (participantId, role, participants). Everything it shows from the server is
// set as text, never as markup; badges are server-made SVG shown as images (an <img> runs no
// script and loads nothing).

import { announce } from '../lib/announce.js';
import { el } from '../lib/dom.js';
import { formatDate } from '../lib/format.js';
import { svgIcon } from '../lib/icons.js';
import { on } from '../core/bus.js';
import { CODES } from '../core/codes.js';
import { send } from '../core/connection.js';
import { log } from '../core/log.js';
import { isTherapist, participantList, state } from '../core/state.js';
import { NO_KEY_TEXT, openText, outgoing } from '../e2ee/text.js';

const KINDS = {
  daysSober: { label: 'Days sober', needsValue: true, unit: ['day sober', 'days sober'] },
  sessionsAttended: { label: 'Sessions attended', needsValue: true, unit: ['session attended', 'sessions attended'] },
  programCompletion: { label: 'Program completed', needsValue: false },
  custom: { label: 'Something else', needsValue: false, needsLabel: true },
};
const REACTIONS = [
  { id: 'clap', label: 'Clap' },
  { id: 'heart', label: 'Heart' },
  { id: 'star', label: 'Star' },
  { id: 'hug', label: 'Hug' },
  { id: 'sparkle', label: 'Sparkle' },
];
/** Reaction icons as SVG shapes (no emoji font needed, nothing fetched). */
const ICONS = {
  clap: [
    ['rect', { x: 5.5, y: 9, width: 6, height: 12, rx: 3, transform: 'rotate(-18 8.5 15)', fill: '#5fd3bc', stroke: '#1b7f79' }],
    ['rect', { x: 12.5, y: 9, width: 6, height: 12, rx: 3, transform: 'rotate(18 15.5 15)', fill: '#5fd3bc', stroke: '#1b7f79' }],
    ['path', { d: 'M12 2.5v3.5M6.5 4l1.8 2.6M17.5 4l-1.8 2.6', fill: 'none', stroke: '#1b7f79' }],
  ],
  heart: [['path', { d: 'M12 20.5s-7.6-4.6-9.2-9.2C1.6 7.9 3.8 4.5 7.1 4.5c2 0 3.4 1.1 4.9 3 1.5-1.9 2.9-3 4.9-3 3.3 0 5.5 3.4 4.3 6.8-1.6 4.6-9.2 9.2-9.2 9.2z', fill: '#e0557d', stroke: '#a3264d' }]],
  star: [['path', { d: 'M12 2.8l2.8 5.9 6.4.8-4.7 4.4 1.2 6.4L12 17.1l-5.7 3.2 1.2-6.4-4.7-4.4 6.4-.8z', fill: '#f6c945', stroke: '#b7791f' }]],
  hug: [
    ['circle', { cx: 12, cy: 7, r: 3.6, fill: '#ffd66b', stroke: '#b7791f' }],
    ['path', { d: 'M5 21c.6-4.2 3.2-6.6 7-6.6s6.4 2.4 7 6.6', fill: '#ffd66b', stroke: '#b7791f' }],
    ['path', { d: 'M3 12.5c2.5 4.5 15.5 4.5 18 0', fill: 'none', stroke: '#c8436b' }],
  ],
  sparkle: [
    ['path', { d: 'M10 3l1.9 6.1L18 11l-6.1 1.9L10 19l-1.9-6.1L2 11l6.1-1.9z', fill: '#b9a5ff', stroke: '#6a4fc9' }],
    ['path', { d: 'M18.5 2.5l.8 2.2 2.2.8-2.2.8-.8 2.2-.8-2.2-2.2-.8 2.2-.8z', fill: '#6a4fc9' }],
  ],
};
const STYLES = [
  { id: 'big', label: 'Big', hint: 'A large card with confetti' },
  { id: 'standard', label: 'Standard', hint: 'A card over the video' },
  { id: 'quiet', label: 'Quiet', hint: 'A small banner' },
  { id: 'none', label: 'No celebration', hint: 'Only recorded on your timeline; your therapist sees it' },
];
const AUDIENCES = [
  { id: 'group', label: 'Everyone in my group' },
  { id: 'therapistOnly', label: 'Only me and my therapist' },
];
/** How long each style stays up (paused while pointed at or focused). */
const SHOW_MS = { quiet: 7000, standard: 10000, big: 12000, none: 6000 };
const reducedMotion = window.matchMedia('(prefers-reduced-motion: reduce)');

const ms = {
  prefs: null,
  queue: [],
  current: null,
  timer: null,
  remaining: 0,
  shownAt: 0,
  proposals: new Map(),
  myProposals: new Map(),
  history: null,
  groupHistory: null,
};

// ---- small helpers ----

const me = () => state.participantId;
const myRole = () => state.role;

function nameOf(id) {
  if (id === me()) return 'You';
  const p = participantList().find((x) => x.id === id);
  return p ? p.name : 'A participant';
}

/** "30 days sober", "Program completed", or the custom label. */
function describe(m) {
  const k = KINDS[m.kind] || KINDS.custom;
  let text;
  if (k.unit && m.value != null) text = `${m.value} ${m.value === 1 ? k.unit[0] : k.unit[1]}`;
  else if (m.kind === 'programCompletion') text = m.value != null ? `Program completed (${m.value})` : 'Program completed';
  else text = m.label || 'A milestone';
  if (m.kind === 'custom' && m.value != null) text = `${m.label}: ${m.value}`;
  return text;
}

function badgeImage(svg, alt, className) {
  const img = el('img', { class: className, alt, width: 200, height: 200 });
  img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
  return img;
}

function badgeUrl(m) {
  return `/api/badges/${encodeURIComponent(m.kind)}/${m.value != null ? m.value : 0}.svg`;
}

function icon(name) {
  return svgIcon(ICONS[name] || ICONS.star, {
    className: 'ms-icon', focusable: false,
    shapeAttrs: { 'stroke-width': '1.5', 'stroke-linecap': 'round', 'stroke-linejoin': 'round' },
  });
}

// ---- the overlay ----

function stage() {
  const tiles = document.getElementById('tiles');
  return (tiles && tiles.parentElement) || document.querySelector('.stage') || document.body;
}

function onCelebration(c) {
  if (c.style === 'none') {
    // A record, not a celebration: a quiet note to the participant and the therapists.
    const who = c.participantId === me() ? 'your' : `${c.name}'s`;
    toast(`Added to ${who} timeline: ${describe(c.milestone)}.`, c.participantId === me() ? null : 'Shown to no one else, as they prefer.');
    rememberOwn(c);
    return;
  }
  rememberOwn(c);
  ms.queue.push(c);
  if (!ms.current) showNext();
}

function rememberOwn(c) {
  if (c.participantId === me() && ms.history) {
    ms.history.push({ celebrationId: c.celebrationId, participantId: c.participantId, milestone: c.milestone, atMs: Date.now() });
    renderTimeline();
  }
}

function showNext() {
  const c = ms.queue.shift();
  if (!c) return;
  ms.current = c;
  const mine = c.participantId === me();
  const what = describe(c.milestone);
  const overlay = el('aside', {
    class: `ms-overlay ms-${c.style}${reducedMotion.matches ? ' ms-still' : ''}`,
    'aria-labelledby': 'ms-overlay-title',
    'data-celebration-id': c.celebrationId,
    'data-style': c.style,
  });
  const kicker = mine ? 'Your milestone' : c.audience === 'therapistOnly' ? `Shown only to ${c.name} and therapists` : 'Celebrating';
  const title = mine ? `Congratulations, ${c.name}!` : c.name;
  const text = el('div', { class: 'ms-text' },
    el('p', { class: 'ms-kicker', text: kicker }),
    el('h2', { id: 'ms-overlay-title', class: 'ms-name', text: title }),
    el('p', { class: 'ms-what', text: what }),
    c.milestone.label && c.milestone.kind !== 'custom' ? el('p', { class: 'ms-label', text: c.milestone.label }) : null,
    c.message ? el('p', { class: 'ms-message', text: `\u201C${c.message}\u201D` }) : null);
  const card = el('div', { class: 'ms-card' }, badgeImage(c.badgeSvg, `Badge: ${what}`, 'ms-badge'), text);
  const dismiss = el('button', {
    type: 'button', class: 'ms-dismiss', 'aria-label': 'Dismiss celebration', title: 'Dismiss', onclick: () => hide(),
  }, el('span', { 'aria-hidden': 'true', text: '\u00D7' }));
  card.append(dismiss);
  if (!mine) card.append(reactionBar(c));
  card.append(el('ul', { class: 'ms-congrats', 'aria-label': 'Congratulations' }));
  overlay.append(card);
  if (c.style === 'big' && !reducedMotion.matches) overlay.prepend(confetti());
  overlay.addEventListener('mouseenter', pause);
  overlay.addEventListener('mouseleave', resume);
  overlay.addEventListener('focusin', pause);
  overlay.addEventListener('focusout', (e) => { if (!overlay.contains(e.relatedTarget)) resume(); });
  overlay.addEventListener('keydown', (e) => { if (e.key === 'Escape') hide(); });
  const host = stage();
  host.classList.add('ms-host');
  host.append(overlay);
  announce(mine ? `Your milestone is being celebrated: ${what}.` : `Celebrating ${c.name}: ${what}.${c.message ? ` ${c.message}` : ''}`);
  ms.remaining = SHOW_MS[c.style] || SHOW_MS.standard;
  resume();
}

function pause() {
  if (!ms.timer) return;
  window.clearTimeout(ms.timer);
  ms.timer = null;
  ms.remaining -= Date.now() - ms.shownAt;
}

function resume() {
  if (!ms.current || ms.timer) return;
  ms.shownAt = Date.now();
  const id = ms.current.celebrationId;
  // The timer names its celebration, so it can never take down a later one.
  ms.timer = window.setTimeout(() => { if (ms.current && ms.current.celebrationId === id) hide(); }, Math.max(ms.remaining, 1500));
}

function hide() {
  window.clearTimeout(ms.timer);
  ms.timer = null;
  // Cleared before the overlay leaves the page: removing it may fire its focusout (resume).
  ms.current = null;
  const overlay = document.querySelector('.ms-overlay');
  const hadFocus = overlay && overlay.contains(document.activeElement);
  if (overlay) overlay.remove();
  if (hadFocus) {
    const fallback = document.getElementById('more-button') || document.querySelector('#controls button');
    if (fallback) fallback.focus();
  }
  if (ms.queue.length) window.setTimeout(showNext, 400);
}

function reactionBar(c) {
  const note = el('input', {
    type: 'text', class: 'ms-note', maxlength: 140, placeholder: 'A few kind words (optional)',
    'aria-label': `Message to ${c.name} (optional)`,
  });
  const status = el('p', { class: 'ms-sent', 'aria-live': 'polite' });
  const buttons = REACTIONS.map((r) => el('button', {
    type: 'button', class: 'ms-reaction', 'data-reaction': r.id, 'aria-label': `${r.label} for ${c.name}`, title: r.label,
    onclick: () => {
      const message = note.value.trim();
      sealedNote(message, 'congratulation').then((sealed) => {
        send({ type: 'congratulate', celebrationId: c.celebrationId, reaction: r.id, ...(sealed ? { message: sealed } : {}) });
        note.value = '';
        status.textContent = `Sent ${r.label.toLowerCase()}.`;
      }, () => { status.textContent = NOTE_NOT_SEALED; });
    },
  }, icon(r.id), el('span', { class: 'ms-reaction-label', 'aria-hidden': 'true', text: r.label })));
  const bar = el('div', { class: 'ms-react', role: 'group', 'aria-label': `Congratulate ${c.name}` },
    el('div', { class: 'ms-reaction-row' }, buttons));
  if (c.style !== 'quiet') bar.append(note);
  bar.append(status);
  return bar;
}

function onCongratulation(m) {
  const r = REACTIONS.find((x) => x.id === m.reaction) || REACTIONS[0];
  const from = m.from === me() ? 'You' : m.fromName;
  const overlay = document.querySelector(`.ms-overlay[data-celebration-id="${CSS.escape(m.celebrationId)}"]`);
  if (overlay) {
    const list = overlay.querySelector('.ms-congrats');
    const item = el('li', { class: 'ms-congrat' },
      icon(r.id),
      el('span', { class: 'ms-congrat-from', text: from }),
      m.message ? el('span', { class: 'ms-congrat-msg', text: m.message }) : null);
    list.append(item);
    while (list.children.length > 4) list.firstElementChild.remove();
    if (!reducedMotion.matches) float(overlay, r.id);
    // Give people time to read what others said.
    if (ms.timer) { pause(); ms.remaining = Math.max(ms.remaining, 4000); resume(); }
  } else if (ms.current === null && m.from !== me()) {
    toast(`${from} sent you a ${r.label.toLowerCase()}`, m.message || null);
  }
  if (m.from !== me()) announce(`${from} sent ${r.label.toLowerCase()}${m.message ? `: ${m.message}` : ''}.`);
}

function float(overlay, reaction) {
  const f = el('span', { class: 'ms-float', 'aria-hidden': 'true' }, icon(reaction));
  f.style.left = `${20 + Math.random() * 60}%`;
  overlay.append(f);
  window.setTimeout(() => f.remove(), 2200);
}

function confetti() {
  const box = el('div', { class: 'ms-confetti', 'aria-hidden': 'true' });
  const colours = ['#f6c945', '#5fd3bc', '#ff9fb8', '#9fa8ff', '#ffd66b', '#7cc4bc'];
  for (let i = 0; i < 70; i += 1) {
    const piece = el('i');
    piece.style.left = `${Math.random() * 100}%`;
    piece.style.background = colours[i % colours.length];
    piece.style.animationDelay = `${Math.random() * 1.2}s`;
    piece.style.animationDuration = `${2.6 + Math.random() * 2}s`;
    piece.style.setProperty('--drift', `${(Math.random() - 0.5) * 160}px`);
    piece.style.setProperty('--spin', `${Math.round(Math.random() * 720 - 360)}deg`);
    box.append(piece);
  }
  return box;
}

function toast(text, detail, actions) {
  let stack = document.getElementById('ms-toasts');
  if (!stack) {
    stack = el('div', { id: 'ms-toasts', class: 'ms-toasts' });
    document.body.append(stack);
  }
  const close = el('button', { type: 'button', class: 'ms-toast-close', 'aria-label': 'Dismiss', onclick: () => t.remove() },
    el('span', { 'aria-hidden': 'true', text: '\u00D7' }));
  const t = el('div', { class: 'ms-toast', role: 'status' },
    el('p', { class: 'ms-toast-text', text }), detail ? el('p', { class: 'ms-toast-detail', text: detail }) : null);
  if (actions) t.append(actions);
  t.append(close);
  stack.append(t);
  if (!actions) window.setTimeout(() => t.remove(), 8000);
  return t;
}

// ---- preferences, sharing and the timeline: one dialog ----

function openButton() {
  if (document.getElementById('ms-open-button')) return;
  // In the control bar's "More" menu: used now and then, not every minute.
  const menu = document.getElementById('more-menu');
  if (!menu) return;
  const button = el('button', {
    id: 'ms-open-button', type: 'button', class: 'menu-item ms-open', 'aria-haspopup': 'dialog',
    onclick: () => openDialog(ms.prefs && !ms.prefs.chosen && myRole() === 'participant' ? 'prefs' : undefined),
  },
  el('span', { class: 'ms-open-icon', 'aria-hidden': 'true', text: '\u2605' }),
  el('span', { class: 'label', text: 'Milestones and celebrations' }));
  menu.append(button);
}

function radios(name, options, current) {
  return el('div', { class: 'ms-radios' }, options.map((o) => el('label', { class: 'ms-radio' },
    el('input', { type: 'radio', name, value: o.id, checked: o.id === current }),
    el('span', { class: 'ms-radio-text' }, el('span', { text: o.label }), o.hint ? el('span', { class: 'ms-hint', text: o.hint }) : null))));
}

function milestoneFields(prefix) {
  const kind = el('select', { id: `${prefix}-kind`, name: 'kind' },
    Object.entries(KINDS).map(([id, k]) => el('option', { value: id, text: k.label })));
  const value = el('input', { id: `${prefix}-value`, name: 'value', type: 'number', min: 1, max: 100000, inputmode: 'numeric' });
  const label = el('input', { id: `${prefix}-label`, name: 'label', type: 'text', maxlength: 40 });
  const message = el('textarea', { id: `${prefix}-message`, name: 'message', maxlength: 280, rows: 2 });
  const valueField = el('div', { class: 'ms-field' }, el('label', { for: value.id, text: 'How many' }), value);
  const labelField = el('div', { class: 'ms-field' }, el('label', { for: label.id, text: 'What it is (optional)' }), label);
  const sync = () => {
    const k = KINDS[kind.value];
    valueField.querySelector('label').textContent = k.needsValue ? 'How many' : 'Number (optional)';
    value.required = Boolean(k.needsValue);
    label.required = Boolean(k.needsLabel);
    labelField.querySelector('label').textContent = k.needsLabel ? 'What it is' : 'Label (optional)';
  };
  kind.addEventListener('change', sync);
  sync();
  const fields = el('div', { class: 'ms-fields' },
    el('div', { class: 'ms-field' }, el('label', { for: kind.id, text: 'Milestone' }), kind),
    valueField, labelField,
    el('div', { class: 'ms-field ms-wide' }, el('label', { for: message.id, text: 'A note (optional)' }), message));
  const read = () => {
    const out = { kind: kind.value };
    const v = parseInt(value.value, 10);
    if (Number.isFinite(v) && v > 0) out.value = v;
    if (label.value.trim()) out.label = label.value.trim();
    if (message.value.trim()) out.message = message.value.trim();
    return out;
  };
  const reset = () => { value.value = ''; label.value = ''; message.value = ''; };
  return { fields, read, reset };
}

function dialog(id, titleText) {
  let d = document.getElementById(id);
  if (d) return d;
  d = el('dialog', { id, class: 'ms-dialog', 'aria-labelledby': `${id}-title` });
  const close = el('button', { type: 'button', class: 'ms-dialog-close', 'aria-label': 'Close', onclick: () => d.close() },
    el('span', { 'aria-hidden': 'true', text: '\u00D7' }));
  d.append(el('div', { class: 'ms-dialog-head' }, el('h2', { id: `${id}-title`, text: titleText }), close),
    el('div', { class: 'ms-dialog-body' }));
  document.body.append(d);
  return d;
}

/** The Milestones dialog; `section` ('prefs') scrolls to and focuses that part. */
function openDialog(section) {
  const d = dialog('ms-dialog', isTherapist() ? 'Milestones in this group' : 'Your milestones');
  const body = d.querySelector('.ms-dialog-body');
  body.replaceChildren();
  if (isTherapist()) {
    body.append(el('section', { class: 'ms-section', 'aria-labelledby': 'ms-prop-h' },
      el('h3', { id: 'ms-prop-h', text: 'Shared with you' }), el('ul', { id: 'ms-proposal-list', class: 'ms-proposals' })));
    body.append(el('section', { class: 'ms-section', 'aria-labelledby': 'ms-group-h' },
      el('h3', { id: 'ms-group-h', text: 'Group timeline' }), el('div', { id: 'ms-group-timeline' }, el('p', { class: 'ms-hint', text: 'Loading…' }))));
    renderProposals();
    send({ type: 'getMilestoneHistory', group: true });
  } else {
    body.append(
      el('section', { class: 'ms-section', 'aria-labelledby': 'ms-tl-h' },
        el('h3', { id: 'ms-tl-h', text: 'Your timeline' }), el('div', { id: 'ms-timeline' }, el('p', { class: 'ms-hint', text: 'Loading…' }))),
      shareSection(), prefsSection());
    send({ type: 'getMilestoneHistory' });
  }
  if (!d.open) d.showModal();
  if (section === 'prefs') {
    const prefs = document.getElementById('ms-prefs-section');
    prefs.scrollIntoView({ block: 'start' });
    const checked = prefs.querySelector('input:checked');
    if (checked) checked.focus();
  }
}

function prefsSection() {
  const p = ms.prefs || { style: 'standard', audience: 'therapistOnly' };
  const status = el('p', { class: 'ms-status', role: 'status' });
  const form = el('form', { class: 'ms-prefs' },
    el('fieldset', {}, el('legend', { text: 'How would you like to be celebrated?' }), radios('ms-style', STYLES, p.style)),
    el('fieldset', {}, el('legend', { text: 'Who sees it?' }), radios('ms-audience', AUDIENCES, p.audience)),
    el('div', { class: 'ms-actions' }, el('button', { type: 'submit', class: 'button small accent', text: 'Save' }), status));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const style = form.querySelector('input[name="ms-style"]:checked').value;
    const audience = form.querySelector('input[name="ms-audience"]:checked').value;
    send({ type: 'setCelebrationPreferences', style, audience });
    status.textContent = 'Saving…';
  });
  return el('section', { class: 'ms-section', id: 'ms-prefs-section', 'aria-labelledby': 'ms-prefs-h' },
    el('h3', { id: 'ms-prefs-h', text: 'Celebrations' }),
    ms.prefs && !ms.prefs.chosen ? el('p', { class: 'ms-hint ms-default-hint', text: 'Until you choose, only you and your therapist see your milestones.' }) : null,
    form);
}

function shareSection() {
  const f = milestoneFields('ms-share');
  const status = el('p', { class: 'ms-status', id: 'ms-share-status', role: 'status' });
  const form = el('form', { class: 'ms-share' }, f.fields,
    el('div', { class: 'ms-actions' }, el('button', { type: 'submit', class: 'button small', text: 'Send to my therapist' }), status));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const read = f.read();
    sealedNote(read.message, 'milestoneNote').then((message) => {
      send({ type: 'shareMilestone', ...read, ...(message ? { message } : {}) });
      f.reset();
      status.textContent = 'Sending…';
    }, () => { status.textContent = NOTE_NOT_SEALED; });
  });
  return el('section', { class: 'ms-section', 'aria-labelledby': 'ms-share-h' },
    el('h3', { id: 'ms-share-h', text: 'Share a milestone' }),
    el('p', { class: 'ms-hint', text: 'Your therapist sees it first and decides with you how to celebrate it.' }),
    form);
}

function onPreferences(m) {
  ms.prefs = { style: m.style, audience: m.audience, chosen: m.chosen };
  const status = document.querySelector('#ms-prefs-section .ms-status');
  if (status) status.textContent = 'Saved.';
  const defaults = document.querySelector('#ms-prefs-section .ms-default-hint');
  if (defaults && m.chosen) defaults.remove();
  renderAsk();
}

// Never asked unprompted (a question popping up on arrival covered the controls): until the
// person chooses, the menu item says there is a choice to make, and the dialog opens on it.
function renderAsk() {
  const button = document.getElementById('ms-open-button');
  if (!button) return;
  const open = !(ms.prefs && ms.prefs.chosen) && myRole() === 'participant';
  let hint = button.querySelector('.ms-ask');
  if (open && !hint) {
    hint = el('span', { class: 'ms-ask', text: 'Choose how you are celebrated' });
    button.append(hint);
  } else if (!open && hint) {
    hint.remove();
  }
}

// ---- timeline ----

function onHistory(m) {
  if (m.group) {
    ms.groupHistory = m.entries;
    renderGroupTimeline();
  } else if (!m.participantId || m.participantId === me()) {
    ms.history = m.entries;
    renderTimeline();
  }
}

function renderTimeline() {
  const box = document.getElementById('ms-timeline');
  if (!box || !ms.history) return;
  if (!ms.history.length) {
    box.replaceChildren(el('p', { class: 'ms-hint', text: 'No milestones yet. They will appear here as they are celebrated.' }));
    return;
  }
  box.replaceChildren(chart(ms.history), timelineList(ms.history, false));
}

function renderGroupTimeline() {
  const box = document.getElementById('ms-group-timeline');
  if (!box || !ms.groupHistory) return;
  if (!ms.groupHistory.length) {
    box.replaceChildren(el('p', { class: 'ms-hint', text: 'No milestones celebrated in this group yet.' }));
    return;
  }
  box.replaceChildren(timelineList(ms.groupHistory, true));
}

function timelineList(entries, withNames) {
  return el('ol', { class: 'ms-timeline' }, entries.slice().reverse().map((e) => el('li', { class: 'ms-entry' },
    el('img', { class: 'ms-entry-badge', src: badgeUrl(e.milestone), alt: '', width: 48, height: 48 }),
    el('div', {},
      withNames ? el('p', { class: 'ms-entry-who', text: nameOf(e.participantId) }) : null,
      el('p', { class: 'ms-entry-what', text: describe(e.milestone) }),
      el('p', { class: 'ms-hint', text: formatDate(e.atMs) })))));
}

/**
 * A small chart of the milestones in the order they happened (evenly spaced, dated): days
 * sober and sessions as lines, other milestones as stars. The list below is its text version.
 */
function chart(entries) {
  const NS = 'http://www.w3.org/2000/svg';
  const W = 340; const H = 170; const L = 34; const R = 16; const T = 16; const B = 34;
  const svg = document.createElementNS(NS, 'svg');
  const add = (parent, tag, attrs, text) => {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
    if (text != null) n.textContent = text;
    parent.append(n);
    return n;
  };
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('class', 'ms-chart');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'Chart of your milestones over time; the same milestones are listed below');
  const sorted = entries.slice().sort((a, b) => a.atMs - b.atMs);
  const step = sorted.length > 1 ? (W - L - R) / (sorted.length - 1) : 0;
  const x = (i) => (sorted.length > 1 ? L + i * step : (L + W - R) / 2);
  const numeric = (e) => e.milestone.value != null && KINDS[e.milestone.kind] && KINDS[e.milestone.kind].unit;
  const vmax = Math.max(1, ...sorted.filter(numeric).map((e) => e.milestone.value));
  const y = (v) => H - B - (v / vmax) * (H - T - B);
  add(svg, 'line', { x1: L, y1: H - B, x2: W - R, y2: H - B, class: 'ms-axis' });
  add(svg, 'line', { x1: L, y1: T, x2: L, y2: H - B, class: 'ms-axis' });
  add(svg, 'text', { x: L - 5, y: T + 4, 'text-anchor': 'end', class: 'ms-tick' }, String(vmax));
  add(svg, 'text', { x: L - 5, y: H - B + 3, 'text-anchor': 'end', class: 'ms-tick' }, '0');
  add(svg, 'text', { x: x(0), y: H - 12, 'text-anchor': sorted.length > 1 ? 'start' : 'middle', class: 'ms-tick' }, formatDate(sorted[0].atMs));
  if (sorted.length > 1) add(svg, 'text', { x: W - R, y: H - 12, 'text-anchor': 'end', class: 'ms-tick' }, formatDate(sorted[sorted.length - 1].atMs));
  for (const [kind, cls] of [['daysSober', 'ms-s-days'], ['sessionsAttended', 'ms-s-sessions']]) {
    const pts = sorted.map((e, i) => [e, i]).filter(([e]) => numeric(e) && e.milestone.kind === kind);
    if (!pts.length) continue;
    if (pts.length > 1) add(svg, 'polyline', { points: pts.map(([e, i]) => `${x(i)},${y(e.milestone.value)}`).join(' '), class: `ms-line ${cls}` });
    for (const [e, i] of pts) {
      add(svg, 'circle', { cx: x(i), cy: y(e.milestone.value), r: 4.5, class: `ms-dot ${cls}` });
      add(svg, 'text', { x: x(i), y: y(e.milestone.value) - 8, 'text-anchor': 'middle', class: 'ms-value' }, String(e.milestone.value));
    }
  }
  sorted.forEach((e, i) => {
    if (!numeric(e)) add(svg, 'text', { x: x(i), y: H - B - 5, 'text-anchor': 'middle', class: 'ms-star' }, '\u2605');
  });
  const legend = el('p', { class: 'ms-legend' },
    el('span', { class: 'ms-key ms-s-days', text: 'Days sober' }),
    el('span', { class: 'ms-key ms-s-sessions', text: 'Sessions' }),
    el('span', { class: 'ms-key ms-s-other', text: '\u2605 Other milestones' }));
  return el('figure', { class: 'ms-figure' }, svg, legend);
}

// ---- therapist: celebrate from the people list, approve shared milestones ----

function decoratePeople() {
  const list = document.getElementById('people-list');
  if (!list || !isTherapist()) return;
  for (const row of list.querySelectorAll('li[data-participant-id]')) {
    const id = row.getAttribute('data-participant-id');
    const p = participantList().find((x) => x.id === id);
    const wanted = p && p.role === 'participant';
    // The row's actions may be on the person's video tile just now (its "…" opened them there).
    const actions = row.actionsEl || row.querySelector('.person-actions') || row;
    const existing = actions.querySelector('.ms-celebrate');
    if (!wanted) { if (existing) existing.remove(); continue; }
    if (existing) continue;
    const button = el('button', {
      type: 'button', class: 'button small ms-celebrate', 'data-milestone-action': 'celebrate',
      onclick: (e) => { e.stopPropagation(); openCelebrate(id); },
    }, el('span', { class: 'label', text: 'Celebrate\u2026' }), el('span', { class: 'visually-hidden', text: ` ${p.name}` }));
    // Before "Remove…", which stays last, apart.
    actions.insertBefore(button, actions.querySelector('[data-action="remove"]'));
  }
}

function openCelebrate(id) {
  const d = dialog('ms-celebrate-dialog', 'Celebrate a milestone');
  const body = d.querySelector('.ms-dialog-body');
  const f = milestoneFields('ms-cel');
  const status = el('p', { class: 'ms-status', role: 'status' });
  const form = el('form', { class: 'ms-celebrate-form', 'data-participant-id': id },
    el('p', { class: 'ms-for' }, 'For ', el('strong', { text: nameOf(id) })),
    el('p', { class: 'ms-hint', text: 'Shown as they chose: to the group, or only to them and therapists.' }),
    f.fields,
    el('div', { class: 'ms-actions' },
      el('button', { type: 'submit', class: 'button small accent', text: 'Celebrate' }),
      el('button', { type: 'button', class: 'button small', text: 'Cancel', onclick: () => d.close() }), status));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const read = f.read();
    sealedNote(read.message, 'milestoneNote').then((message) => {
      send({ type: 'celebrate', participantId: id, ...read, ...(message ? { message } : {}) });
      d.close();
    }, () => { status.textContent = NOTE_NOT_SEALED; });
  });
  body.replaceChildren(form);
  if (!d.open) d.showModal();
  const first = form.querySelector('select');
  if (first) first.focus();
}

function onProposed(m) {
  if (m.participantId === me()) {
    ms.myProposals.set(m.proposalId, m);
    const s = document.getElementById('ms-share-status');
    if (s) s.textContent = 'Sent. Your therapist will see it.';
    return;
  }
  if (!isTherapist()) return;
  ms.proposals.set(m.proposalId, m);
  renderProposals();
  // Also a toast: the sidebar may be scrolled away from its section.
  const t = toast(`${m.name} shared a milestone: ${describe(m.milestone)}`, m.message ? `\u201C${m.message}\u201D` : null, proposalActions(m));
  t.classList.add('ms-proposal-toast');
  t.setAttribute('data-proposal-id', m.proposalId);
}

/** Therapists: shared milestones wait in their own section at the top of the sidebar. */
function proposalsSection() {
  let section = document.getElementById('ms-proposals-section');
  if (section) return section;
  const sidebar = document.getElementById('sidebar');
  if (!sidebar) return null;
  section = el('section', { id: 'ms-proposals-section', class: 'panel-section ms-proposals-section', 'aria-labelledby': 'ms-proposals-heading', hidden: true },
    el('h2', { id: 'ms-proposals-heading' }, 'Shared milestones ', el('span', { class: 'count-badge has-some' })),
    el('ul', { class: 'ms-proposals' }));
  const waiting = document.getElementById('waiting-section');
  sidebar.insertBefore(section, waiting ? waiting.nextSibling : sidebar.firstChild);
  return section;
}

function proposalActions(m) {
  const who = () => el('span', { class: 'visually-hidden', text: `: ${m.name}, ${describe(m.milestone)}` });
  return el('div', { class: 'ms-toast-actions' },
    el('button', { type: 'button', class: 'button small accent', 'data-milestone-action': 'approve',
      onclick: () => send({ type: 'approveMilestone', proposalId: m.proposalId }) }, 'Celebrate', who()),
    el('button', { type: 'button', class: 'button small', 'data-milestone-action': 'decline',
      onclick: () => send({ type: 'declineMilestone', proposalId: m.proposalId }) }, 'Not now', who()));
}

function renderProposals() {
  const rows = () => [...ms.proposals.values()].map((m) => el('li', { class: 'ms-proposal', 'data-proposal-id': m.proposalId },
    el('p', {}, el('strong', { text: m.name }), ` \u2014 ${describe(m.milestone)}`),
    m.message ? el('p', { class: 'ms-hint', text: `\u201C${m.message}\u201D` }) : null,
    proposalActions(m)));
  const section = isTherapist() ? proposalsSection() : null;
  if (section) {
    section.hidden = ms.proposals.size === 0;
    section.querySelector('.count-badge').textContent = String(ms.proposals.size);
    section.querySelector('.ms-proposals').replaceChildren(...rows());
  }
  const list = document.getElementById('ms-proposal-list');
  if (list) list.replaceChildren(...(ms.proposals.size ? rows() : [el('li', { class: 'ms-hint', text: 'Nothing waiting.' })]));
}

function onResolved(m) {
  ms.proposals.delete(m.proposalId);
  renderProposals();
  for (const t of document.querySelectorAll(`.ms-proposal-toast[data-proposal-id="${CSS.escape(m.proposalId)}"]`)) t.remove();
  if (ms.myProposals.has(m.proposalId)) {
    ms.myProposals.delete(m.proposalId);
    toast(m.approved ? 'Your therapist is celebrating your milestone.' : 'Your therapist saw your milestone and will talk with you about it.');
  }
}

function onError(m) {
  const mine = [CODES.UNKNOWN_MILESTONE, CODES.NO_THERAPIST, CODES.INVALID_FIELD, CODES.RATE_LIMITED];
  if (!mine.includes(m.code)) return;
  const status = document.querySelector('dialog[open] .ms-status') || document.querySelector('.ms-overlay .ms-sent');
  if (status) status.textContent = m.message;
}

// ---- notes sealed end to end (e2ee/text.js) ----

const NOTE_NOT_SEALED = 'This room is end-to-end encrypted and your browser has no key for it yet. Try again in a moment.';

/** A note as it goes on the wire: nothing when empty, sealed in an end-to-end encrypted room. */
async function sealedNote(text, field) {
  return text ? outgoing(text, { field }) : null;
}

// Sealed notes open asynchronously; one chain keeps the messages in the order they came.
let incoming = Promise.resolve();
const inOrder = (fn) => (m) => { incoming = incoming.then(() => fn(m)).catch((err) => log('milestones: a message could not be shown', err)); };

/** `handler` gets the message with its note opened (or the no-key wording). */
function withNote(field, handler) {
  return inOrder(async (m) => {
    if (m.message === undefined || m.message === null || typeof m.message === 'string') return handler(m);
    const text = await openText(m.message, { field, from: m.from || null });
    return handler({ ...m, message: text === null ? NO_KEY_TEXT : text });
  });
}

// ---- wiring ----

function start() {
  on('admitted', () => {
    openButton();
    const b = document.getElementById('ms-open-button');
    if (b) b.hidden = myRole() === 'observer';
    if (myRole() === 'participant') send({ type: 'getCelebrationPreferences' });
    decoratePeople();
  });
  on('celebration', withNote('milestoneNote', onCelebration));
  on('congratulation', withNote('congratulation', onCongratulation));
  on('celebrationPreferences', onPreferences);
  on('milestoneProposed', withNote('milestoneNote', onProposed));
  on('milestoneProposalResolved', onResolved);
  on('milestoneHistory', onHistory);
  on('error', onError);
  on('sessionEnded', () => { ms.queue = []; hide(); });
  const people = document.getElementById('people-list');
  if (people) new MutationObserver(decoratePeople).observe(people, { childList: true });
  reducedMotion.addEventListener('change', () => {
    const o = document.querySelector('.ms-overlay');
    if (o && reducedMotion.matches) { o.classList.add('ms-still'); const c = o.querySelector('.ms-confetti'); if (c) c.remove(); }
  });
}

start();
