// The room around the video: our own tile and control buttons, the moderator notice, the
// header chips, the people list, the waiting room, the therapist's room controls and actions,
// and which part of the call view shows (lobby or room).

import { placeInOrder } from '../lib/dom.js';
import { initials } from '../lib/format.js';
import { send } from './connection.js';
import { IN_CALL, ROLE_LABEL, can, isStaff, isTherapist, nameOf, publishes, state } from './state.js';
import { describe, ensureTile, layoutTiles, renderTile, renderTileBadges, tiles } from './tiles.js';
import { ui } from './view.js';

export function renderLocalTile() {
  const el = ui.localTile;
  const stream = state.localStream;
  const hasVideo = Boolean(stream && stream.getVideoTracks().length);
  const hasAudio = Boolean(stream && stream.getAudioTracks().length);
  el.hidden = !publishes();
  el.querySelector('.avatar').textContent = initials(state.name);
  ui.preview.querySelector('.avatar').textContent = initials(state.name);
  el.querySelector('.tile-name').textContent = state.name ? `You (${state.name})` : 'You';
  el.classList.toggle('video-off', !hasVideo || state.videoMuted);
  ui.preview.classList.toggle('video-off', !hasVideo || state.videoMuted);
  const self = {
    role: state.role,
    handRaised: state.handRaised,
    audioMuted: !hasAudio || state.audioMuted,
    videoMuted: !hasVideo || state.videoMuted,
    audioHardMuted: state.audioHardMuted,
    videoHardMuted: state.videoHardMuted,
  };
  renderTileBadges(el, self, state.participantId);
  el.querySelector('.role-badge').hidden = true;
  el.setAttribute('aria-label', describe('You', self, state.participantId));

  // The label says what a press will do ("Unmute" while muted), so the buttons carry no
  // aria-pressed (a pressed "Unmute" would say the opposite); data-off styles them and the
  // slashed icon shows the current state.
  ui.micButton.dataset.off = String(state.audioMuted);
  ui.camButton.dataset.off = String(state.videoMuted);
  // Before media is known the buttons stay usable so a choice can be made up front. A hard
  // mute disables the way back on; the notice says why.
  ui.micButton.disabled = (Boolean(stream) && !hasAudio) || state.audioHardMuted;
  ui.camButton.disabled = (Boolean(stream) && !hasVideo) || state.videoHardMuted;
  ui.micButton.classList.toggle('locked', state.audioHardMuted);
  ui.camButton.classList.toggle('locked', state.videoHardMuted);
  if (state.audioHardMuted) setLabel(ui.micButton, 'Muted by therapist', 'Muted');
  else if (state.audioMuted) setLabel(ui.micButton, 'Unmute', 'Unmute');
  else setLabel(ui.micButton, 'Mute', 'Mute');
  if (state.videoHardMuted) setLabel(ui.camButton, 'Camera off by therapist', 'Cam off');
  else if (state.videoMuted) setLabel(ui.camButton, 'Turn on camera', 'Start video');
  else setLabel(ui.camButton, 'Turn off camera', 'Stop video');
  ui.micButton.hidden = !publishes();
  ui.camButton.hidden = !publishes();
  // Therapists speak when they like; the hand is for participants and observers.
  ui.handButton.hidden = state.status !== 'joined' || isTherapist();
  ui.handButton.setAttribute('aria-pressed', String(state.handRaised));
  setLabel(ui.handButton, state.handRaised ? 'Lower hand' : 'Raise hand', 'Hand');
}

// Control buttons carry a full label and, for narrow screens, a short one; CSS shows one.
function setLabel(button, label, short) {
  button.querySelector('.label').textContent = label;
  const el = button.querySelector('.short');
  if (el) el.textContent = short || label;
}

// What the therapist did to our microphone or camera, for as long as it applies.
export function renderModNotice() {
  const lines = [];
  if (state.audioHardMuted) {
    lines.push(['hard-audio', 'The therapist muted your microphone. Only they can turn it back on; you do not need to do anything.']);
  } else if (state.modNotes.audio) {
    lines.push(['note-audio', state.modNotes.audio]);
  }
  if (state.videoHardMuted) {
    lines.push(['hard-video', 'The therapist turned off your camera. Only they can turn it back on.']);
  } else if (state.modNotes.video) {
    lines.push(['note-video', state.modNotes.video]);
  }
  const text = lines.map((l) => l[1]).join(' ');
  if (ui.modNotice.dataset.text === text) return; // unchanged: don't announce it again
  ui.modNotice.dataset.text = text;
  ui.modNotice.replaceChildren(...lines.map(([kind, line]) => {
    const p = document.createElement('p');
    p.className = `notice-line ${kind}`;
    p.textContent = line;
    return p;
  }));
  ui.modNotice.hidden = lines.length === 0;
  ui.modNotice.classList.toggle('firm', state.audioHardMuted || state.videoHardMuted);
}

// ---------------------------------------------------------------------------------------
// The room: header chips, people list, therapist controls.

function everyone() {
  // Join order, as the server sends it; ourselves first.
  const selfInfo = state.self || {
    id: state.participantId, name: state.name, role: state.role, handRaised: state.handRaised,
    audioMuted: state.audioMuted, videoMuted: state.videoMuted,
    audioHardMuted: state.audioHardMuted, videoHardMuted: state.videoHardMuted,
  };
  return [{ ...selfInfo, self: true }, ...state.participants.values()];
}

export function renderRoster() {
  // Everyone who publishes gets a tile straight away, showing their name while media starts.
  // Tiles go when their owner leaves our space (participantLeft, spaceChanged, spaceRoster);
  // a track that arrives just before its owner's roster entry waits in a hidden tile.
  for (const p of state.participants.values()) {
    if (p.role !== 'observer') ensureTile(p.id);
  }
  for (const id of tiles.keys()) renderTile(id);
  renderLocalTile();
  renderModNotice(); // our own hard mutes can also arrive as participantUpdated

  const all = everyone();
  const observers = all.filter((p) => p.role === 'observer').length;
  const count = all.length;
  // Once people move between rooms (breakouts), say which room the count is for.
  const where = state.space ? 'in this room' : state.spacesUsed ? 'in the main room' : 'here';
  // Never "just you so far" while people wait to be let in.
  const waiting = isStaff() ? state.waiting.length : 0;
  const waitingNote = waiting === 0 ? '' : waiting === 1 ? ' 1 person is waiting to join.' : ` ${waiting} people are waiting to join.`;
  ui.peopleCount.textContent = (count > 1 ? `${count} people ${where}, including you.`
    : waiting > 0 ? `Just you ${where === 'here' ? 'in the room' : where} so far.`
      : where === 'here' ? 'Just you so far. Others will appear here when they join.'
        : `Just you ${where} right now.`) + waitingNote;
  // The group's name once the therapist has given it; the room's code until then.
  ui.roomLabel.hidden = Boolean(state.door.groupName);
  ui.roomName.textContent = state.door.groupName || state.roomId;

  ui.lockedChip.hidden = !state.room.locked;
  const spot = state.room.spotlight;
  ui.spotlightChip.hidden = !spot;
  ui.spotlightChip.textContent = !spot ? ''
    : spot === state.participantId ? 'You are in the spotlight' : `${nameOf(spot)} is in the spotlight`;
  // People should know who is watching without being seen.
  const watching = all.filter((p) => p.role === 'observer' && !p.self).length;
  ui.observerChip.hidden = watching === 0;
  ui.observerChip.textContent = watching === 1 ? '1 observer is watching' : `${watching} observers are watching`;
  ui.peopleTotal.textContent = String(count);
  ui.peopleTotal.setAttribute('aria-label', observers ? `${count}, ${observers} observing` : String(count));

  renderPeople(all);
  renderRoomControls();
  layoutTiles();
}

export const peopleRows = new Map(); // participantId -> li

function renderPeople(all) {
  const therapist = isStaff();
  const focusedRow = rowOf(document.activeElement, ui.peopleList);
  // Raised hands first, in the order they went up (who was first speaks first); then join order.
  noteHandOrder(all);
  const rank = (p) => (p.handRaised ? handOrder.indexOf(p.id) : handOrder.length);
  const ordered = [...all].sort((a, b) => rank(a) - rank(b));
  const ids = new Set(ordered.map((p) => p.id));
  for (const [id, li] of peopleRows) {
    if (!ids.has(id)) { li.remove(); peopleRows.delete(id); }
  }
  for (const p of ordered) {
    let li = peopleRows.get(p.id);
    if (!li) {
      li = ui.personRowTemplate.content.firstElementChild.cloneNode(true);
      li.dataset.participantId = p.id;
      peopleRows.set(p.id, li);
    }
    renderPersonRow(li, p, therapist);
  }
  placeInOrder(ui.peopleList, ordered.map((p) => peopleRows.get(p.id)));
  if (focusedRow) keepFocus(focusedRow.li, focusedRow.action, ui.peopleHeading);

  const hands = ordered.filter((p) => p.handRaised);
  ui.handsSummary.hidden = hands.length === 0;
  ui.handsSummary.querySelector('.text').textContent = hands.length === 0 ? ''
    : hands.length === 1 ? '1 raised hand:' : `${hands.length} raised hands, in the order raised:`;
  ui.handsOrder.replaceChildren(...hands.map((p) => {
    const li = document.createElement('li');
    li.textContent = p.self ? 'you' : p.name;
    return li;
  }));
}

// The order hands went up, as this page saw them (the server keeps only up or down); hands
// already up when we arrived keep the roster's order.
const handOrder = [];
function noteHandOrder(all) {
  const up = new Set(all.filter((p) => p.handRaised).map((p) => p.id));
  for (let i = handOrder.length - 1; i >= 0; i -= 1) {
    if (!up.has(handOrder[i])) handOrder.splice(i, 1);
  }
  for (const p of all) {
    if (p.handRaised && !handOrder.includes(p.id)) handOrder.push(p.id);
  }
}

function renderPersonRow(li, p, therapist) {
  const name = p.self ? `${p.name} (you)` : p.name;
  li.querySelector('.person-name').textContent = name;
  li.classList.toggle('hand-raised', Boolean(p.handRaised));
  const role = li.querySelector('.role-inline');
  role.hidden = p.role === 'participant';
  role.textContent = ROLE_LABEL[p.role] || p.role;
  role.classList.toggle('observer', p.role === 'observer');
  li.querySelector('.hand-inline').hidden = !p.handRaised;
  const away = li.querySelector('.away-inline');
  if (away) away.hidden = !p.reconnecting;
  li.classList.toggle('reconnecting', Boolean(p.reconnecting));
  li.querySelector('.spot-inline').hidden = state.room.spotlight !== p.id;
  const mic = li.querySelector('.mic-inline');
  const publisher = p.role !== 'observer';
  mic.hidden = !publisher || !(p.audioMuted || p.audioHardMuted);
  mic.textContent = p.audioHardMuted ? 'Muted by therapist' : 'Mic off';
  const cam = li.querySelector('.cam-inline');
  cam.hidden = !publisher || !(p.videoMuted || p.videoHardMuted);
  cam.textContent = p.videoHardMuted ? 'Camera off by therapist' : 'Camera off';

  // The actions and the removal confirmation move to the person's video tile when its "…"
  // opened them: one menu, in whichever place the therapist asked.
  if (!li.actionsEl) {
    li.actionsEl = li.querySelector('.person-actions');
    li.confirmEl = li.querySelector('.confirm');
  }
  const actions = li.actionsEl;
  const confirm = li.confirmEl;
  // Staff see the menu; which actions it holds is what the server lets their role do.
  const confirming = therapist && state.confirmRemove === p.id;
  actions.hidden = !therapist || confirming;
  confirm.hidden = !confirming;
  if (!therapist) {
    li.querySelector('.person-more').hidden = true;
    return;
  }
  for (const who of [...actions.querySelectorAll('.who'), ...confirm.querySelectorAll('.who')]) who.textContent = `, ${p.self ? 'you' : p.name}`;
  const moderated = p.role === 'participant' && !p.self;
  const button = (action) => actions.querySelector(`[data-action="${action}"]`);
  const set = (action, visible, label) => {
    const b = button(action);
    b.hidden = !visible;
    if (label) b.querySelector('.label').textContent = label;
    return b;
  };
  const hardMute = can('mute (hard)') && can('unmute');
  set('lower-hand', Boolean(p.handRaised) && (p.self || can("lowerHand (another's)")));
  set('ask-mute', moderated && can('mute') && !p.audioMuted && !p.audioHardMuted);
  set('hard-mute', moderated && hardMute, p.audioHardMuted ? 'Allow unmute' : 'Mute')
    .classList.toggle('engaged', Boolean(p.audioHardMuted));
  set('camera', moderated && hardMute, p.videoHardMuted ? 'Allow camera' : 'Turn off camera')
    .classList.toggle('engaged', Boolean(p.videoHardMuted));
  set('spotlight', publisher && can('spotlight'), state.room.spotlight === p.id ? 'End spotlight' : 'Spotlight')
    .classList.toggle('engaged', state.room.spotlight === p.id);
  set('screen', moderated && can('allowScreenShare'), p.canShareScreen ? 'Stop screen sharing' : 'Allow screen sharing')
    .classList.toggle('engaged', Boolean(p.canShareScreen));
  set('remove', p.role !== 'therapist' && !p.self && can('remove'));
  const any = [...actions.children].some((b) => !b.hidden);
  const more = li.querySelector('.person-more');
  const open = state.openMenu === p.id && any && !confirming;
  const tile = p.self ? null : tiles.get(p.id);
  const tileMore = tile && tile.element.querySelector('.tile-more');
  const onTile = Boolean(tile) && state.menuOn === 'tile' && state.openMenu === p.id;
  const host = onTile ? tile.element.querySelector('.tile-menu') : li;
  if (actions.parentElement !== host) {
    // Back in the row: right under its name, before anything features added (a trend chart).
    if (onTile) host.append(actions, confirm);
    else li.querySelector('.person-main').after(actions, confirm);
  }
  more.hidden = !any;
  more.setAttribute('aria-expanded', String(open && !onTile));
  more.querySelector('.who-menu').textContent = `Actions for ${p.self ? 'you' : p.name}`;
  if (tileMore) {
    tileMore.hidden = !any;
    tileMore.setAttribute('aria-expanded', String(open && onTile));
    tileMore.querySelector('.who-menu').textContent = `Actions for ${p.name}`;
  }
  actions.setAttribute('aria-label', `Actions for ${p.self ? 'you' : p.name}`);
  actions.hidden = !open;
  if (confirming) {
    confirm.querySelector('.confirm-text').textContent = `Remove ${p.name} from this session? They will not be able to rejoin it.`;
  }
}

// Which row (and which of its buttons) holds focus, so a re-render can put it back.
function rowOf(element, list) {
  if (!element || !list.contains(element)) return null;
  const li = element.closest('li');
  if (!li) return null;
  return { li, action: element.dataset.action || null };
}

function keepFocus(li, action, fallback) {
  if (document.activeElement && !document.activeElement.hidden && li.contains(document.activeElement)
    && document.activeElement.offsetParent !== null) return;
  if (!li.isConnected) { fallback.focus(); return; }
  const target = (action && li.querySelector(`[data-action="${action}"]:not([hidden])`))
    || [...li.querySelectorAll('button')].find((b) => !b.hidden && b.offsetParent !== null);
  if (target) target.focus();
  else fallback.focus();
}

const waitingRows = new Map(); // participantId -> li

export function renderWaiting() {
  const therapist = isStaff();
  const count = state.waiting.length;
  const fresh = state.arrivals.size > 0;
  ui.waitingPill.hidden = !therapist || count === 0 || !IN_CALL.has(state.status);
  ui.waitingPill.textContent = count === 1 ? '1 person waiting' : `${count} people waiting`;
  ui.waitingPill.classList.toggle('fresh', fresh);
  document.title = therapist && count > 0 && IN_CALL.has(state.status) ? `(${count} waiting) Hearth` : 'Hearth';
  if (!therapist) return;
  ui.waitingCount.textContent = String(count);
  ui.waitingCount.classList.toggle('has-some', count > 0);
  ui.waitingSection.classList.toggle('fresh', fresh);
  ui.waitingEmpty.hidden = count > 0;
  ui.admitAll.hidden = count < 2;

  const focused = rowOf(document.activeElement, ui.waitingList);
  const focusIndex = focused ? [...ui.waitingList.children].indexOf(focused.li) : -1;
  const ids = new Set(state.waiting.map((w) => w.id));
  for (const [id, li] of waitingRows) {
    if (!ids.has(id)) { li.remove(); waitingRows.delete(id); }
  }
  for (const w of state.waiting) {
    let li = waitingRows.get(w.id);
    if (!li) {
      li = ui.waitingRowTemplate.content.firstElementChild.cloneNode(true);
      li.dataset.participantId = w.id;
      waitingRows.set(w.id, li);
    }
    li.querySelector('.person-name').textContent = w.name;
    const role = li.querySelector('.role-inline');
    const guest = w.role === 'familyGuest';
    role.hidden = w.role === 'participant';
    role.textContent = guest ? `Guest of ${w.sponsorName || 'a member who is not here'}` : ROLE_LABEL[w.role] || w.role;
    role.classList.toggle('observer', w.role === 'observer');
    for (const who of li.querySelectorAll('.who')) who.textContent = `, ${w.name}`;
    // A guest is admitted into their sponsor's family space, which the therapist opens first.
    li.dataset.sponsor = w.sponsor || '';
    const family = li.querySelector('[data-action="family"]');
    family.hidden = !guest || !w.sponsorName || state.familySponsor === w.sponsor || state.role !== 'therapist';
    li.querySelector('.family-who').textContent = guest ? ` with ${w.sponsorName || ''}` : '';
    li.classList.toggle('arrived', state.arrivals.has(w.id));
  }
  placeInOrder(ui.waitingList, state.waiting.map((w) => waitingRows.get(w.id)));
  // The row that had focus is gone (admitted or declined): go to the next one, or the heading.
  if (focused && !focused.li.isConnected) {
    const next = ui.waitingList.children[Math.min(focusIndex, ui.waitingList.children.length - 1)];
    const button = next && next.querySelector(`[data-action="${focused.action || 'admit'}"]`);
    if (button) button.focus();
    else ui.waitingHeading.focus();
  }
}

function renderRoomControls() {
  const therapist = isTherapist();
  ui.waitingSection.hidden = !isStaff();
  ui.roomControls.hidden = !therapist;
  ui.lockButton.setAttribute('aria-checked', String(state.room.locked));
  ui.waitingRoomButton.setAttribute('aria-checked', String(state.room.waitingRoom));
  const others = [...state.participants.values()].some((p) => p.role === 'participant');
  ui.muteAll.disabled = !others;
  renderWaiting();
}

export function renderCall() {
  const inCall = IN_CALL.has(state.status);
  // The lobby shows until the server admits us; the room after, and while reconnecting to it.
  const inRoom = inCall && state.admitted;
  ui.lobby.hidden = !inCall || inRoom;
  ui.roomPanel.hidden = !inRoom;
  ui.controls.hidden = !inCall;
  ui.roleChip.hidden = !inCall || state.role === 'participant';
  ui.roleChip.querySelector('.text').textContent = state.role === 'participant' ? '' : ROLE_LABEL[state.role] || '';
  ui.preview.hidden = !publishes();
  setLabel(ui.leaveButton, 'Leave', 'Leave');
  ui.endSessionButton.hidden = !inRoom || !isTherapist();
  const door = state.door;
  ui.lobbyGroup.hidden = !door.groupName;
  ui.lobbyGroup.textContent = door.groupName || '';
  ui.lobbyWelcome.hidden = !(state.status === 'waiting' && door.welcome);
  ui.lobbyWelcomeText.textContent = door.welcome || '';
  ui.lobbyWelcomeBy.textContent = door.therapistName ? `A welcome from ${door.therapistName}` : 'A welcome from your therapist';
  ui.lobbyTherapist.hidden = state.status !== 'waiting';
  if (state.status === 'waiting') {
    const who = door.therapistName || 'The therapist';
    ui.lobbyHeading.textContent = "You're in the waiting room";
    // Whether anyone is here to let them in: never "shortly" to an empty room.
    ui.lobbyTherapist.textContent = door.therapistHere
      ? `${who} is here and will let you in shortly.`
      : door.therapistName
        ? `${who} has not arrived yet. You can wait here; you will be let in when they arrive.`
        : 'No therapist has arrived yet. You can wait here; you will be let in when they arrive.';
    ui.lobbyText.textContent = state.role === 'familyGuest'
      ? 'You are a family guest. The therapist will bring you into a private family space with your '
        + 'family member; no one else can see or hear you.'
      : publishes()
        ? 'Meanwhile you can check how you look here; no one else can see or hear you yet.'
        : 'As an observer, others will not see or hear you.';
  } else {
    ui.lobbyHeading.textContent = state.status === 'reconnecting' ? 'Reconnecting…' : 'Getting ready…';
    ui.lobbyText.textContent = publishes()
      ? 'Connecting you to the session. You can check how you look while you wait.'
      : 'Connecting you to the session.';
  }
  renderLocalTile();
  renderModNotice();
  renderWaiting();
  ui.tiles.classList.toggle('reconnecting', state.status === 'reconnecting');
  for (const id of tiles.keys()) renderTile(id);
  if (inRoom) layoutTiles();
}

// ---------------------------------------------------------------------------------------
// Therapist actions. The buttons reflect what the server reports, never what we asked for.

export function onPeopleClick(event) {
  const button = event.target.closest('button[data-action]');
  if (!button || !isStaff()) return;
  // A row of the people list, or a video tile whose "…" holds the same menu.
  const li = button.closest('li');
  const id = li && li.dataset.participantId;
  const p = id === state.participantId ? state.self : state.participants.get(id);
  if (!id) return;
  const action = button.dataset.action;
  // The menu stays open after an action, so the therapist sees it took ("Mute" becomes
  // "Allow unmute"); "…" again or Escape closes it.
  switch (action) {
    case 'menu': {
      const where = button.classList.contains('tile-more') ? 'tile' : 'row';
      state.openMenu = state.openMenu === id && state.menuOn === where ? null : id;
      state.menuOn = where;
      renderRoster();
      if (state.openMenu) {
        const first = [...li.querySelectorAll('.person-actions button')].find((b) => !b.hidden);
        if (first) first.focus();
      } else {
        button.focus();
      }
      break;
    }
    case 'lower-hand': send({ type: 'lowerHand', participantId: id }); break;
    case 'ask-mute': send({ type: 'mute', participantId: id, kind: 'audio', hard: false }); break;
    case 'hard-mute':
      if (p && p.audioHardMuted) send({ type: 'unmute', participantId: id, kind: 'audio' });
      else send({ type: 'mute', participantId: id, kind: 'audio', hard: true });
      break;
    case 'camera':
      if (p && p.videoHardMuted) send({ type: 'unmute', participantId: id, kind: 'video' });
      else send({ type: 'mute', participantId: id, kind: 'video', hard: true });
      break;
    case 'spotlight':
      send({ type: 'spotlight', participantId: state.room.spotlight === id ? null : id });
      break;
    case 'screen':
      send({ type: 'allowScreenShare', participantId: id, allowed: !(p && p.canShareScreen) });
      break;
    case 'remove':
      state.confirmRemove = id;
      renderRoster();
      li.querySelector('[data-action="remove-cancel"]').focus();
      break;
    case 'remove-cancel':
      state.confirmRemove = null;
      renderRoster();
      li.querySelector('[data-action="remove"]').focus();
      break;
    case 'remove-confirm':
      state.confirmRemove = null;
      send({ type: 'remove', participantId: id });
      renderRoster();
      ui.peopleHeading.focus();
      break;
    default: break;
  }
}

export function onWaitingClick(event) {
  const button = event.target.closest('button[data-action]');
  if (!button || !isStaff()) return;
  const id = button.closest('li').dataset.participantId;
  if (button.dataset.action === 'admit') send({ type: 'admit', participantId: id });
  if (button.dataset.action === 'decline') send({ type: 'decline', participantId: id });
  if (button.dataset.action === 'family') send({ type: 'openFamilySpace', sponsorId: button.closest('li').dataset.sponsor });
}

