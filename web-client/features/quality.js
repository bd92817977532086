// Video quality per tile: tells the server how large each person's video is shown (so it sends
// the simulcast layer that fits, and nothing for a hidden tile), and shows a calm notice on a
// tile whose video the server paused to keep the audio going on a weak connection.

import { on } from '../core/bus.js';
import { send } from '../core/connection.js';
import { log } from '../core/log.js';

const cameraTrack = new Map(); // participantId -> server track id of their camera
const sent = new Map(); // trackId -> last maxHeight sent
const pending = new Map(); // trackId -> timer
const tiles = document.getElementById('tiles');

function tileOf(participantId) {
  return tiles.querySelector(`.tile.remote[data-participant-id="${CSS.escape(participantId)}"]`);
}

// Device pixels of the tile's height; 0 when it is not shown at all.
function heightOf(tile) {
  if (!tile || tile.hidden || tile.offsetParent === null) return 0;
  return Math.round(tile.getBoundingClientRect().height * (window.devicePixelRatio || 1));
}

function prefer(participantId) {
  const trackId = cameraTrack.get(participantId);
  if (!trackId) return;
  clearTimeout(pending.get(trackId));
  // Debounced: a window being resized says many sizes in a row.
  pending.set(trackId, setTimeout(() => {
    const maxHeight = heightOf(tileOf(participantId));
    if (sent.get(trackId) === maxHeight) return;
    sent.set(trackId, maxHeight);
    send({ type: 'setVideoPreference', trackId, maxHeight });
  }, 300));
}

// Browsers without ResizeObserver keep the server's default layer (nothing is sent).
if (typeof ResizeObserver !== 'undefined') start();

function start() {
  const observer = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const id = entry.target.dataset.participantId;
      if (id) prefer(id);
    }
  });

  function watch() {
    for (const tile of tiles.querySelectorAll('.tile.remote')) {
      if (!tile.dataset.qualityWatched) {
        tile.dataset.qualityWatched = '1';
        observer.observe(tile);
      }
      if (tile.dataset.participantId) prefer(tile.dataset.participantId);
    }
  }
  new MutationObserver(watch).observe(tiles, { childList: true, subtree: true, attributes: true, attributeFilter: ['hidden'] });

  on('trackPublished', (m) => {
    if (m.kind !== 'video' || m.source === 'screen') return;
    cameraTrack.set(m.participantId, m.trackId);
    sent.delete(m.trackId);
    watch();
  });

  on('videoState', (m) => {
    const owner = [...cameraTrack].find(([, t]) => t === m.trackId);
    const tile = owner && tileOf(owner[0]);
    if (!tile) return;
    const weak = Boolean(m.paused && m.reason === 'bandwidth');
    let note = tile.querySelector('.bw-paused');
    if (weak && !note) {
      note = document.createElement('p');
      note.className = 'bw-paused';
      note.textContent = 'Video paused to keep your audio clear';
      tile.querySelector('figure').appendChild(note);
    }
    if (note) note.hidden = !weak;
    tile.classList.toggle('video-paused-bw', weak);
    if (weak) log('video paused for bandwidth', m.trackId);
  });

  // A new connection starts over: the server knows no preference yet.
  on('joined', () => { sent.clear(); cameraTrack.clear(); });
}
