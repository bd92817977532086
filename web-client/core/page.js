// Wires the page's own controls (join form, mic, camera, hand, leave, therapist controls,
// keyboard, window events) and shows the first screen.

import { announce } from '../lib/announce.js';
import { el } from '../lib/dom.js';
import { rememberToken, send } from './connection.js';
import { onJoinSubmit, onLinkJoin, route } from './landing.js';
import { toggleHand, toggleMute } from './media.js';
import { confirmAction } from './dialog.js';
import { onPeopleClick, onWaitingClick, peopleRows, renderLocalTile, renderRoster } from './roster.js';
import { endSessionMessage, leave } from './session.js';
import { IN_CALL, state } from './state.js';
import { layoutTiles, playWithSound, sizeSidebar, tiles } from './tiles.js';
import { setStatus, showView, ui } from './view.js';

// Phones put Leave within a thumb of everything else: there a tap asks first.
const PHONE = window.matchMedia('(max-width: 40rem)');

async function onLeaveClick() {
  if (PHONE.matches && state.admitted) {
    const sure = await confirmAction({
      heading: 'Leave the session?',
      body: 'You can join again with the same link while the session is on.',
      confirm: 'Leave',
    });
    if (!sure) return;
  }
  leave();
}

// The therapist may leave the group a few words for their end screen.
const closingField = el('div', { class: 'field' },
  el('label', { for: 'closing-message', text: 'A closing message for the group (optional)' }),
  el('textarea', { id: 'closing-message', class: 'text-field', rows: '3', maxlength: '600' }));

async function onEndSessionClick() {
  const input = closingField.querySelector('textarea');
  input.value = state.closingMessage || '';
  const sure = await confirmAction({
    heading: 'End the session for everyone?',
    body: 'Everyone is disconnected, and the session cannot be joined again.',
    confirm: 'End session',
    content: [closingField],
  });
  state.closingMessage = input.value.trim();
  if (sure) send(endSessionMessage());
}


/** Opens or closes the "More" menu; closing puts focus back on its button unless told not to. */
export function setMoreOpen(open, refocus = true) {
  ui.moreMenu.hidden = !open;
  ui.moreButton.setAttribute('aria-expanded', String(open));
  if (open) {
    const first = [...ui.moreMenu.querySelectorAll('button')].find((b) => !b.hidden);
    if (first) first.focus();
  } else if (refocus) {
    ui.moreButton.focus();
  }
}

export function init() {
  const room = new URLSearchParams(location.search).get('room');
  if (room) ui.roomInput.value = room;
  // We validate ourselves so the message lands in the calm alert area, not a browser bubble.
  ui.joinForm.noValidate = true;
  ui.joinForm.addEventListener('submit', onJoinSubmit);
  ui.linkJoin.addEventListener('click', onLinkJoin);
  ui.linkNameInput.addEventListener('keydown', (event) => { if (event.key === 'Enter') onLinkJoin(); });
  ui.linkOtherButton.addEventListener('click', () => {
    history.replaceState(null, '', `${location.pathname}${location.search}`);
    rememberToken('');
    setStatus('idle');
    showView('form');
  });
  ui.micButton.addEventListener('click', () => toggleMute('audio'));
  ui.camButton.addEventListener('click', () => toggleMute('video'));
  ui.handButton.addEventListener('click', toggleHand);
  ui.leaveButton.addEventListener('click', onLeaveClick);
  ui.endSessionButton.addEventListener('click', onEndSessionClick);
  ui.moreButton.addEventListener('click', () => setMoreOpen(ui.moreMenu.hidden));
  // A choice in the menu closes it; so does a click anywhere else.
  ui.moreMenu.addEventListener('click', (event) => { if (event.target.closest('button')) setMoreOpen(false, false); });
  document.addEventListener('click', (event) => {
    if (!ui.moreMenu.hidden && !event.target.closest('#more')) setMoreOpen(false, false);
  });
  ui.soundButton.addEventListener('click', () => {
    ui.soundButton.hidden = true;
    for (const video of ui.tiles.querySelectorAll('.tile.remote video')) playWithSound(video);
  });
  ui.peopleList.addEventListener('click', onPeopleClick);
  ui.tiles.addEventListener('click', onPeopleClick);
  ui.waitingList.addEventListener('click', onWaitingClick);
  ui.admitAll.addEventListener('click', () => send({ type: 'admitAll' }));
  ui.waitingPill.addEventListener('click', () => {
    ui.waitingSection.scrollIntoView({ block: 'start', behavior: 'smooth' });
    ui.waitingHeading.focus({ preventScroll: true });
  });
  ui.lockButton.addEventListener('click', () => send({ type: 'lockRoom', locked: !state.room.locked }));
  ui.waitingRoomButton.addEventListener('click', () => send({ type: 'setWaitingRoom', enabled: !state.room.waitingRoom }));
  ui.muteAll.addEventListener('click', () => {
    if (send({ type: 'muteAll', kind: 'audio', hard: false })) announce('Everyone else was asked to mute.');
  });
  document.addEventListener('keydown', (event) => {
    // Escape backs out of a confirmation, like closing a dialog.
    if (event.key !== 'Escape') return;
    if (!ui.moreMenu.hidden) setMoreOpen(false);
    else if (state.confirmRemove) {
      const id = state.confirmRemove;
      state.confirmRemove = null;
      renderRoster();
      const li = peopleRows.get(id);
      if (li) li.actionsEl.querySelector('[data-action="remove"]').focus();
    } else if (state.openMenu) {
      const id = state.openMenu;
      state.openMenu = null;
      renderRoster();
      const tile = state.menuOn === 'tile' && tiles.get(id);
      const li = peopleRows.get(id);
      if (tile) tile.element.querySelector('.tile-more').focus();
      else if (li) li.querySelector('.person-more').focus();
    }
  });
  window.addEventListener('resize', layoutTiles);
  window.addEventListener('scroll', sizeSidebar, { passive: true });
  window.addEventListener('hashchange', () => {
    // A new join link pasted into this tab: use it, unless a session is running.
    if (!IN_CALL.has(state.status)) route();
  });
  window.addEventListener('pagehide', () => {
    // Tell the room promptly instead of waiting for the server to notice the socket is gone.
    if (IN_CALL.has(state.status)) send({ type: 'leave' });
  });
  renderLocalTile();
  route();
}
