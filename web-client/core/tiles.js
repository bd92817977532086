// Remote media and the video grid: a tile per person who publishes, their tracks, badges and
// the active speaker ring, and the layout that sizes the tiles to the screen.

import { initials } from '../lib/format.js';
import { emit, on } from './bus.js';
import { log } from './log.js';
import { state } from './state.js';
import { ui } from './view.js';

// ---------------------------------------------------------------------------------------
// Remote media and tiles.

export function onRemoteTrack(event) {
  const track = event.track;
  const remoteStream = event.streams[0];
  const streamId = remoteStream ? remoteStream.id : null;
  const owner = (streamId && state.streamOwners.get(streamId)) || streamId;
  log('remote', track.kind, 'track for', owner);
  if (!owner) return;
  if (streamId.endsWith('~screen')) {
    // A shared screen has a stream of its own and is shown apart from the camera
    // (features/screen.js hears it as the bus event `local:screenTrack`).
    emit('local:screenTrack', { track, stream: remoteStream, participantId: owner });
    return;
  }
  const tile = ensureTile(owner);
  // Each tile owns its own MediaStream so audio and video from separate negotiations end up
  // in one element, and a removed track only takes itself away.
  const stream = tile.stream;
  for (const old of stream.getTracks()) {
    if (old.kind === track.kind && old !== track) stream.removeTrack(old);
  }
  if (!stream.getTracks().includes(track)) stream.addTrack(track);
  const forget = () => {
    if (stream.getTracks().includes(track)) stream.removeTrack(track);
    renderTile(owner);
    if (tiles.get(owner) === tile) dropTileIfIdle(owner);
  };
  track.addEventListener('ended', forget);
  if (remoteStream) {
    remoteStream.addEventListener('removetrack', (e) => { if (e.track === track) forget(); });
  }
  // Remote tracks start muted until media flows; re-render when that changes.
  track.addEventListener('unmute', () => renderTile(owner));
  track.addEventListener('mute', () => renderTile(owner));
  const video = tile.element.querySelector('video');
  if (video.srcObject !== stream) video.srcObject = stream;
  playWithSound(video);
  renderTile(owner);
}

export function playWithSound(video) {
  video.play().catch((err) => {
    // Autoplay policy: sound may need a click. Offer one obvious button instead of silence.
    // (A play() cut short because the tile went away, an AbortError, needs nothing.)
    log('play() failed:', err && err.name);
    if (err && err.name === 'NotAllowedError') ui.soundButton.hidden = false;
  });
}

export const tiles = new Map(); // participantId -> { element, stream }

export function ensureTile(participantId) {
  let tile = tiles.get(participantId);
  if (tile) return tile;
  const element = ui.tileTemplate.content.firstElementChild.cloneNode(true);
  element.dataset.participantId = participantId;
  // The first decoded frame (and any change of size) tells us there is a picture to show.
  for (const type of ['resize', 'loadedmetadata']) {
    element.querySelector('video').addEventListener(type, () => renderTile(participantId));
  }
  tile = { element, stream: new MediaStream() };
  tiles.set(participantId, tile);
  ui.tiles.appendChild(element);
  markSpeaker(element, participantId);
  return tile;
}

// Active speaker: the server says who is speaking in our space. Shown as a ring and a
// "Speaking" badge on the tile; not announced to screen readers (it changes too often).
export function onActiveSpeaker(participantId) {
  state.activeSpeaker = participantId;
  for (const element of ui.tiles.querySelectorAll('.tile')) {
    markSpeaker(element, element.dataset.participantId);
  }
}

function markSpeaker(element, participantId) {
  const speaking = Boolean(state.activeSpeaker) && participantId === state.activeSpeaker;
  element.classList.toggle('speaking', speaking);
  const badge = element.querySelector('.badge.speaking');
  if (badge) badge.hidden = !speaking;
}

export function removeTile(participantId) {
  const tile = tiles.get(participantId);
  if (!tile) return;
  const video = tile.element.querySelector('video');
  video.srcObject = null;
  tile.element.remove();
  tiles.delete(participantId);
  layoutTiles();
}

export function clearRemoteTiles() {
  for (const id of [...tiles.keys()]) removeTile(id);
}

// Someone is no longer in our space. Their tile goes at once; if their tracks are still
// attached (the server's renegotiation removing them has not arrived yet) it is only hidden
// and muted, and goes when the last track does, or comes back if they do.
export function dropTileIfIdle(participantId) {
  const tile = tiles.get(participantId);
  if (!tile) return;
  if (state.participants.has(participantId)) return;
  if (tile.stream.getTracks().some((t) => t.readyState === 'live')) renderTile(participantId);
  else removeTile(participantId);
}

// Our connection dropped: the peer connection is gone, so are its tracks; the tiles stay.
export function detachRemoteMedia() {
  for (const [id, tile] of tiles) {
    for (const track of tile.stream.getTracks()) tile.stream.removeTrack(track);
    renderTile(id);
  }
}

export function renderTile(participantId) {
  const tile = tiles.get(participantId);
  const participant = state.participants.get(participantId);
  if (!tile) return;
  const name = participant ? participant.name : 'Someone';
  const el = tile.element;
  // Media can arrive a moment before the roster that names its owner (show the tile then),
  // and linger a moment after they left our space (never play it then).
  el.hidden = !participant;
  const video = el.querySelector('video');
  if (video.muted !== !participant) video.muted = !participant;
  el.querySelector('.tile-name').textContent = name;
  el.querySelector('.avatar').textContent = initials(name);
  const videoTrack = tile.stream.getVideoTracks()[0];
  const hasMedia = tile.stream.getTracks().length > 0;
  const videoOff = Boolean(participant && (participant.videoMuted || participant.videoHardMuted));
  // Until the first frame is decoded the element is black: show the initials instead.
  const hasFrame = el.querySelector('video').videoWidth > 0;
  const showVideo = Boolean(videoTrack && !videoTrack.muted && !videoOff && hasFrame);
  el.classList.toggle('video-off', !showVideo);
  // Their connection dropped and the server holds their place: say so rather than vanish.
  const away = Boolean(participant && participant.reconnecting);
  el.classList.toggle('reconnecting', away);
  const connecting = el.querySelector('.connecting');
  connecting.textContent = away ? 'Reconnecting…' : 'Connecting…';
  // While we ourselves reconnect, the dimmed grid and the status say it once for everyone.
  connecting.hidden = !away && (hasMedia || videoOff || state.status === 'reconnecting');
  renderTileBadges(el, participant, participantId);
  el.setAttribute('aria-label', describe(name, participant, participantId));
}

export function renderTileBadges(el, p, participantId) {
  const role = el.querySelector('.role-badge');
  role.hidden = !(p && p.role === 'therapist');
  el.querySelector('.hand').hidden = !(p && p.handRaised);
  const mic = el.querySelector('.mic-off');
  mic.hidden = !(p && (p.audioMuted || p.audioHardMuted));
  mic.textContent = p && p.audioHardMuted ? 'Muted by therapist' : 'Mic off';
  const cam = el.querySelector('.cam-off');
  cam.hidden = !(p && (p.videoMuted || p.videoHardMuted));
  cam.textContent = p && p.videoHardMuted ? 'Camera off by therapist' : 'Camera off';
  el.classList.toggle('spotlit', Boolean(participantId) && state.room.spotlight === participantId);
  el.classList.toggle('hand-raised', Boolean(p && p.handRaised));
}

export function describe(name, p, participantId) {
  const parts = [name];
  if (p && p.role === 'therapist') parts.push('therapist');
  if (participantId && state.room.spotlight === participantId) parts.push('in the spotlight');
  if (p && p.reconnecting) parts.push('reconnecting');
  if (p && p.handRaised) parts.push('hand raised');
  if (p && p.audioHardMuted) parts.push('muted by the therapist');
  else if (p && p.audioMuted) parts.push('microphone off');
  if (p && (p.videoMuted || p.videoHardMuted)) parts.push('camera off');
  return parts.join(', ');
}

// Tile layout: try every column count and keep the one giving the largest tiles that still
// fit on screen (2 people side by side, 3 in a row on a laptop, 2+1 on a phone...). With a
// spotlight, that person spans the full width on top and the others form a strip below.
// CSS alone cannot size by both the number of tiles and the viewport height.
const MIN_TILE_WIDTH = 150; // px; below this faces get too small, so the page scrolls instead
const TILE_ASPECT = 4 / 3;
const TILE_GAP = 12;

// Side-by-side spotlight, if the stage is wide enough for a large spotlight plus a column of
// others at least SIDE_MIN_WIDTH wide; the layout with the largest spotlight wins.
const SIDE_MIN_WIDTH = 110;
const SIDE_MAX_WIDTH = 240;

function spotlightSide(others, width, height) {
  let best = null;
  for (let cols = 1; cols <= 3; cols += 1) {
    const rows = Math.ceil(others / cols);
    const byHeight = ((height - TILE_GAP * (rows - 1)) / rows) * TILE_ASPECT;
    const tileWidth = Math.min(SIDE_MAX_WIDTH, byHeight);
    const spotWidth = Math.min(width - TILE_GAP * cols - tileWidth * cols, height * TILE_ASPECT);
    if (tileWidth < SIDE_MIN_WIDTH || spotWidth < 2 * tileWidth || spotWidth < 320) continue;
    if (!best || spotWidth > best.spotWidth) best = { cols, rows, tileWidth, spotWidth };
  }
  return best;
}

const WIDE = window.matchMedia('(min-width: 60rem)');

// On wide screens the sidebar sits beside the tiles and scrolls on its own, sized to end just
// above the controls bar, so every therapist control is reachable.
export function sizeSidebar() {
  if (!WIDE.matches || ui.views.call.hidden || ui.roomPanel.hidden) {
    ui.sidebar.style.maxHeight = '';
    return;
  }
  const top = Math.max(ui.sidebar.getBoundingClientRect().top, 8);
  const available = window.innerHeight - top - ui.controls.offsetHeight - 24;
  ui.sidebar.style.maxHeight = `${Math.max(240, Math.floor(available))}px`;
}

export function layoutTiles() {
  sizeSidebar();
  if (ui.views.call.hidden || ui.roomPanel.hidden) return;
  const visible = [...ui.tiles.children].filter((el) => !el.hidden);
  const count = Math.max(1, visible.length);
  const width = ui.stage.clientWidth;
  const top = ui.tiles.getBoundingClientRect().top + window.scrollY;
  const controls = ui.controls.offsetHeight;
  const height = Math.max(200, window.innerHeight - top - controls - 40);
  const maxCols = Math.max(1, Math.floor((width + TILE_GAP) / (MIN_TILE_WIDTH + TILE_GAP)));
  const spotlit = visible.find((el) => el.classList.contains('spotlit'));
  const spotlight = Boolean(spotlit) && count > 1;
  const side = spotlight ? spotlightSide(count - 1, width, height) : null;
  ui.tiles.classList.toggle('spotlight-mode', spotlight);
  ui.tiles.classList.toggle('spotlight-side', Boolean(side));
  ui.tiles.classList.toggle('spotlight-stack', spotlight && !side);
  if (side) {
    // Speaker view: the spotlight large on the left, everyone else in a column beside it.
    ui.tiles.style.setProperty('--side-cols', String(side.cols));
    ui.tiles.style.setProperty('--side-rows', String(side.rows));
    ui.tiles.style.setProperty('--side-w', `${Math.floor(side.tileWidth)}px`);
    ui.tiles.style.setProperty('--spot-w', `${Math.floor(side.spotWidth)}px`);
    ui.tiles.style.maxWidth = `${Math.ceil(side.spotWidth + TILE_GAP * side.cols + side.tileWidth * side.cols)}px`;
    return;
  }
  if (spotlight) {
    // Narrow screens: the spotlight full width on top, the others in a strip below, kept
    // small (at least three columns' worth) so the spotlight stands out.
    const others = count - 1;
    const cols = Math.max(1, Math.min(Math.max(3, others), maxCols));
    const rows = Math.ceil(others / cols);
    // Height for width W: W / ASPECT + rows * ((W - gaps) / cols) / ASPECT + row gaps.
    const perW = 1 / TILE_ASPECT + rows / (cols * TILE_ASPECT);
    const fixed = TILE_GAP * rows - (rows * TILE_GAP * (cols - 1)) / (cols * TILE_ASPECT);
    const fit = (height - fixed) / perW;
    const tilesWidth = Math.min(width, Math.max(MIN_TILE_WIDTH * Math.min(cols, 2), fit));
    ui.tiles.style.setProperty('--cols', String(cols));
    ui.tiles.style.maxWidth = `${Math.floor(tilesWidth)}px`;
    return;
  }
  let best = { cols: 1, tileWidth: 0 };
  for (let cols = 1; cols <= Math.min(count, maxCols); cols += 1) {
    const rows = Math.ceil(count / cols);
    const byWidth = (width - TILE_GAP * (cols - 1)) / cols;
    const byHeight = ((height - TILE_GAP * (rows - 1)) / rows) * TILE_ASPECT;
    const tileWidth = Math.min(byWidth, byHeight);
    if (tileWidth > best.tileWidth) best = { cols, tileWidth };
  }
  const tileWidth = Math.max(MIN_TILE_WIDTH, best.tileWidth);
  ui.tiles.style.setProperty('--cols', String(best.cols));
  ui.tiles.style.maxWidth = `${Math.floor(tileWidth * best.cols + TILE_GAP * (best.cols - 1))}px`;
}

on('activeSpeaker', (m) => onActiveSpeaker(m.participantId || null));
