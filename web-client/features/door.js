// The door, as a therapist runs it: "Invite someone…" mints a join link with the therapist's own
// token (POST /api/rooms/{room}/invites), "Waiting room welcome…" sets the group's name and a
// welcome (`setWelcome`), and late arrivals a locked room turned away (`turnedAway`) are shown
// here, to therapists only, with a way to unlock. In an encrypted room the leader's invite
// links pin its key. What the waiting room itself shows is the
// core's (session.js and roster.js read `waitingRoom`). Owns the two dialogs and the list.

import { announce } from '../lib/announce.js';
import { byId } from '../lib/dom.js';
import { clock } from '../lib/format.js';
import { toast } from '../lib/toast.js';
import { on } from '../core/bus.js';
import { send } from '../core/connection.js';
import { log } from '../core/log.js';
import { exposeProbe } from '../core/probe.js';
import { isTherapist, state } from '../core/state.js';
import { e2ee, isLeader } from '../e2ee/keys.js';

const inviteDialog = byId('invite-dialog');
const inviteName = byId('invite-name');
const inviteTtl = byId('invite-ttl');
const inviteCreate = byId('invite-create');
const inviteCopy = byId('invite-copy');
const inviteResult = byId('invite-result');
const inviteLink = byId('invite-link');
const inviteStatus = byId('invite-status');
const welcomeDialog = byId('welcome-dialog');
const welcomeGroup = byId('welcome-group');
const welcomeMessage = byId('welcome-message');
const turnedAwayBox = byId('turned-away');
const turnedAwayList = byId('turned-away-list');

// Late arrivals turned away by the lock this session: participantId -> { name, at }.
const turnedAway = new Map();

/** Opens a modal dialog and gives focus back to whatever opened it when it closes. */
function openDialog(dialog, first) {
  const opener = document.activeElement;
  dialog.showModal();
  first.focus();
  dialog.addEventListener('close', () => {
    if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
  }, { once: true });
}

function openInvite() {
  inviteName.value = '';
  inviteResult.hidden = true;
  inviteCopy.hidden = true;
  inviteLink.value = '';
  inviteStatus.textContent = '';
  inviteCreate.textContent = 'Create link';
  openDialog(inviteDialog, inviteName);
}

async function createInvite() {
  const body = { ttlSeconds: Number(inviteTtl.value) };
  const name = inviteName.value.trim();
  if (name) body.name = name;
  inviteCreate.disabled = true;
  inviteStatus.textContent = 'Creating the link…';
  try {
    const response = await fetch(`/api/rooms/${encodeURIComponent(state.roomId)}/invites`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${state.token}` },
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok || !answer.invitePath) {
      inviteStatus.textContent = answer.message ? `The link could not be made: ${answer.message}.` : 'The link could not be made. Please try again.';
      return;
    }
    // In an encrypted room the leader's link pins its key: the invited browser checks it and
    // refuses an unencrypted room (see e2ee/keys.js).
    const pin = state.room.e2ee !== 'off' && isLeader() && e2ee.leader ? `&e2ee=1&leader=${e2ee.leader.fingerprint}` : '';
    inviteLink.value = `${location.origin}${answer.invitePath}${pin}`;
    inviteResult.hidden = false;
    inviteCopy.hidden = false;
    inviteStatus.textContent = name
      ? `A link for ${name} is ready. It works until ${new Date(answer.expiresAt * 1000).toLocaleString()}.`
      : `A link is ready; they will type their name when they open it. It works until ${new Date(answer.expiresAt * 1000).toLocaleString()}.`;
    inviteCreate.textContent = 'Create another link';
    inviteLink.focus();
    inviteLink.select();
  } catch (err) {
    log('invite failed', err);
    inviteStatus.textContent = 'Could not reach the server. Please check your connection and try again.';
  } finally {
    inviteCreate.disabled = false;
  }
}

async function copyInvite() {
  try {
    await navigator.clipboard.writeText(inviteLink.value);
    inviteStatus.textContent = 'Link copied.';
  } catch (err) {
    inviteLink.select();
    inviteStatus.textContent = 'Select the link and copy it (Ctrl+C or ⌘C).';
  }
}

function openWelcome() {
  welcomeGroup.value = state.door.groupName || '';
  welcomeMessage.value = state.door.welcome || '';
  openDialog(welcomeDialog, welcomeGroup);
}

function renderTurnedAway() {
  const show = isTherapist() && turnedAway.size > 0;
  turnedAwayBox.hidden = !show;
  turnedAwayList.replaceChildren(...[...turnedAway.values()].map(({ name, at }) => {
    const li = document.createElement('li');
    li.textContent = `${name}, ${clock(at)}`;
    return li;
  }));
  byId('turned-away-unlock').hidden = !state.room.locked;
}

on('turnedAway', ({ participantId, name }) => {
  if (!isTherapist()) return;
  turnedAway.set(participantId, { name, at: Date.now() });
  renderTurnedAway();
  const text = `${name} tried to join, but the room is locked.`;
  toast(text);
  announce(text);
});
on('roomStateChanged', renderTurnedAway);
on('waitingList', (m) => {
  // Someone who came in after all (the room was unlocked) is no longer turned away.
  for (const w of m.waiting || []) turnedAway.delete(w.id);
  renderTurnedAway();
});
const reset = () => { turnedAway.clear(); renderTurnedAway(); };
on('sessionEnded', reset);
on('local:left', reset);

byId('invite-button').addEventListener('click', openInvite);
inviteCreate.addEventListener('click', createInvite);
inviteCopy.addEventListener('click', copyInvite);
byId('welcome-button').addEventListener('click', openWelcome);
welcomeDialog.addEventListener('close', () => {
  if (welcomeDialog.returnValue !== 'save') return;
  if (send({ type: 'setWelcome', groupName: welcomeGroup.value.trim(), message: welcomeMessage.value.trim() })) {
    announce('The waiting room welcome is saved.');
  }
});
byId('turned-away-unlock').addEventListener('click', () => send({ type: 'lockRoom', locked: false }));

exposeProbe('door', () => ({
  ...state.door,
  turnedAway: [...turnedAway.entries()].map(([id, t]) => ({ id, name: t.name })),
}));
