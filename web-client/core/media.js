// Local media: the camera and microphone (one getUserMedia at a time, shared by the lobby
// preview and the peer connection), our own mute choices, and the raised hand.
//
// `state.localStream` holds what we show ourselves and send. A video processor (core/blur.js)
// may put its own track there in the camera's place; it then owns the camera track, and a
// camera switch or leaving goes through it.

import { announce } from '../lib/announce.js';
import { emit } from './bus.js';
import { send } from './connection.js';
import { log } from './log.js';
import { renderLocalTile, renderModNotice } from './roster.js';
import { IN_CALL, state } from './state.js';
import { showAlert, ui } from './view.js';

// ---------------------------------------------------------------------------------------
// Local media.

// One request at a time: the lobby preview and the peer connection share the same stream.
export function ensureLocalMedia() {
  const live = state.localStream && state.localStream.getTracks().some((t) => t.readyState === 'live');
  if (live) return Promise.resolve(state.localStream);
  if (!state.mediaPromise) {
    state.mediaPromise = acquireLocalMedia().finally(() => { state.mediaPromise = null; });
  }
  return state.mediaPromise;
}

async function acquireLocalMedia() {
  // Try the full set first, then fall back so a broken camera does not keep someone out.
  const attempts = [
    { audio: { echoCancellation: true, noiseSuppression: true }, video: { width: { ideal: 1280 }, height: { ideal: 720 }, facingMode: 'user' } },
    { audio: { echoCancellation: true, noiseSuppression: true }, video: false },
    { audio: false, video: true },
  ];
  let lastError = null;
  for (const constraints of attempts) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia(constraints);
      if (!IN_CALL.has(state.status)) {
        // Left while the browser was asking: don't leave a camera running.
        for (const track of stream.getTracks()) track.stop();
        return null;
      }
      state.localStream = stream;
      applyLocalMutes();
      for (const video of [ui.localVideo, ui.previewVideo]) {
        video.srcObject = stream;
        video.play().catch(() => {});
      }
      renderLocalTile();
      emit('local:localMedia', stream);
      if (!constraints.video || !constraints.audio) {
        showAlert(constraints.video
          ? 'We could not use your microphone, so others will not hear you. You can still see and hear the group.'
          : 'We could not use your camera, so others will not see you. They can still hear you.');
      }
      return stream;
    } catch (err) {
      lastError = err;
      log('getUserMedia failed', JSON.stringify(constraints), err && err.name);
    }
  }
  state.localStream = null;
  renderLocalTile();
  showAlert('We could not use your camera or microphone. You can still see and hear the group. '
    + 'To take part, allow camera and microphone access in your browser settings, then rejoin.');
  log('no local media', lastError && lastError.name);
  return null;
}

export function stopLocalMedia() {
  // Turning the camera light off when leaving matters: people need to trust it is off.
  if (processor) processor.stop();
  if (state.localStream) for (const track of state.localStream.getTracks()) track.stop();
  state.localStream = null;
  ui.localVideo.srcObject = null;
  ui.previewVideo.srcObject = null;
}

export function applyLocalMutes() {
  const stream = state.localStream;
  if (!stream) return;
  for (const track of stream.getAudioTracks()) track.enabled = !state.audioMuted;
  for (const track of stream.getVideoTracks()) track.enabled = !state.videoMuted;
}

export function toggleMute(kind) {
  const hard = kind === 'audio' ? state.audioHardMuted : state.videoHardMuted;
  const muted = !(kind === 'audio' ? state.audioMuted : state.videoMuted);
  if (!muted && hard) return; // the button is disabled; this is belt and braces
  if (kind === 'audio') state.audioMuted = muted;
  else state.videoMuted = muted;
  state.modNotes[kind] = ''; // they acted on it; the note has done its job
  applyLocalMutes();
  // Before admission the server would refuse this; onAdmitted sends it then.
  if (state.admitted && state.status === 'joined') send({ type: 'setMute', kind, muted });
  renderLocalTile();
  renderModNotice();
  announce(kind === 'audio'
    ? (muted ? 'Your microphone is off.' : 'Your microphone is on.')
    : (muted ? 'Your camera is off.' : 'Your camera is on.'));
}

export function toggleHand() {
  if (state.status !== 'joined') return;
  // The button follows the server's answer (participantUpdated), not our guess.
  if (state.handRaised) send({ type: 'lowerHand' });
  else send({ type: 'raiseHand' });
}

// ---------------------------------------------------------------------------------------
// Choosing another camera or microphone (features/devices.js): the new track takes the old
// one's place in the stream and, without renegotiating, in the peer connection.

export async function switchDevice(kind, deviceId) {
  const stream = state.localStream;
  if (!stream) throw new Error('no camera or microphone in use');
  const constraints = kind === 'audio'
    ? { audio: { deviceId: { exact: deviceId }, echoCancellation: true, noiseSuppression: true } }
    : { video: { deviceId: { exact: deviceId }, width: { ideal: 1280 }, height: { ideal: 720 } } };
  const fresh = await navigator.mediaDevices.getUserMedia(constraints);
  const track = fresh.getTracks()[0];
  if (kind === 'video' && processor) {
    // The processed track stays where it is (sender, self-view); only its source changes.
    processor.useCamera(track);
    applyLocalMutes();
    log('switched', kind, 'device');
    return track;
  }
  const old = kind === 'audio' ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0];
  await putInPlace(old, track);
  if (old) old.stop();
  log('switched', kind, 'device');
  return track;
}

/**
 * Puts `track` where `old` was (or adds it): on every sender that sent `old` (replaceTrack: no
 * renegotiation, and an end-to-end encryption transform stays on the sender) and in our stream
 * (the self-view and preview follow it). Neither stops nor disables `old`.
 */
async function putInPlace(old, track) {
  const senders = state.pc && old ? state.pc.getSenders().filter((s) => s.track === old) : [];
  for (const sender of senders) await sender.replaceTrack(track);
  if (old) state.localStream.removeTrack(old);
  state.localStream.addTrack(track);
  applyLocalMutes();
}

// ---------------------------------------------------------------------------------------
// A video processor (core/blur.js): `{ useCamera(track), stop() }`. While one is set, the
// stream's video track is its output and the camera track is its to keep or stop.

let processor = null;

/** Sets (or, with null, clears) the processor a camera switch and leaving go through. */
export function setVideoProcessor(p) {
  processor = p;
}

/** Puts `track` where our outgoing video track was (see putInPlace); returns the track it replaced. */
export async function swapLocalVideo(track) {
  const stream = state.localStream;
  const old = stream && stream.getVideoTracks()[0];
  if (!stream || !old) throw new Error('no camera in use');
  if (old !== track) await putInPlace(old, track);
  return old;
}
