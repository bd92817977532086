// The RTCPeerConnection to the server's SFU, and its negotiation.
//
// Negotiation follows the "perfect negotiation" pattern with this client as the POLITE peer:
// when an offer from the server collides with one of ours, ours gives way (implicit rollback).
// The server is impolite and drops our colliding offer, so we simply offer again once the
// browser tells us negotiation is still needed. The camera is published as simulcast layers.
// In an end-to-end encrypted room every sender and receiver is piped through the frame
// worker (e2ee/frames.js) before any media flows, and only VP8 and Opus are offered.

import { emit, on } from './bus.js';
import { restartConnection, send } from './connection.js';
import { log } from './log.js';
import { ensureLocalMedia } from './media.js';
import { attachAll, attachReceiver, chooseTransformApi, peerConfig, transformApi } from '../e2ee/frames.js';
import { IN_CALL, publishes, state } from './state.js';
import { onRemoteTrack } from './tiles.js';

// If the server never answers an offer of ours (it drops offers that collide with its own),
// we roll back after this long so negotiation can start over instead of hanging.
const OFFER_ANSWER_TIMEOUT_MS = 10_000;

// ---------------------------------------------------------------------------------------
// Peer connection and negotiation.

const encrypted = new WeakSet(); // peer connections of end-to-end encrypted rooms

export function startPeer() {
  teardownPeer();
  const e2ee = Boolean(state.room.e2ee && state.room.e2ee !== 'off');
  const generation = {};
  state.peerGeneration = generation;
  state.makingOffer = false;
  state.pendingCandidates = [];
  state.iceRestarted = false;
  if (!e2ee || transformApi()) {
    state.signalChain = Promise.resolve();
    createPeer(e2ee);
    return;
  }
  // The encryption API must be known before the connection exists; the server's offers and
  // candidates wait in the signal chain until it does.
  state.signalChain = chooseTransformApi()
    .then(() => {
      if (state.peerGeneration === generation && IN_CALL.has(state.status)) createPeer(e2ee);
    })
    .catch((err) => log('could not start the peer connection', err));
}

function createPeer(e2ee) {
  const pc = new RTCPeerConnection({ iceServers: state.iceServers, ...(e2ee ? peerConfig() : {}) });
  if (e2ee) encrypted.add(pc);
  state.pc = pc;

  pc.onnegotiationneeded = () => makeOffer(pc);
  pc.onicecandidate = ({ candidate }) => {
    if (pc !== state.pc) return;
    // A null candidate means gathering finished; the protocol spells that as an empty string.
    const init = candidate ? candidate.toJSON() : { candidate: '' };
    send({ type: 'iceCandidate', candidate: init });
  };
  pc.ontrack = (event) => {
    if (encrypted.has(pc)) attachReceiver(event.receiver);
    onRemoteTrack(event);
  };
  pc.onconnectionstatechange = () => {
    log('peer connection', pc.connectionState);
    if (pc !== state.pc) return;
    // Only a working media connection counts as recovered; resetting the backoff on
    // `joined` alone would let a join-then-fail loop retry at full speed forever.
    if (pc.connectionState === 'connected') {
      state.reconnectAttempt = 0;
      state.iceRestarted = false;
    }
    // Only the media path broke (the websocket is fine): an ICE restart keeps the same
    // connection and everyone's tiles. A clean re-join is the fallback if that fails too.
    if (pc.connectionState === 'disconnected' || pc.connectionState === 'failed') {
      const wait = pc.connectionState === 'failed' ? 0 : 3000;
      setTimeout(() => {
        if (pc !== state.pc || pc.connectionState === 'connected') return;
        if (!state.iceRestarted) {
          state.iceRestarted = true;
          log('restarting ICE');
          pc.restartIce();
          setTimeout(() => {
            if (pc === state.pc && pc.connectionState !== 'connected') restartConnection('media connection failed');
          }, 10000);
        }
      }, wait);
    }
  };
  pc.onsignalingstatechange = () => log('signaling', pc.signalingState);

  // features/network.js watches whether (and how) this connection comes up.
  emit('local:peerStarted', pc);
  addLocalMedia(pc);
}

async function addLocalMedia(pc) {
  const stream = publishes() ? await ensureLocalMedia() : null;
  if (pc !== state.pc) return;
  if (stream && stream.getTracks().length > 0) {
    for (const track of stream.getTracks()) {
      if (track.kind === 'video' && addSimulcast(pc, track, stream)) continue;
      pc.addTrack(track, stream);
    }
  } else {
    // Observers, and people without a camera or microphone, still see and hear the others,
    // and an offer of our own is what sets up the connection.
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addTransceiver('video', { direction: 'recvonly' });
  }
  protect(pc);
}

// What a local track is to the frame worker: its key differs for microphone, camera and screen.
function contextOf(track) {
  if (track.kind === 'audio') return 'audio';
  return state.localStream && state.localStream.getVideoTracks().includes(track) ? 'camera' : 'screen';
}

// Encrypted rooms: pipe every sender and receiver not piped yet, and offer only VP8 and Opus
// (the clear bytes the SFU reads are VP8's; the server refuses other codecs there too).
function protect(pc) {
  if (!encrypted.has(pc)) return;
  attachAll(pc, contextOf);
  for (const t of pc.getTransceivers()) {
    if (t.currentDirection === 'stopped' || !t.setCodecPreferences) continue;
    const kind = t.receiver.track.kind;
    const wanted = kind === 'audio' ? 'audio/opus' : 'video/vp8';
    const codecs = (RTCRtpReceiver.getCapabilities(kind) || { codecs: [] }).codecs.filter((c) => c.mimeType.toLowerCase() === wanted);
    try {
      if (codecs.length) t.setCodecPreferences(codecs);
    } catch (err) {
      log('could not limit codecs', err && err.name);
    }
  }
}

// The camera as simulcast layers, so the server can send each person the one that fits their
// tile and their connection. How many depends on what the camera really delivers: three
// (quarter, half, full) from 540 lines up, two (half, full) from 360, else one plain track.
// (Asking a browser for more layers than the picture allows makes it drop the top one.)
const SIMULCAST_LAYERS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

function simulcastLayersFor(track) {
  const height = (track.getSettings && track.getSettings().height) || 0;
  if (height >= 540) return SIMULCAST_LAYERS;
  if (height >= 360) return SIMULCAST_LAYERS.slice(1);
  return null;
}

function addSimulcast(pc, track, stream) {
  const sendEncodings = simulcastLayersFor(track);
  if (!sendEncodings) return false;
  try {
    pc.addTransceiver(track, { direction: 'sendrecv', streams: [stream], sendEncodings });
    log('publishing', sendEncodings.length, 'simulcast layers');
    return true;
  } catch (err) {
    log('simulcast not available:', err && err.name);
    return false;
  }
}

async function makeOffer(pc) {
  if (pc !== state.pc) return;
  try {
    state.makingOffer = true;
    protect(pc);
    await pc.setLocalDescription();
    // A server offer may have rolled ours back while we were waiting; then there is nothing
    // to send and negotiationneeded will fire again when it is our turn.
    if (pc !== state.pc || pc.signalingState !== 'have-local-offer') return;
    log('sending offer');
    send({ type: 'offer', sdp: pc.localDescription.sdp });
    watchForAnswer(pc);
  } catch (err) {
    log('could not create offer', err);
  } finally {
    state.makingOffer = false;
  }
}

function watchForAnswer(pc) {
  clearTimeout(state.offerTimer);
  const offered = pc.localDescription;
  state.offerTimer = setTimeout(() => {
    if (pc !== state.pc || pc.signalingState !== 'have-local-offer') return;
    if (pc.localDescription.sdp !== offered.sdp) return;
    // Rolling back returns to stable; the browser then fires negotiationneeded again.
    log('no answer to our offer; rolling back to try again');
    queueSignal(() => pc.setLocalDescription({ type: 'rollback' }));
  }, OFFER_ANSWER_TIMEOUT_MS);
}

function queueSignal(task) {
  // Apply SDP and candidates strictly in arrival order; a failure must not block later ones.
  state.signalChain = state.signalChain.then(task).catch((err) => log('signaling step failed', err));
  return state.signalChain;
}

async function onRemoteOffer(sdp) {
  const pc = state.pc;
  if (!pc) return;
  const collision = state.makingOffer || pc.signalingState !== 'stable';
  if (collision) log('offer collision: we are polite, our offer gives way');
  clearTimeout(state.offerTimer);
  // In have-local-offer this rolls our offer back implicitly before applying theirs.
  await pc.setRemoteDescription({ type: 'offer', sdp });
  protect(pc);
  await flushCandidates(pc);
  await pc.setLocalDescription();
  if (pc !== state.pc) return;
  log('sending answer');
  send({ type: 'answer', sdp: pc.localDescription.sdp });
}

async function onRemoteAnswer(sdp) {
  const pc = state.pc;
  if (!pc) return;
  if (pc.signalingState !== 'have-local-offer') {
    // Our offer was rolled back after the server had already answered it: stale, drop it.
    log('ignoring answer in state', pc.signalingState);
    return;
  }
  clearTimeout(state.offerTimer);
  await pc.setRemoteDescription({ type: 'answer', sdp });
  await flushCandidates(pc);
}

async function onRemoteCandidate(candidate) {
  const pc = state.pc;
  if (!pc || !candidate) return;
  if (!pc.remoteDescription) {
    state.pendingCandidates.push(candidate);
    return;
  }
  await addCandidate(pc, candidate);
}

async function flushCandidates(pc) {
  const pending = state.pendingCandidates;
  state.pendingCandidates = [];
  for (const candidate of pending) await addCandidate(pc, candidate);
}

async function addCandidate(pc, candidate) {
  try {
    await pc.addIceCandidate(candidate);
  } catch (err) {
    // One bad candidate should not stop the others from working.
    log('could not add candidate', err);
  }
}

export function teardownPeer() {
  clearTimeout(state.offerTimer);
  state.peerGeneration = null;
  const pc = state.pc;
  state.pc = null;
  state.makingOffer = false;
  state.pendingCandidates = [];
  if (pc) {
    pc.ontrack = null;
    pc.onicecandidate = null;
    pc.onnegotiationneeded = null;
    pc.onconnectionstatechange = null;
    pc.close();
  }
}

on('offer', (m) => queueSignal(() => onRemoteOffer(m.sdp)));
on('answer', (m) => queueSignal(() => onRemoteAnswer(m.sdp)));
on('iceCandidate', (m) => queueSignal(() => onRemoteCandidate(m.candidate)));
