// Ground rules at the door. Someone waiting is shown the room's agreement (and, when the room
// asks, a field for where they are right now) and accepts it; until then the therapist cannot
// admit them (the server refuses). Therapists write the agreement in the room controls and see,
// beside each person waiting and in the people list, whether they agreed and where they said
// they are. The location is shown to therapists only and kept in no storage of this page.

import { announce } from '../lib/announce.js';
import { el, placeBefore } from '../lib/dom.js';
import { on } from '../core/bus.js';
import { CODES } from '../core/codes.js';
import { send } from '../core/connection.js';
import { exposeProbe } from '../core/probe.js';
import { isTherapist, state } from '../core/state.js';

const a = { text: null, version: null, askLocation: false, accepted: false, statuses: new Map() };

// ---- for people at the door ----
const textBox = el('div', { id: 'agreement-text', class: 'agreement-text', tabindex: '0' });
const locationInput = el('input', { type: 'text', id: 'agreement-location', maxlength: '200', autocomplete: 'off', 'aria-describedby': 'agreement-location-hint' });
const locationField = el('div', { class: 'agreement-location', hidden: true },
  el('label', { for: 'agreement-location', text: 'Where are you right now?' }),
  locationInput,
  el('p', { id: 'agreement-location-hint', class: 'hint', text: 'Only the therapists see this, for your safety. It is not saved anywhere.' }));
const acceptError = el('p', { class: 'form-error', role: 'alert' });
const acceptButton = el('button', { type: 'submit', id: 'agreement-accept', class: 'button accent', text: 'I agree' });
const thanks = el('p', { id: 'agreement-thanks', class: 'note-box', role: 'status', hidden: true, text: 'Thank you for agreeing. The therapist will let you in soon.' });
const doorForm = el('form', { id: 'agreement-form', class: 'agreement-form' }, textBox, locationField, acceptButton, acceptError);
const door = el('section', { id: 'agreement-section', class: 'agreement', 'aria-labelledby': 'agreement-heading', hidden: true },
  el('h2', { id: 'agreement-heading', text: "The group's agreement" }),
  el('p', { class: 'hint', text: 'Please read this before you join. You need to agree to it to come in.' }),
  doorForm, thanks);

// ---- for therapists ----
const editText = el('textarea', { id: 'agreement-edit', rows: '4', maxlength: '4000' });
const editAsk = el('input', { type: 'checkbox', id: 'agreement-ask-location' });
const editNote = el('p', { id: 'agreement-edit-note', class: 'hint', role: 'status' });
const editForm = el('form', { id: 'agreement-edit-form', class: 'agreement-edit' },
  el('label', { for: 'agreement-edit', text: 'Ground rules people accept before they come in' }), editText,
  el('label', { class: 'choice', for: 'agreement-ask-location' }, editAsk, ' Ask where they are right now (only you see it)'),
  el('button', { type: 'submit', class: 'button small accent', text: 'Save ground rules' }),
  editNote);
const editPanel = el('section', { id: 'agreement-edit-section', class: 'panel-section', 'aria-labelledby': 'agreement-edit-heading', hidden: true },
  el('h2', { id: 'agreement-edit-heading', text: 'Ground rules' }), editForm);

function mount() {
  if (!door.isConnected) {
    const lobby = document.getElementById('lobby-panel');
    const preview = document.getElementById('preview');
    if (lobby && preview) lobby.insertBefore(door, preview);
  }
  placeBefore(editPanel, 'room-controls');
}

// Beside each person (waiting list and people list): agreed or not, and where they are.
function decorate() {
  if (!isTherapist()) return;
  for (const li of document.querySelectorAll('#waiting-list li[data-participant-id], #people-list li[data-participant-id]')) {
    const s = a.statuses.get(li.dataset.participantId);
    let tag = li.querySelector('.agreement-inline');
    if (!s || !a.text) {
      if (tag) tag.remove();
      continue;
    }
    if (!tag) {
      tag = el('span', { class: 'badge-inline agreement-inline' });
      const badges = li.querySelector('.person-badges') || li.querySelector('.person-main') || li;
      badges.append(tag);
    }
    tag.textContent = s.agreed ? (s.location ? `Agreed · ${s.location}` : 'Agreed') : 'Has not agreed yet';
    tag.classList.toggle('pending', !s.agreed);
    const admit = li.querySelector('[data-action="admit"]');
    if (admit) admit.disabled = !s.agreed;
  }
}

function render() {
  mount();
  const therapist = isTherapist();
  editPanel.hidden = !(therapist && state.status === 'joined' && state.admitted);
  const show = !therapist && Boolean(a.text) && (!state.admitted || !a.accepted);
  door.hidden = !show;
  if (show) {
    textBox.textContent = a.text;
    locationField.hidden = !a.askLocation;
    doorForm.hidden = a.accepted;
    thanks.hidden = !a.accepted;
  }
  decorate();
}

on('agreement', (m) => {
  const changed = a.version && m.version !== a.version;
  Object.assign(a, { text: m.text || null, version: m.version || null, askLocation: Boolean(m.askLocation), accepted: Boolean(m.accepted) });
  if (isTherapist() && document.activeElement !== editText) {
    editText.value = a.text || '';
    editAsk.checked = a.askLocation;
  }
  if (!isTherapist() && a.text && !a.accepted) announce(changed ? 'The group agreement changed. Please read it again.' : 'Please read the group agreement.');
  render();
});
on('agreementStatuses', (m) => {
  a.statuses = new Map((m.people || []).map((p) => [p.participantId, p]));
  decorate();
});
on('waitingList', render);
on('admitted', render);
on('participantJoined', render);
on('participantLeft', render);
on('participantUpdated', render);
on('joined', render);

doorForm.addEventListener('submit', (event) => {
  event.preventDefault();
  acceptError.textContent = '';
  const message = { type: 'acceptAgreement', version: a.version };
  if (a.askLocation) {
    const location = locationInput.value.trim();
    if (!location) {
      acceptError.textContent = 'Please say where you are right now, for example "at home, in my room".';
      locationInput.setAttribute('aria-invalid', 'true');
      locationInput.focus();
      return;
    }
    message.location = location;
  }
  locationInput.removeAttribute('aria-invalid');
  send(message);
});
editForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = editText.value.trim();
  send({ type: 'setAgreement', text: text || null, askLocation: editAsk.checked });
  editNote.textContent = text ? 'Saved. Everyone waiting is asked to agree to this text.' : 'Ground rules removed.';
});
on('error', (m) => {
  if (m.code === CODES.AGREEMENT_CHANGED || m.code === CODES.INVALID_AGREEMENT) acceptError.textContent = m.message;
  if (m.code === CODES.AGREEMENT_PENDING) announce('They have not agreed to the ground rules yet.');
});

exposeProbe('agreement', () => ({
  text: a.text, version: a.version, askLocation: a.askLocation, accepted: a.accepted,
  statuses: [...a.statuses.values()].map((s) => ({ ...s })),
}));
