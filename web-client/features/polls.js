// Hearth web client: in-call polls. A module: it hears the server through
// the bus (on(type, fn), core/bus.js) and talks to it through send(message) (core/connection.js).
//
// Participants get a card per open poll: radio buttons (one answer) or checkboxes (several), a
// submit button, a countdown when the poll has a time limit, and the counts once the therapist
// shares them. Therapists get a poll builder and, per poll, a live results chart (plain HTML
// and CSS, read out as text) with Share and Close buttons. The server enforces every rule; this
// file only mirrors them so mistakes are caught before sending. See docs/polls.md.

import { announce } from '../lib/announce.js';
import { el, visuallyHidden as hidden } from '../lib/dom.js';
import { formatLeft, plural } from '../lib/format.js';
import { on } from '../core/bus.js';
import { CODES } from '../core/codes.js';
import { send } from '../core/connection.js';
import { exposeProbe } from '../core/probe.js';
import { log } from '../core/log.js';
import { isTherapist, state } from '../core/state.js';
import { isLeader } from '../e2ee/keys.js';
import { NO_KEY_TEXT, NoKeyError, openText, outgoing, sealText } from '../e2ee/text.js';

const LIMITS = { question: 300, option: 100, minOptions: 2, maxOptions: 10 };
const TIME_LIMITS = [
  ['', 'No time limit'], ['30', '30 seconds'], ['60', '1 minute'], ['120', '2 minutes'],
  ['300', '5 minutes'], ['600', '10 minutes'],
];
// Plain-language versions of the server's poll error codes.
const POLL_ERRORS = {
  [CODES.INVALID_POLL]: 'The poll could not be launched: ',
  [CODES.UNKNOWN_POLL]: 'That poll is no longer available.',
  [CODES.POLL_OUT_OF_SCOPE]: 'That poll is for another room of the session.',
  [CODES.POLL_CLOSED]: 'This poll has closed, so votes are no longer taken.',
  [CODES.UNKNOWN_OPTION]: 'That answer is not part of this poll. Please reload the page.',
  [CODES.INVALID_VOTE]: 'Please check your answer: ',
  [CODES.FORBIDDEN]: '',
  [CODES.RATE_LIMITED]: '',
};

const polls = new Map(); // pollId -> { info, closed, reason, mine, live, shared, card }
let pending = null; // what we last asked for: { kind: 'create' } or { kind: 'vote', pollId }
let ticker = null;
let uid = 0;

const canVote = () => state.role === 'participant';

// ---------------------------------------------------------------------------------------
// Small DOM helpers.

// The width goes through the CSSOM, not a `style` attribute, which the server's
// Content-Security-Policy (style-src 'self') refuses.
function barFill(percent) {
  const fill = el('span', { class: 'poll-bar-fill' });
  fill.style.width = `${percent}%`;
  return fill;
}

// ---------------------------------------------------------------------------------------
// The section in the sidebar.

const heading = el('h2', { id: 'polls-heading', tabindex: '-1', text: 'Polls' });
const newButton = el('button', {
  id: 'poll-new-button', type: 'button', class: 'button small accent',
  'aria-expanded': 'false', 'aria-controls': 'poll-builder', hidden: true, text: 'New poll',
});
const cards = el('ul', { id: 'poll-cards', class: 'poll-cards', 'aria-label': 'Polls in this session' });
const empty = el('p', { id: 'polls-empty', class: 'empty', text: 'No polls yet. Create one to ask the group a question.' });
const builder = buildBuilder();
const section = el(
  'section',
  { id: 'polls-section', class: 'panel-section polls', 'aria-labelledby': 'polls-heading', hidden: true },
  el('div', { class: 'section-head' }, heading, newButton),
  builder.form,
  empty,
  cards,
);

function mount() {
  if (section.isConnected) return;
  const sidebar = document.getElementById('sidebar');
  if (!sidebar) return;
  const people = document.getElementById('people-section');
  if (people && people.parentNode === sidebar) sidebar.insertBefore(section, people);
  else sidebar.prepend(section);
}

function renderSection() {
  const therapist = isTherapist();
  newButton.hidden = !therapist;
  empty.hidden = !therapist || polls.size > 0 || !builder.form.hidden;
  // Participants see the section only while there is a poll to show.
  section.hidden = !therapist && polls.size === 0;
}

// ---------------------------------------------------------------------------------------
// Therapist: the poll builder.

function buildBuilder() {
  const question = el('textarea', {
    id: 'poll-question', class: 'text-field', rows: '2', maxlength: String(LIMITS.question), required: true,
    'aria-describedby': 'poll-question-hint',
  });
  const optionList = el('ol', { id: 'poll-option-list', class: 'poll-option-inputs' });
  const addOption = el('button', { id: 'poll-add-option', type: 'button', class: 'button small', text: 'Add an option' });
  const single = el('input', { type: 'radio', name: 'poll-kind', id: 'poll-kind-single', value: 'single', checked: true });
  const multiple = el('input', { type: 'radio', name: 'poll-kind', id: 'poll-kind-multiple', value: 'multiple' });
  const anonymous = el('input', { type: 'checkbox', id: 'poll-anonymous', checked: true, 'aria-describedby': 'poll-anonymous-hint' });
  const duration = el('select', { id: 'poll-duration' },
    TIME_LIMITS.map(([value, label]) => el('option', { value, text: label })));
  const allBreakouts = el('input', { type: 'checkbox', id: 'poll-all-breakouts', 'aria-describedby': 'poll-scope-hint' });
  const error = el('p', { id: 'poll-builder-error', class: 'form-error poll-error', role: 'alert' });
  const launch = el('button', { id: 'poll-launch-button', type: 'submit', class: 'button primary', text: 'Launch poll' });
  const cancel = el('button', { id: 'poll-cancel-button', type: 'button', class: 'button small', text: 'Cancel' });

  const form = el('form', { id: 'poll-builder', class: 'poll-builder', novalidate: true, hidden: true, 'aria-label': 'New poll' },
    el('div', { class: 'field' },
      el('label', { for: 'poll-question', text: 'Question' }),
      question,
      el('p', { id: 'poll-question-hint', class: 'hint', text: `Up to ${LIMITS.question} characters.` })),
    el('fieldset', { class: 'field poll-fieldset' },
      el('legend', { text: 'Answers to choose from' }),
      optionList,
      addOption,
      el('p', { class: 'hint', text: `${LIMITS.minOptions} to ${LIMITS.maxOptions} answers, up to ${LIMITS.option} characters each.` })),
    el('fieldset', { class: 'field poll-fieldset' },
      el('legend', { text: 'How many answers can each person pick?' }),
      el('label', { class: 'choice', for: 'poll-kind-single' }, single, el('span', { text: 'One' })),
      el('label', { class: 'choice', for: 'poll-kind-multiple' }, multiple, el('span', { text: 'One or more' }))),
    el('div', { class: 'field' },
      el('label', { class: 'choice', for: 'poll-anonymous' }, anonymous, el('span', { text: 'Anonymous' })),
      el('p', { id: 'poll-anonymous-hint', class: 'hint',
        text: 'You will see only how many people chose each answer, never who. Untick to also see names.' })),
    el('div', { class: 'field' },
      el('label', { for: 'poll-duration', text: 'Time limit' }),
      duration),
    el('div', { class: 'field' },
      el('label', { class: 'choice', for: 'poll-all-breakouts' }, allBreakouts, el('span', { text: 'Send to every breakout room' })),
      el('p', { id: 'poll-scope-hint', class: 'hint', text: 'Only matters while breakout rooms are open. Otherwise the poll goes to the room you are in.' })),
    error,
    el('div', { class: 'poll-builder-actions' }, launch, cancel),
  );

  function optionInputs() {
    return [...optionList.querySelectorAll('input')];
  }

  function renumber() {
    const items = [...optionList.children];
    items.forEach((li, i) => {
      li.querySelector('label').textContent = `Answer ${i + 1}`;
      li.querySelector('.who').textContent = ` answer ${i + 1}`;
      li.querySelector('button').disabled = items.length <= LIMITS.minOptions;
    });
    addOption.disabled = items.length >= LIMITS.maxOptions;
  }

  function addOptionRow(value = '') {
    uid += 1;
    const id = `poll-option-${uid}`;
    const input = el('input', { type: 'text', id, maxlength: String(LIMITS.option), autocomplete: 'off' });
    input.value = value;
    const remove = el('button', { type: 'button', class: 'button small', 'data-action': 'remove-option' },
      el('span', { text: 'Remove' }), el('span', { class: 'visually-hidden who' }));
    const li = el('li', { class: 'poll-option-input' }, el('label', { for: id, class: 'visually-hidden' }), input, remove);
    remove.addEventListener('click', () => {
      const items = [...optionList.children];
      const index = items.indexOf(li);
      li.remove();
      renumber();
      const inputs = optionInputs();
      inputs[Math.max(0, index - 1)].focus();
    });
    optionList.append(li);
    renumber();
    return input;
  }

  function reset() {
    question.value = '';
    optionList.replaceChildren();
    addOptionRow();
    addOptionRow();
    single.checked = true;
    anonymous.checked = true;
    duration.value = '';
    allBreakouts.checked = false;
    error.textContent = '';
    for (const f of [question, ...optionInputs()]) f.removeAttribute('aria-invalid');
  }

  function open(show) {
    form.hidden = !show;
    newButton.setAttribute('aria-expanded', String(show));
    renderSection();
    if (show) question.focus();
    else newButton.focus();
  }

  function fail(message, field) {
    error.textContent = message;
    if (field) {
      field.setAttribute('aria-invalid', 'true');
      field.focus();
    }
    return null;
  }

  // Mirrors the server's checks (src/room/actor/poll.rs) so a mistake is explained at once.
  function collect() {
    for (const f of [question, ...optionInputs()]) f.removeAttribute('aria-invalid');
    error.textContent = '';
    const q = question.value.trim();
    if (!q) return fail('Please write a question.', question);
    if ([...q].length > LIMITS.question) return fail(`The question can be at most ${LIMITS.question} characters.`, question);
    const options = [];
    const inputs = optionInputs();
    for (const [i, input] of inputs.entries()) {
      const text = input.value.trim();
      if (!text) return fail(`Please fill in answer ${i + 1}, or remove it.`, input);
      if ([...text].length > LIMITS.option) return fail(`Answer ${i + 1} can be at most ${LIMITS.option} characters.`, input);
      if (options.some((o) => o.toLowerCase() === text.toLowerCase())) return fail(`Answer ${i + 1} repeats an earlier answer.`, input);
      options.push(text);
    }
    if (options.length < LIMITS.minOptions) return fail(`A poll needs at least ${LIMITS.minOptions} answers.`, null);
    const message = {
      type: 'createPoll',
      question: q,
      options,
      multiple: multiple.checked,
      anonymous: anonymous.checked,
      scope: allBreakouts.checked ? 'allBreakouts' : 'room',
    };
    if (duration.value) message.durationSecs = Number(duration.value);
    return message;
  }

  addOption.addEventListener('click', () => addOptionRow().focus());
  cancel.addEventListener('click', () => open(false));
  newButton.addEventListener('click', () => open(form.hidden));
  form.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') open(false);
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const message = collect();
    if (!message) return;
    try {
      // In an end-to-end encrypted room the texts leave this page sealed (e2ee/text.js), for
      // every space the poll goes to.
      const spaces = message.scope === 'allBreakouts' ? 'all' : null;
      message.question = await outgoing(message.question, { field: 'pollQuestion', spaces });
      message.options = await Promise.all(message.options.map((o) => outgoing(o, { field: 'pollOption', spaces })));
    } catch (err) {
      fail(err instanceof NoKeyError
        ? 'This room is end-to-end encrypted and your browser has no key for it yet. Please try again in a moment.'
        : 'The poll could not be encrypted, so it was not launched.', null);
      return;
    }
    if (!send(message)) {
      fail('You are not connected right now. Please try again in a moment.', null);
      return;
    }
    pending = { kind: 'create' };
    launch.disabled = true;
  });

  reset();
  return {
    form,
    reset,
    open,
    launched() {
      launch.disabled = false;
      reset();
      form.hidden = true;
      newButton.setAttribute('aria-expanded', 'false');
    },
    refused(text) {
      launch.disabled = false;
      fail(text, null);
    },
  };
}

// ---------------------------------------------------------------------------------------
// Poll cards.

function describe(info) {
  const how = info.multiple ? 'Choose one or more answers.' : 'Choose one answer.';
  const who = info.anonymous
    ? 'Anonymous: the therapist sees how many people chose each answer, not who.'
    : 'Named: the therapist sees your name with your answer.';
  return `${how} ${who}`;
}

// A results chart: one row per answer, a bar drawn with CSS, and the numbers as text so
// screen readers read "Good: 4 votes, 57%". `byOption` (named polls, therapists) adds names.
function chart(info, tally, caption) {
  const total = tally.totalVoters || 0;
  const byOption = new Map((tally.byOption || []).map((o) => [o.optionId, o.voters || []]));
  const rows = info.options.map((option) => {
    const count = (tally.counts.find((c) => c.optionId === option.id) || { count: 0 }).count;
    const percent = total ? Math.round((count / total) * 100) : 0;
    const voters = byOption.get(option.id);
    return el('li', { class: 'poll-bar-row', 'data-option-id': option.id },
      el('span', { class: 'poll-bar-label', text: option.text }),
      hidden(': '),
      el('span', { class: 'poll-bar-value', 'data-count': String(count), text: `${plural(count, 'vote', 'votes')}, ${percent}%` }),
      el('span', { class: 'poll-bar', 'aria-hidden': 'true' }, barFill(percent)),
      voters && voters.length
        ? el('span', { class: 'poll-voters', text: `Chosen by ${voters.map((v) => v.name).join(', ')}` })
        : null);
  });
  return el('figure', { class: 'poll-chart' },
    el('figcaption', { class: 'poll-chart-caption', text: caption }),
    el('ul', { class: 'poll-bars' }, rows),
    el('p', { class: 'poll-total', text: `${plural(total, 'person', 'people')} voted` +
      (info.multiple && total ? ' (each could pick more than one answer)' : '') }));
}

function createCard(poll) {
  const { info } = poll;
  const card = el('li', { class: 'poll-card', 'data-poll-id': info.id });
  const qid = `poll-q-${info.id}`;
  const countdown = el('p', { class: 'poll-countdown', role: 'timer', hidden: !info.closesAt });
  const status = el('p', { class: 'poll-status', role: 'status' });
  const results = el('div', { class: 'poll-results' });
  const dismiss = el('button', { type: 'button', class: 'button small', 'data-action': 'dismiss', hidden: true },
    el('span', { text: 'Dismiss' }), hidden(` poll: ${info.question}`));
  dismiss.addEventListener('click', () => {
    polls.delete(info.id);
    card.remove();
    renderSection();
    heading.focus();
  });

  if (isTherapist()) {
    const meta = [info.anonymous ? 'Anonymous' : 'Named', info.multiple ? 'one or more answers' : 'one answer'];
    if (info.scope === 'allBreakouts') meta.push('every breakout room');
    const share = el('button', { type: 'button', class: 'button small accent', 'data-action': 'share' },
      el('span', { class: 'label', text: 'Share results with the room' }), hidden(`: ${info.question}`));
    const close = el('button', { type: 'button', class: 'button small danger-outline', 'data-action': 'close' },
      el('span', { text: 'Close poll' }), hidden(`: ${info.question}`));
    share.addEventListener('click', () => send({ type: 'sharePollResults', pollId: info.id }));
    close.addEventListener('click', () => send({ type: 'closePoll', pollId: info.id }));
    card.append(
      el('h3', { id: qid, class: 'poll-question', tabindex: '-1', text: info.question }),
      el('p', { class: 'hint poll-meta', text: meta.join(' · ') }),
      countdown, results, status,
      el('div', { class: 'poll-actions' }, share, close, dismiss));
    poll.card = { root: card, countdown, status, results, share, close, dismiss };
    return card;
  }

  // Participants (and observers, who see the poll but do not vote).
  const kind = info.multiple ? 'checkbox' : 'radio';
  const inputs = info.options.map((option) => {
    const id = `poll-${info.id}-${option.id}`;
    const input = el('input', { type: kind, id, name: `poll-${info.id}`, value: option.id, disabled: !canVote() });
    return { input, label: el('label', { class: 'choice', for: id }, input, el('span', { text: option.text })) };
  });
  const submit = el('button', { type: 'submit', class: 'button accent poll-submit', hidden: !canVote(), text: 'Send my vote' });
  const form = el('form', { class: 'poll-vote', novalidate: true },
    el('fieldset', { class: 'poll-fieldset' },
      el('legend', { id: qid, class: 'poll-question', text: info.question }),
      el('p', { class: 'hint poll-meta', text: canVote() ? describe(info) : 'Observers see polls but do not vote.' }),
      el('div', { class: 'poll-choices' }, inputs.map((i) => i.label))),
    countdown,
    status,
    submit);
  status.textContent = canVote() ? 'You can change your vote until the poll closes.' : '';
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const chosen = inputs.filter((i) => i.input.checked).map((i) => i.input.value);
    if (!chosen.length) {
      status.textContent = info.multiple ? 'Choose at least one answer first.' : 'Choose an answer first.';
      return;
    }
    if (!send({ type: 'vote', pollId: info.id, optionIds: chosen })) {
      status.textContent = 'You are not connected right now. Your vote was not sent.';
      return;
    }
    pending = { kind: 'vote', pollId: info.id };
    submit.disabled = true;
    status.textContent = 'Sending your vote…';
  });
  card.append(el('article', { class: 'poll-article', 'aria-labelledby': qid }, form, results, dismiss));
  poll.card = { root: card, countdown, status, results, submit, inputs, dismiss };
  return card;
}

function renderCard(poll) {
  const c = poll.card;
  if (!c) return;
  c.root.classList.toggle('closed', poll.closed);
  if (isTherapist()) {
    const tally = poll.live || { counts: [], totalVoters: 0 };
    const caption = poll.closed ? 'Final results' : 'Live results (only you see these until you share them)';
    c.results.replaceChildren(chart(poll.info, tally, caption));
    c.close.hidden = poll.closed;
    c.dismiss.hidden = !poll.closed;
    c.share.querySelector('.label').textContent = poll.sharedOnce
      ? (poll.closed ? 'Share final results again' : 'Share latest results')
      : 'Share results with the room';
    if (poll.closed) c.status.textContent = closedText(poll);
    else c.status.textContent = poll.sharedOnce ? 'You shared the results with the room.' : '';
    return;
  }
  for (const { input } of c.inputs) {
    input.disabled = poll.closed || !canVote();
  }
  c.submit.hidden = poll.closed || !canVote();
  c.submit.textContent = poll.mine.length ? 'Change my vote' : 'Send my vote';
  c.dismiss.hidden = !poll.closed;
  c.results.replaceChildren(poll.shared ? chart(poll.info, poll.shared, poll.closed ? 'Final results' : 'Results shared by the therapist') : '');
  if (poll.closed) c.status.textContent = closedText(poll);
}

function closedText(poll) {
  const why = poll.reason === 'timer' ? 'Time is up: this poll has closed.' : 'This poll has closed.';
  if (isTherapist() || !poll.mine.length) return why;
  return `${why} Your answer: ${answerText(poll, poll.mine)}.`;
}

function answerText(poll, ids) {
  return ids.map((id) => (poll.info.options.find((o) => o.id === id) || { text: id }).text).join(', ');
}

function tickCountdowns() {
  let running = false;
  for (const poll of polls.values()) {
    if (!poll.card || !poll.info.closesAt) continue;
    if (poll.closed) {
      poll.card.countdown.hidden = true;
      continue;
    }
    running = true;
    const left = poll.info.closesAt - Date.now();
    poll.card.countdown.hidden = false;
    poll.card.countdown.textContent = left > 0 ? `Closes in ${formatLeft(left)}` : 'Closing…';
  }
  if (!running && ticker) {
    clearInterval(ticker);
    ticker = null;
  } else if (running && !ticker) {
    ticker = setInterval(tickCountdowns, 1000);
  }
}

// ---------------------------------------------------------------------------------------
// Server messages.

on('joined', () => {
  // A fresh session on the server: it re-sends the polls still open once we are admitted.
  mount();
  polls.clear();
  cards.replaceChildren();
  pending = null;
  if (!isTherapist()) builder.form.hidden = true;
  renderSection();
});

// Sealed texts open asynchronously; one chain keeps the poll messages in the order the server
// sent them (a poll's counts never arrive before its card).
let incoming = Promise.resolve();
const inOrder = (fn) => (m) => { incoming = incoming.then(() => fn(m)).catch((err) => log('polls: a message could not be shown', err)); };

/** The poll with its texts opened; a text no key here opens reads as such, never as garbage. */
async function openedPoll(info) {
  const question = await openText(info.question, { field: 'pollQuestion' });
  const options = [];
  for (const [i, o] of (info.options || []).entries()) {
    const text = await openText(o.text, { field: 'pollOption' });
    options.push({ ...o, text: text === null ? `Answer ${i + 1} (${NO_KEY_TEXT.toLowerCase()})` : text });
  }
  // The spaces its texts are sealed for: sealed again for the same ones under newer keys.
  const spaces = info.question && Array.isArray(info.question.sealed) ? info.question.sealed.map((s) => s.space) : null;
  return { ...info, question: question === null ? 'Encrypted poll, no key yet' : question, options, noKey: question === null, spaces };
}

on('pollStarted', inOrder(async ({ poll: sent }) => {
  if (!sent || !sent.id) return;
  const info = await openedPoll(sent);
  mount();
  const existing = polls.get(info.id);
  // The same poll again (a reconnect, or its texts sealed anew): the card is rebuilt in
  // place, keeping an answer being chosen and the keyboard focus.
  const before = existing && existing.card ? {
    checked: (existing.card.inputs || []).filter(({ input }) => input.checked).map(({ input }) => input.value),
    focused: existing.card.root.contains(document.activeElement) ? document.activeElement.value || null : undefined,
    next: existing.card.root.nextSibling,
  } : null;
  if (existing && existing.card) existing.card.root.remove();
  const poll = { info, closed: false, reason: null, mine: existing ? existing.mine : [], live: null, shared: null, sharedOnce: false, card: null };
  polls.set(info.id, poll);
  const card = createCard(poll);
  if (before && before.next) cards.insertBefore(card, before.next);
  else cards.prepend(card);
  renderCard(poll);
  if (before && poll.card) {
    const inputs = poll.card.inputs || [];
    for (const { input } of inputs) input.checked = before.checked.includes(input.value);
    if (before.focused !== undefined) {
      const again = inputs.find(({ input }) => input.value === before.focused);
      (again ? again.input : poll.card.root).focus();
    }
  }
  renderSection();
  tickCountdowns();
  if (isTherapist()) {
    if (!existing && pending && pending.kind === 'create') {
      pending = null;
      builder.launched();
      poll.card.root.querySelector('.poll-question').focus();
    }
    if (!existing) announce(`Poll launched: ${info.question}`);
  } else if (!existing) {
    announce(`The therapist started a poll: ${info.question}`);
  }
}));

// The key leader made a new key for `space` (someone joined, left or moved): the open polls
// sealed for it are sealed again under it, or whoever just got only that key could not read
// them. The server keeps the votes and sends everyone the poll again.
on('local:e2eeEpochMade', inOrder(async ({ space }) => {
  if (!isLeader()) return;
  for (const poll of polls.values()) {
    const { info } = poll;
    if (poll.closed || info.noKey || !info.spaces || !info.spaces.includes(space)) continue;
    try {
      const seal = (text, field) => sealText(text, { field, spaces: info.spaces });
      const question = await seal(info.question, 'pollQuestion');
      const options = [];
      for (const o of info.options) options.push(await seal(o.text, 'pollOption'));
      send({ type: 'resealPoll', pollId: info.id, question, options });
    } catch (err) {
      log('polls: could not seal a poll again', err && err.name);
    }
  }
}));

on('voteAccepted', inOrder(({ pollId, optionIds }) => {
  const poll = polls.get(pollId);
  if (!poll || !poll.card || isTherapist()) return;
  poll.mine = optionIds || [];
  if (pending && pending.kind === 'vote' && pending.pollId === pollId) pending = null;
  for (const { input } of poll.card.inputs) input.checked = poll.mine.includes(input.value);
  poll.card.submit.disabled = false;
  poll.card.status.textContent = `Your vote is in: ${answerText(poll, poll.mine)}. You can change your vote until the poll closes.`;
  renderCard(poll);
}));

on('pollResults', inOrder((tally) => {
  const poll = polls.get(tally.pollId);
  if (!poll || !isTherapist()) return;
  poll.live = tally;
  renderCard(poll);
}));

on('pollResultsShared', inOrder((tally) => {
  const poll = polls.get(tally.pollId);
  if (!poll) return;
  if (isTherapist()) {
    poll.sharedOnce = true;
  } else {
    poll.shared = tally;
    announce(`The therapist shared the results of the poll: ${poll.info.question}`);
  }
  renderCard(poll);
}));

on('pollClosed', inOrder(({ pollId, reason, results }) => {
  const poll = polls.get(pollId);
  if (!poll) return;
  poll.closed = true;
  poll.reason = reason;
  if (results) {
    if (isTherapist()) poll.live = results;
    else poll.shared = results;
  }
  if (pending && pending.pollId === pollId) pending = null;
  if (poll.card && poll.card.submit) poll.card.submit.disabled = false;
  renderCard(poll);
  tickCountdowns();
  announce(`${reason === 'timer' ? 'Time is up. ' : ''}The poll "${poll.info.question}" has closed.`);
}));

on('error', ({ code, message }) => {
  if (!pending || !(code in POLL_ERRORS)) return;
  const what = pending;
  pending = null;
  const text = POLL_ERRORS[code].endsWith(': ') ? POLL_ERRORS[code] + message : POLL_ERRORS[code] || message;
  if (what.kind === 'create') {
    builder.refused(text);
    return;
  }
  const poll = polls.get(what.pollId);
  if (!poll || !poll.card || !poll.card.submit) return;
  poll.card.submit.disabled = false;
  poll.card.status.textContent = text;
  if (code === CODES.POLL_CLOSED) {
    poll.closed = true;
    renderCard(poll);
  }
});

// Read-only view for tests and debugging.
exposeProbe('polls', () => [...polls.values()].map((p) => ({
    id: p.info.id, question: p.info.question, closed: p.closed, mine: p.mine.slice(),
    live: p.live, shared: p.shared,
  })));

mount();
renderSection();
