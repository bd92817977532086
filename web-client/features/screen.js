// Screen sharing: a "Share screen" button for those who may (therapists, and participants a
// therapist allowed), a calm "You are sharing your screen" bar with a stop button, and the
// shared screen shown large above the tiles, with the sharer's camera still in its tile.
// A module on the bus; the server decides who may share (see docs/protocol.md).

import { announce } from '../lib/announce.js';
import { el } from '../lib/dom.js';
import { ICONS, svgIcon } from '../lib/icons.js';
import { on } from '../core/bus.js';
import { CODES } from '../core/codes.js';
import { send } from '../core/connection.js';
import { log } from '../core/log.js';
import { nameOf, state } from '../core/state.js';

const ui = {};
const share = {
  // What we publish: { stream, track, sender, pc, forwarded } while sharing; `forwarded` only
  // once the server says it passes the share on (screenShareForwarded).
  mine: null,
  // Our share between a lost connection and the next one: { stream, track }.
  held: null,
  // Whose screen is on the stage: { participantId, track }.
  shown: null,
};

function build() {
  const controls = document.getElementById('controls');
  const more = document.getElementById('more');
  ui.button = el('button', { type: 'button', id: 'screen-button', class: 'button toggle', 'aria-pressed': 'false', hidden: true },
    svgIcon(ICONS.screen), el('span', { class: 'label', text: 'Share screen' }), el('span', { class: 'short', text: 'Share' }));
  controls.insertBefore(ui.button, more);
  ui.button.addEventListener('click', () => (share.mine ? stopSharing('stopped') : startSharing()));

  ui.bar = el('div', { id: 'screen-sharing-bar', class: 'screen-bar', role: 'status', hidden: true },
    el('span', { class: 'text' }),
    el('button', { type: 'button', class: 'button small danger', id: 'screen-stop', text: 'Stop sharing', onclick: () => stopSharing('stopped') }));

  // Both above the tiles, where the eye is: the bar (our own share) and the stage (theirs).
  const tiles = document.getElementById('tiles');
  tiles.parentElement.insertBefore(ui.bar, tiles);
  ui.video = el('video', { autoplay: true, playsinline: true, muted: true });
  ui.caption = el('figcaption', { class: 'screen-caption' });
  ui.stage = el('figure', { id: 'screen-stage', class: 'screen-stage', hidden: true }, ui.video, ui.caption);
  tiles.parentElement.insertBefore(ui.stage, tiles);
}

function renderButton() {
  const self = state.self;
  const may = state.role === 'therapist' || Boolean(self && self.canShareScreen);
  const supported = Boolean(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
  ui.button.hidden = !(may && supported && state.status === 'joined' && state.admitted) && !share.mine;
  ui.button.setAttribute('aria-pressed', String(Boolean(share.mine)));
  ui.button.querySelector('.label').textContent = share.mine ? 'Stop sharing' : 'Share screen';
  ui.button.querySelector('.short').textContent = share.mine ? 'Stop' : 'Share';
  ui.bar.hidden = !share.mine;
  if (share.mine) {
    const text = ui.bar.querySelector('.text');
    const phase = share.mine.failed ? 'failed' : share.mine.forwarded ? 'sharing' : 'starting';
    ui.bar.dataset.state = phase;
    text.textContent = phase === 'sharing' ? 'You are sharing your screen with the group.'
      : phase === 'failed' ? 'Your screen is not reaching the group. Stop sharing and try again.'
        : 'Starting your screen share…';
  }
}

async function startSharing() {
  const pc = state.pc;
  if (!pc || share.mine) return;
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  } catch (err) {
    // The person closed the picker: nothing to say.
    log('screen share not started:', err && err.name);
    return;
  }
  const track = stream.getVideoTracks()[0];
  if (!track || state.pc !== pc) {
    stream.getTracks().forEach((t) => t.stop());
    return;
  }
  // Said before the track is added, so the server knows it for a share when it arrives.
  send({ type: 'screenShare', clientTrackId: track.id, clientStreamId: stream.id, active: true });
  if ('contentHint' in track) track.contentHint = 'detail';
  const sender = pc.addTrack(track, stream);
  share.mine = { stream, track, sender, pc, forwarded: false, failed: false };
  // The browser's own "Stop sharing" button ends the track (also while held for a reconnect).
  track.addEventListener('ended', () => {
    if (share.held && share.held.track === track) share.held = null;
    stopSharing('ended');
  });
  log('screen share announced', track.id);
  renderButton();
}

function stopSharing(why, { tell = true } = {}) {
  const mine = share.mine;
  if (!mine) return;
  share.mine = null;
  if (tell) send({ type: 'screenShare', clientTrackId: mine.track.id, active: false });
  try {
    if (mine.pc.signalingState !== 'closed' && mine.pc.getSenders().includes(mine.sender)) mine.pc.removeTrack(mine.sender);
  } catch (err) {
    log('removing the screen track failed:', err && err.name);
  }
  mine.track.stop();
  log('screen share stopped:', why);
  if (why !== 'reconnect') announce('You stopped sharing your screen.');
  renderButton();
}

function show(participantId, track) {
  share.shown = { participantId, track };
  // Whose screen it is, for e2ee/ui.js's "no key" and "cannot decrypt" marks.
  ui.stage.dataset.participantId = participantId;
  ui.video.srcObject = new MediaStream([track]);
  ui.video.play().catch(() => {});
  ui.caption.textContent = `${nameOf(participantId)} is sharing their screen`;
  ui.stage.hidden = false;
  ui.stage.setAttribute('aria-label', ui.caption.textContent);
  document.body.classList.add('screen-on-stage');
  const hide = () => hideIf(participantId, track);
  track.addEventListener('ended', hide);
  announce(`${nameOf(participantId)} is sharing their screen.`);
}

function hideIf(participantId, track) {
  if (!share.shown || share.shown.participantId !== participantId) return;
  if (track && share.shown.track !== track) return;
  share.shown = null;
  delete ui.stage.dataset.participantId;
  ui.video.srcObject = null;
  ui.stage.hidden = true;
  document.body.classList.remove('screen-on-stage');
}

build();

on('local:screenTrack', ({ track, stream, participantId }) => {
  if (track.kind !== 'video') return;
  show(participantId, track);
  if (stream) stream.addEventListener('removetrack', (e) => { if (e.track === track) hideIf(participantId, track); });
});
on('participantUpdated', ({ participant }) => {
  if (!participant.screenSharing) hideIf(participant.id);
  if (participant.id === state.participantId && share.mine && participant.canShareScreen === false) {
    // A therapist stopped our share: the server no longer forwards it.
    stopSharing('revoked', { tell: false });
    announce('The therapist stopped your screen sharing.');
  }
  renderButton();
});
on('participantLeft', ({ participantId }) => hideIf(participantId));
on('spaceChanged', () => { if (share.shown) hideIf(share.shown.participantId); });
// The server's word that the others receive our share: only now do we say "sharing".
on('screenShareForwarded', () => {
  if (!share.mine || share.mine.forwarded) return;
  share.mine.forwarded = true;
  share.mine.failed = false;
  announce('You are sharing your screen with the group.');
  renderButton();
});
on('error', (message) => {
  if (message.code === CODES.FORBIDDEN && share.mine && /screen/.test(message.message || '')) stopSharing('refused', { tell: false });
  if (message.code === CODES.SCREEN_SHARE_NOT_RECEIVED && share.mine && !share.mine.forwarded) {
    share.mine.failed = true;
    announce('Your screen is not reaching the group. Stop sharing and try again.');
    renderButton();
  }
});
// A new connection (reconnect, moved node) starts without our share. While the captured
// screen is still live it goes on by itself on the new connection, once we are back in the
// room: nobody has to pick the window again in the middle of a session.
function resumeSharing() {
  const held = share.held;
  const pc = state.pc;
  if (!held || !pc || !state.admitted) return;
  share.held = null;
  if (held.track.readyState !== 'live') {
    announce('You stopped sharing your screen.');
    renderButton();
    return;
  }
  send({ type: 'screenShare', clientTrackId: held.track.id, clientStreamId: held.stream.id, active: true });
  share.mine = { stream: held.stream, track: held.track, sender: pc.addTrack(held.track, held.stream), pc, forwarded: false, failed: false };
  log('screen share resumed on the new connection', held.track.id);
  renderButton();
}
on('joined', () => {
  if (share.mine) {
    // The old connection is gone, and its sender with it; the capture itself goes on.
    share.held = { stream: share.mine.stream, track: share.mine.track };
    share.mine = null;
  }
  hideIf(share.shown && share.shown.participantId);
  resumeSharing();
  renderButton();
});
on('admitted', resumeSharing);
on('admitted', renderButton);
on('waitingList', renderButton);
on('roomStateChanged', renderButton);
on('participantJoined', renderButton);
renderButton();
