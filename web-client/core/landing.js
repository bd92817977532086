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
  ui.linkHello.hidden = false;
  ui.linkInvited.hidden = true;
  ui.linkNameField.hidden = true;
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

// An invite without a name (`#invite=`): the person types their name, then joins.
function showInviteView(invite) {
  state.invite = invite;
  ui.linkHello.hidden = true;
  ui.linkInvited.hidden = false;
  ui.linkNameField.hidden = false;
  ui.linkRoom.textContent = invite.room;
  ui.linkRole.textContent = ROLE_LABEL.participant;
  ui.linkLeft.hidden = true;
  ui.linkLead.hidden = false;
  ui.linkLead.textContent = 'Tell us the name the group should see, then join. You will wait until the '
    + 'therapist lets you in. Your camera and microphone turn on when you join, and you can turn either off at any moment.';
  ui.linkJoin.textContent = 'Join';
  ui.linkOther.hidden = true;
  showView('link');
  ui.linkNameInput.focus();
}

/** Join pressed on the link page: with an invite, trade it and the typed name for a token first. */
export async function onLinkJoin() {
  if (!state.invite) {
    startSession();
    return;
  }
  const name = ui.linkNameInput.value.trim();
  ui.linkNameInput.removeAttribute('aria-invalid');
  if (!name) {
    showAlert('Please enter your name.');
    ui.linkNameInput.setAttribute('aria-invalid', 'true');
    ui.linkNameInput.focus();
    return;
  }
  clearAlert();
  ui.linkJoin.disabled = true;
  try {
    const response = await fetch('/api/invites/accept', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ invite: state.invite.token, name }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok || !body.token) {
      if (body.code === CODES.INVALID_NAME) {
        showAlert('That name cannot be used: please use 1 to 64 ordinary characters.');
        ui.linkNameInput.setAttribute('aria-invalid', 'true');
        ui.linkNameInput.focus();
      } else {
        showAlert(body.message || 'This invitation could not be used. Please ask your therapist for a new link.');
      }
      return;
    }
    state.invite = '';
    if (!useToken(body.token)) return;
    // From here the page is an ordinary join link: a reload rejoins as the same person.
    rememberToken(body.token);
    startSession();
  } catch (err) {
    log('invite could not be accepted', err);
    showAlert('Could not reach the server. Please check your connection and try again.');
  } finally {
    ui.linkJoin.disabled = false;
  }
}

// Reads an invite's payload (room, expiry) without verifying it: the server checks it.
function decodeInvite(token) {
  try {
    const b64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)));
    return claims && claims.invite === true && typeof claims.room === 'string' ? { token, room: claims.room, exp: claims.exp } : null;
  } catch (err) {
    return null;
  }
}

function inviteFromFragment() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  const invite = (params.get('invite') || '').trim();
  if (!invite) return '';
  // Out of the address bar, like a join token (it is one person's way in).
  params.delete('invite');
  const rest = params.toString();
  history.replaceState(history.state, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
  return invite;
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
  const inviteToken = inviteFromFragment();
  if (inviteToken) {
    const invite = decodeInvite(inviteToken);
    setStatus('idle', 'Not connected.');
    if (!invite) showMessage(ERROR_HEADINGS[CODES.TOKEN_INVALID], FRIENDLY_ERRORS[CODES.TOKEN_INVALID]);
    else if (tokenExpired(invite)) showMessage(ERROR_HEADINGS[CODES.TOKEN_EXPIRED], FRIENDLY_ERRORS[CODES.TOKEN_EXPIRED]);
    else {
      setStatus('idle');
      showInviteView(invite);
    }
    return;
  }
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
