// The page's views and the messages it shows: the element map (`ui`), the connection status,
// which view is on screen (moving focus with it), the alert area and the message screen.

import { byId as $ } from '../lib/dom.js';
import { renderCall } from './roster.js';
import { IN_CALL, state } from './state.js';

export const ui = {
  status: $('status'),
  roleChip: $('role-chip'),
  waitingPill: $('waiting-pill'),
  alert: $('alert'),
  announcer: $('announcer'),
  views: {
    loading: $('loading-view'),
    link: $('link-view'),
    form: $('join-view'),
    message: $('message-view'),
    call: $('call-view'),
  },
  headings: {
    loading: $('loading-heading'),
    link: $('link-heading'),
    form: $('join-heading'),
    message: $('message-heading'),
  },
  linkName: $('link-name'),
  linkHello: $('link-hello'),
  linkInvited: $('link-invited'),
  linkNameField: $('link-name-field'),
  linkNameInput: $('link-name-input'),
  linkRoom: $('link-room'),
  linkRole: $('link-role'),
  linkLead: $('link-lead'),
  linkLeft: $('link-left'),
  linkJoin: $('link-join-button'),
  linkOther: $('link-other'),
  linkOtherButton: $('link-other-button'),
  joinForm: $('join-form'),
  joinButton: $('join-button'),
  roomInput: $('room-input'),
  nameInput: $('name-input'),
  roleInput: $('role-input'),
  messageText: $('message-text'),
  messageHint: $('message-hint'),
  messageMore: $('message-more'),
  messageHelp: $('message-help'),
  messageAction: $('message-action'),
  modNotice: $('mod-notice'),
  lobby: $('lobby-panel'),
  lobbyHeading: $('lobby-heading'),
  lobbyText: $('lobby-text'),
  lobbyGroup: $('lobby-group'),
  lobbyTherapist: $('lobby-therapist'),
  lobbyWelcome: $('lobby-welcome'),
  lobbyWelcomeText: $('lobby-welcome-text'),
  lobbyWelcomeBy: $('lobby-welcome-by'),
  preview: $('preview'),
  previewVideo: $('preview-video'),
  roomPanel: $('room-panel'),
  roomHeading: $('room-heading'),
  roomName: $('room-name'),
  roomLabel: $('room-label'),
  peopleCount: $('people-count'),
  lockedChip: $('locked-chip'),
  spotlightChip: $('spotlight-chip'),
  observerChip: $('observer-chip'),
  stage: document.querySelector('.stage'),
  sidebar: $('sidebar'),
  tiles: $('tiles'),
  localTile: $('local-tile'),
  localVideo: $('local-video'),
  tileTemplate: $('tile-template'),
  waitingRowTemplate: $('waiting-row-template'),
  personRowTemplate: $('person-row-template'),
  waitingSection: $('waiting-section'),
  waitingHeading: $('waiting-heading'),
  waitingCount: $('waiting-count'),
  waitingEmpty: $('waiting-empty'),
  waitingList: $('waiting-list'),
  admitAll: $('admit-all-button'),
  peopleHeading: $('people-heading'),
  peopleTotal: $('people-total'),
  handsSummary: $('hands-summary'),
  handsOrder: $('hands-order'),
  peopleList: $('people-list'),
  roomControls: $('room-controls'),
  lockButton: $('lock-button'),
  waitingRoomButton: $('waiting-room-button'),
  muteAll: $('mute-all-button'),
  endSessionButton: $('end-session-button'),
  moreButton: $('more-button'),
  moreMenu: $('more-menu'),
  micButton: $('mic-button'),
  camButton: $('cam-button'),
  handButton: $('hand-button'),
  leaveButton: $('leave-button'),
  controls: $('controls'),
  soundButton: $('sound-button'),
};

// ---------------------------------------------------------------------------------------
// Status, views and alerts (announcements: lib/announce.js).

const STATUS_TEXT = {
  idle: 'Not connected yet.',
  connecting: 'Connecting…',
  waiting: 'In the waiting room.',
  joined: "You're in the room.",
  reconnecting: 'Reconnecting…',
  left: 'You left the room. Take care.',
  ended: 'Not connected.',
};

export function setStatus(status, text) {
  state.status = status;
  ui.status.dataset.state = status;
  ui.status.textContent = text || STATUS_TEXT[status];
  if (IN_CALL.has(status)) showView('call');
  renderCall();
}

let currentView = 'loading';
export function showView(which) {
  const previous = currentView;
  currentView = which;
  for (const [name, el] of Object.entries(ui.views)) el.hidden = name !== which;
  // Move focus with the view, otherwise keyboard and screen reader users are left on a
  // button that no longer exists.
  if (which !== previous && which !== 'call' && ui.headings[which]) ui.headings[which].focus();
}

export function showAlert(message) {
  ui.alert.textContent = message;
}

export function clearAlert() {
  ui.alert.textContent = '';
}

// A final or informational screen: no link, a bad link, the session is over. `more` is a
// paragraph of its own (the clinic's words, the therapist's closing message); `help` is the
// clinic's support resources, set apart so it is found at once.
export function showMessage(heading, text, { hint = '', action = null, more = '', help = '' } = {}) {
  ui.headings.message.textContent = heading;
  ui.messageText.textContent = text;
  ui.messageHint.textContent = hint;
  ui.messageHint.hidden = !hint;
  ui.messageMore.textContent = more;
  ui.messageMore.hidden = !more;
  ui.messageHelp.textContent = help;
  ui.messageHelp.hidden = !help;
  ui.messageAction.hidden = !action;
  ui.messageAction.onclick = null;
  if (action) {
    ui.messageAction.textContent = action.label;
    ui.messageAction.onclick = action.run;
  }
  showView('message');
  if (currentView === 'message') ui.headings.message.focus();
}
