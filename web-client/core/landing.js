// The first screens: a join link (greet the person, join on one click), the development
// join form, or a calm explanation of how to get a link.

import { CODES } from './codes.js';
import { ERROR_HEADINGS, FRIENDLY_ERRORS, decodeToken, rememberToken, tokenExpired, tokenFromFragment } from './connection.js';
import { log } from './log.js';
import { startSession } from './session.js';
import { ROLE_LABEL, state } from './state.js';
import { clearAlert, setStatus, showAlert, showMessage, showView, ui } from './view.js';

// Same rule as the server's RoomId, checked here so a typo gets a friendly message.
const ROOM_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

// A token is ready: greet the person, join on one click.
export function showLinkView({ left = false } = {}) {
  const claims = state.claims;
  ui.linkName.textContent = claims.name;
  ui.linkRoom.textContent = claims.room;
  ui.linkRole.textContent = ROLE_LABEL[claims.role];
  ui.linkLeft.hidden = !left;
  ui.linkLead.hidden = left;
  ui.linkLead.textContent = claims.role === 'observer'
    ? 'You are joining as an observer: you will see and hear the group, and they will not see or hear you.'
    : 'Take your time. When you join, your camera and microphone turn on, and you can turn '
      + 'either of them off at any moment.';
  ui.linkJoin.textContent = left ? 'Join again' : 'Join';
  ui.linkOther.hidden = !state.devTokens;
  showView('link');
  ui.headings.link.focus();
}

function useToken(token, { fromForm = false } = {}) {
  const claims = decodeToken(token);
  if (!claims) {
    setStatus('idle', 'Not connected.');
    showMessage(ERROR_HEADINGS[CODES.TOKEN_INVALID], FRIENDLY_ERRORS[CODES.TOKEN_INVALID]);
    return false;
  }
  if (tokenExpired(claims)) {
    setStatus('idle', 'Not connected.');
    showMessage(ERROR_HEADINGS[CODES.TOKEN_EXPIRED], FRIENDLY_ERRORS[CODES.TOKEN_EXPIRED]);
    return false;
  }
  state.token = token;
  state.claims = claims;
  state.fromForm = fromForm;
  state.name = claims.name;
  state.role = claims.role;
  return true;
}

export async function onJoinSubmit(event) {
  event.preventDefault();
  const roomId = ui.roomInput.value.trim();
  const name = ui.nameInput.value.trim();
  const role = ui.roleInput.value;
  // Native validation bubbles vary by browser and vanish quickly; say it plainly instead.
  const problem = !roomId ? ['Please enter the room name.', ui.roomInput]
    : !ROOM_ID_PATTERN.test(roomId)
      ? ['Room names use only letters, numbers, dots (.), dashes (-) and underscores (_).', ui.roomInput]
      : !name ? ['Please enter your name.', ui.nameInput]
        : null;
  for (const input of [ui.roomInput, ui.nameInput]) input.removeAttribute('aria-invalid');
  if (problem) {
    showAlert(problem[0]);
    problem[1].setAttribute('aria-invalid', 'true');
    problem[1].focus();
    return;
  }
  clearAlert();
  ui.joinButton.disabled = true;
  try {
    const response = await fetch('/dev/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ room: roomId, name, role }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok || !body.token) {
      showAlert(body.message ? `Could not join: ${body.message}.` : 'Could not join. Please try again.');
      return;
    }
    if (!useToken(body.token, { fromForm: true })) return;
    // Kept for this tab (not in the address), so a reload rejoins as the same person.
    rememberToken(body.token);
    startSession();
  } catch (err) {
    log('dev token request failed', err);
    showAlert('Could not reach the server. Please check your connection and try again.');
  } finally {
    ui.joinButton.disabled = false;
  }
}

async function fetchInfo() {
  try {
    const response = await fetch('/api/info', { cache: 'no-store' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return await response.json();
  } catch (err) {
    log('could not read /api/info', err);
    return null;
  }
}

// Decides the first screen: a join link, the development form, or a calm explanation.
export async function route() {
  const info = await fetchInfo();
  state.devTokens = Boolean(info && info.devTokens);
  state.clinic = {
    noLinkText: (info && info.noLinkText) || '',
    supportResourcesText: (info && info.supportResourcesText) || '',
  };
  const token = tokenFromFragment();
  if (token) {
    if (useToken(token)) {
      setStatus('idle');
      showLinkView();
    }
    return;
  }
  if (!info) {
    setStatus('idle', 'Not connected.');
    showMessage('We could not reach the server', 'Please check your internet connection.',
      { action: { label: 'Try again', run: () => { showView('loading'); route(); } } });
    return;
  }
  if (state.devTokens) {
    setStatus('idle');
    showView('form');
    return;
  }
  setStatus('idle');
  showMessage('Ask your therapist for your join link',
    'Hearth is where your therapy group meets by video, privately, in the browser. To join a session '
      + 'you need your personal join link; your therapist sends it to you before the session.',
    {
      hint: 'If you already have one, open it from your email or message; this page will then let you in.',
      more: state.clinic.noLinkText || 'If you cannot find it, please contact your clinic or your therapist.',
    });
}
