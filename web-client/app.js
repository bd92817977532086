// Hearth web client: joins a room over the signaling websocket and exchanges media with the
// server's SFU through a single RTCPeerConnection. Plain browser JS, no build step.
//
// Negotiation follows the "perfect negotiation" pattern with this client as the POLITE peer:
// when an offer from the server collides with one of ours, ours gives way (implicit rollback).
// The server is impolite and drops our colliding offer, so we simply offer again once the
// browser tells us negotiation is still needed.
'use strict';

(() => {
  const PROTOCOL_VERSION = 1;
  const PING_INTERVAL_MS = 20_000;
  // Two missed pings without any message from the server means the socket is dead even if the
  // browser has not noticed yet (phones switching networks do this a lot).
  const SILENCE_LIMIT_MS = 50_000;
  const RECONNECT_BASE_MS = 1_000;
  const RECONNECT_MAX_MS = 15_000;
  // If the server never answers an offer of ours (it drops offers that collide with its own),
  // we roll back after this long so negotiation can start over instead of hanging.
  const OFFER_ANSWER_TIMEOUT_MS = 10_000;
  const LOG_LIMIT = 500;
  // Join errors that retrying cannot fix: send the person back to the form with the message.
  const FATAL_JOIN_ERRORS = new Set([
    'invalid_field', 'invalid_message', 'room_full', 'unsupported_version', 'already_joined',
  ]);
  // Same rule as the server's RoomId, checked here so a typo gets a friendly message.
  const ROOM_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
  // Plain-language versions of the server's error codes; the server's text is the fallback.
  const FRIENDLY_ERRORS = {
    room_full: 'This room is full at the moment. Please check with your facilitator.',
    unsupported_version: 'This page is out of date. Please reload it and join again.',
    shutting_down: 'The server is restarting. We will reconnect you in a moment.',
    negotiation: 'The video connection had a problem. Reconnecting you…',
    internal: 'Something went wrong on our side. Please try again in a moment.',
  };

  // Everything that changes lives here, so there is one place to look when debugging.
  const state = {
    status: 'idle', // 'idle' | 'connecting' | 'joined' | 'reconnecting' | 'left'
    roomId: '',
    name: '',
    ws: null,
    pc: null,
    participantId: null,
    iceServers: [],
    participants: new Map(), // participantId -> { id, name, audioMuted, videoMuted }
    streamOwners: new Map(), // streamId -> participantId, from trackPublished
    localStream: null,
    audioMuted: false,
    videoMuted: false,
    makingOffer: false,
    offerTimer: null,
    pendingCandidates: [], // remote candidates that arrived before a remote description
    signalChain: Promise.resolve(), // SDP/ICE messages are applied one at a time, in order
    reconnectAttempt: 0,
    reconnectTimer: null,
    pingTimer: null,
    lastHeardAt: 0,
    log: [],
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'),
    alert: $('alert'),
    announcer: $('announcer'),
    joinView: $('join-view'),
    joinHeading: $('join-heading'),
    joinForm: $('join-form'),
    joinButton: $('join-button'),
    roomInput: $('room-input'),
    nameInput: $('name-input'),
    roomView: $('room-view'),
    roomHeading: $('room-heading'),
    roomName: $('room-name'),
    peopleCount: $('people-count'),
    tiles: $('tiles'),
    localTile: $('local-tile'),
    localVideo: $('local-video'),
    tileTemplate: $('tile-template'),
    micButton: $('mic-button'),
    camButton: $('cam-button'),
    leaveButton: $('leave-button'),
    controls: $('controls'),
    soundButton: $('sound-button'),
  };

  // ---------------------------------------------------------------------------------------
  // Logging: kept in memory so tests and support can read what happened (window.hearth.log).

  function log(...parts) {
    const line = `${new Date().toISOString().slice(11, 23)} ${parts.map(String).join(' ')}`;
    state.log.push(line);
    if (state.log.length > LOG_LIMIT) state.log.shift();
    console.debug('[hearth]', line);
  }

  // ---------------------------------------------------------------------------------------
  // Status, alerts and announcements.

  const STATUS_TEXT = {
    idle: 'Not connected yet.',
    connecting: 'Connecting…',
    joined: "You're in the room.",
    reconnecting: 'Reconnecting…',
    left: 'You left the room. Take care.',
  };

  function setStatus(status, text) {
    state.status = status;
    ui.status.dataset.state = status;
    ui.status.textContent = text || STATUS_TEXT[status];
    const inRoom = status === 'connecting' || status === 'joined' || status === 'reconnecting';
    showView(inRoom ? 'room' : 'join');
  }

  function showView(which) {
    const wasRoom = !ui.roomView.hidden;
    ui.joinView.hidden = which !== 'join';
    ui.roomView.hidden = which !== 'room';
    // Move focus with the view, otherwise keyboard and screen reader users are left on a
    // button that no longer exists.
    if (which === 'room' && !wasRoom) {
      layoutTiles();
      ui.roomHeading.focus();
    }
    if (which === 'join' && wasRoom) ui.joinHeading.focus();
  }

  function showAlert(message) {
    ui.alert.textContent = message;
  }

  function clearAlert() {
    ui.alert.textContent = '';
  }

  function announce(message) {
    // Clearing first makes repeated identical messages ("Sam joined" twice) announce again.
    ui.announcer.textContent = '';
    setTimeout(() => { ui.announcer.textContent = message; }, 50);
  }

  // ---------------------------------------------------------------------------------------
  // Websocket signaling.

  function socketUrl() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${scheme}//${location.host}/ws`;
  }

  function send(message) {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      log('not sent (socket not open):', message.type);
      return false;
    }
    ws.send(JSON.stringify(message));
    return true;
  }

  function openSocket() {
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    const ws = new WebSocket(socketUrl());
    state.ws = ws;
    log('opening websocket', ws.url);
    // Every handler checks `ws === state.ws` so events from an abandoned socket are ignored.
    ws.onopen = () => {
      if (ws !== state.ws) return;
      log('websocket open; joining', state.roomId);
      state.lastHeardAt = Date.now();
      startPing();
      send({
        type: 'join',
        protocolVersion: PROTOCOL_VERSION,
        roomId: state.roomId,
        name: state.name,
      });
    };
    ws.onmessage = (event) => {
      if (ws !== state.ws) return;
      state.lastHeardAt = Date.now();
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (err) {
        log('unparseable message from server', err);
        return;
      }
      handleMessage(message);
    };
    ws.onclose = (event) => {
      if (ws !== state.ws) return;
      log('websocket closed', event.code, event.reason || '');
      onSocketLost();
    };
    ws.onerror = () => log('websocket error');
  }

  function closeSocket() {
    const ws = state.ws;
    state.ws = null;
    stopPing();
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, 'bye');
  }

  function onSocketLost() {
    state.ws = null;
    stopPing();
    teardownPeer();
    clearRemoteTiles();
    if (state.status === 'connecting' || state.status === 'joined' || state.status === 'reconnecting') {
      // The roster is unknown until we are back; don't show a stale head count meanwhile.
      ui.peopleCount.textContent = 'Others will reappear here once you are reconnected.';
      scheduleReconnect();
    }
  }

  function scheduleReconnect() {
    setStatus('reconnecting');
    // Exponential backoff with jitter so a restarted server is not hit by everyone at once.
    const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** state.reconnectAttempt);
    const delay = Math.round(ceiling * (0.5 + Math.random() * 0.5));
    state.reconnectAttempt += 1;
    log(`reconnect attempt ${state.reconnectAttempt} in ${delay} ms`);
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = setTimeout(openSocket, delay);
  }

  function startPing() {
    stopPing();
    state.pingTimer = setInterval(() => {
      if (Date.now() - state.lastHeardAt > SILENCE_LIMIT_MS) {
        restartConnection('server silent for too long');
        return;
      }
      send({ type: 'ping' });
    }, PING_INTERVAL_MS);
  }

  function stopPing() {
    clearInterval(state.pingTimer);
    state.pingTimer = null;
  }

  // ---------------------------------------------------------------------------------------
  // Server messages.

  function handleMessage(message) {
    switch (message.type) {
      case 'joined': return onJoined(message);
      case 'participantJoined': return onParticipantJoined(message.participant);
      case 'participantLeft': return onParticipantLeft(message.participantId);
      case 'participantUpdated': return onParticipantUpdated(message.participant);
      case 'trackPublished': return onTrackPublished(message);
      case 'offer': return queueSignal(() => onRemoteOffer(message.sdp));
      case 'answer': return queueSignal(() => onRemoteAnswer(message.sdp));
      case 'iceCandidate': return queueSignal(() => onRemoteCandidate(message.candidate));
      case 'pong': return undefined; // lastHeardAt is already updated
      case 'error': return onServerError(message);
      case 'goodbye': return onGoodbye(message);
      default:
        log('ignoring unknown message type', message.type);
        return undefined;
    }
  }

  function onJoined(message) {
    log('joined as', message.participantId);
    state.participantId = message.participantId;
    state.iceServers = message.iceServers || [];
    state.participants.clear();
    state.streamOwners.clear();
    for (const p of message.participants || []) {
      if (p.id !== state.participantId) state.participants.set(p.id, p);
    }
    clearAlert();
    setStatus('joined');
    ui.localTile.dataset.participantId = state.participantId;
    renderRoster();
    startPeer();
  }

  function onParticipantJoined(participant) {
    if (!participant || participant.id === state.participantId) return;
    state.participants.set(participant.id, participant);
    renderRoster();
    announce(`${participant.name} joined the room.`);
  }

  function onParticipantLeft(participantId) {
    const participant = state.participants.get(participantId);
    state.participants.delete(participantId);
    for (const [streamId, owner] of state.streamOwners) {
      if (owner === participantId) state.streamOwners.delete(streamId);
    }
    removeTile(participantId);
    renderRoster();
    if (participant) announce(`${participant.name} left the room.`);
  }

  function onParticipantUpdated(participant) {
    if (!participant || participant.id === state.participantId) return;
    state.participants.set(participant.id, participant);
    renderRoster();
  }

  function onTrackPublished(message) {
    // The SDP only carries stream ids; this tells us whose stream it is.
    state.streamOwners.set(message.streamId, message.participantId);
  }

  function onServerError(message) {
    log('server error', message.code, message.message);
    const text = message.code === 'invalid_field'
      ? `Please check what you entered: ${message.message}.`
      : FRIENDLY_ERRORS[message.code] || message.message || 'Something went wrong.';
    const joining = state.status === 'connecting' || state.status === 'reconnecting';
    if (joining && FATAL_JOIN_ERRORS.has(message.code)) {
      // Retrying cannot help (bad room name, room full...): back to the form.
      stopSession();
      setStatus('idle', 'Not connected.');
      showAlert(text);
      return;
    }
    if ((joining && message.code === 'shutting_down') || message.code === 'negotiation') {
      // The server gave up on this connection's media (or is restarting): a fresh join,
      // with backoff, is the way back.
      showAlert(text);
      restartConnection('server error ' + message.code);
      return;
    }
    showAlert(text);
  }

  function restartConnection(why) {
    log('restarting connection:', why);
    const ws = state.ws;
    onSocketLost();
    if (ws) ws.close(1000, 'restart');
  }

  function onGoodbye(message) {
    log('goodbye:', message.reason);
    // The socket closes next; onclose starts reconnecting because the server usually returns.
    showAlert(`The server is going offline for a moment (${message.reason}). `
      + "We'll reconnect you automatically when it's back.");
  }

  // ---------------------------------------------------------------------------------------
  // Peer connection and negotiation.

  function startPeer() {
    teardownPeer();
    const pc = new RTCPeerConnection({ iceServers: state.iceServers });
    state.pc = pc;
    state.makingOffer = false;
    state.pendingCandidates = [];
    state.signalChain = Promise.resolve();

    pc.onnegotiationneeded = () => makeOffer(pc);
    pc.onicecandidate = ({ candidate }) => {
      if (pc !== state.pc) return;
      // A null candidate means gathering finished; the protocol spells that as an empty string.
      const init = candidate ? candidate.toJSON() : { candidate: '' };
      send({ type: 'iceCandidate', candidate: init });
    };
    pc.ontrack = (event) => onRemoteTrack(event);
    pc.onconnectionstatechange = () => {
      log('peer connection', pc.connectionState);
      if (pc !== state.pc) return;
      // Only a working media connection counts as recovered; resetting the backoff on
      // `joined` alone would let a join-then-fail loop retry at full speed forever.
      if (pc.connectionState === 'connected') state.reconnectAttempt = 0;
      // No ICE restart support on the server yet: a clean re-join is the reliable cure.
      if (pc.connectionState === 'failed') restartConnection('media connection failed');
    };
    pc.onsignalingstatechange = () => log('signaling', pc.signalingState);

    addLocalMedia(pc);
  }

  async function addLocalMedia(pc) {
    const stream = await ensureLocalMedia();
    if (pc !== state.pc) return;
    if (stream && stream.getTracks().length > 0) {
      for (const track of stream.getTracks()) pc.addTrack(track, stream);
      // Rejoining after a drop: tell the room about mutes that survived the reconnect.
      if (state.audioMuted) send({ type: 'setMute', kind: 'audio', muted: true });
      if (state.videoMuted) send({ type: 'setMute', kind: 'video', muted: true });
    } else {
      // Without a camera or microphone we still want to see and hear the others, and an offer
      // of our own is what sets up the connection.
      pc.addTransceiver('audio', { direction: 'recvonly' });
      pc.addTransceiver('video', { direction: 'recvonly' });
    }
  }

  async function makeOffer(pc) {
    if (pc !== state.pc) return;
    try {
      state.makingOffer = true;
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

  function teardownPeer() {
    clearTimeout(state.offerTimer);
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

  // ---------------------------------------------------------------------------------------
  // Local media.

  async function ensureLocalMedia() {
    const live = state.localStream && state.localStream.getTracks().some((t) => t.readyState === 'live');
    if (live) return state.localStream;
    // Try the full set first, then fall back so a broken camera does not keep someone out.
    const attempts = [
      { audio: { echoCancellation: true, noiseSuppression: true }, video: { width: { ideal: 640 }, height: { ideal: 480 }, facingMode: 'user' } },
      { audio: { echoCancellation: true, noiseSuppression: true }, video: false },
      { audio: false, video: true },
    ];
    let lastError = null;
    for (const constraints of attempts) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia(constraints);
        state.localStream = stream;
        applyLocalMutes();
        ui.localVideo.srcObject = stream;
        ui.localVideo.play().catch(() => {});
        renderLocalTile();
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

  function stopLocalMedia() {
    // Turning the camera light off when leaving matters: people need to trust it is off.
    if (state.localStream) for (const track of state.localStream.getTracks()) track.stop();
    state.localStream = null;
    ui.localVideo.srcObject = null;
  }

  function applyLocalMutes() {
    const stream = state.localStream;
    if (!stream) return;
    for (const track of stream.getAudioTracks()) track.enabled = !state.audioMuted;
    for (const track of stream.getVideoTracks()) track.enabled = !state.videoMuted;
  }

  function toggleMute(kind) {
    if (kind === 'audio') state.audioMuted = !state.audioMuted;
    else state.videoMuted = !state.videoMuted;
    const muted = kind === 'audio' ? state.audioMuted : state.videoMuted;
    applyLocalMutes();
    // Before `joined` the server would reject this; addLocalMedia sends it after joining.
    if (state.status === 'joined') send({ type: 'setMute', kind, muted });
    renderLocalTile();
    announce(kind === 'audio'
      ? (muted ? 'Your microphone is off.' : 'Your microphone is on.')
      : (muted ? 'Your camera is off.' : 'Your camera is on.'));
  }

  // ---------------------------------------------------------------------------------------
  // Remote media and tiles.

  function onRemoteTrack(event) {
    const track = event.track;
    const remoteStream = event.streams[0];
    const streamId = remoteStream ? remoteStream.id : null;
    const owner = (streamId && state.streamOwners.get(streamId)) || streamId;
    log('remote', track.kind, 'track for', owner);
    if (!owner) return;
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

  function playWithSound(video) {
    video.play().catch((err) => {
      // Autoplay policy: sound may need a click. Offer one obvious button instead of silence.
      log('autoplay blocked', err && err.name);
      ui.soundButton.hidden = false;
    });
  }

  const tiles = new Map(); // participantId -> { element, stream }

  function ensureTile(participantId) {
    let tile = tiles.get(participantId);
    if (tile) return tile;
    const element = ui.tileTemplate.content.firstElementChild.cloneNode(true);
    element.dataset.participantId = participantId;
    tile = { element, stream: new MediaStream() };
    tiles.set(participantId, tile);
    ui.tiles.appendChild(element);
    layoutTiles();
    return tile;
  }

  function removeTile(participantId) {
    const tile = tiles.get(participantId);
    if (!tile) return;
    const video = tile.element.querySelector('video');
    video.srcObject = null;
    tile.element.remove();
    tiles.delete(participantId);
    layoutTiles();
  }

  function clearRemoteTiles() {
    for (const id of [...tiles.keys()]) removeTile(id);
  }

  function initials(name) {
    const words = String(name || '').trim().split(/\s+/).filter(Boolean);
    const letters = words.slice(0, 2).map((w) => Array.from(w)[0].toUpperCase());
    return letters.join('') || '?';
  }

  function renderTile(participantId) {
    const tile = tiles.get(participantId);
    const participant = state.participants.get(participantId);
    if (!tile) return;
    const name = participant ? participant.name : 'Someone';
    const el = tile.element;
    el.querySelector('.tile-name').textContent = name;
    el.querySelector('.avatar').textContent = initials(name);
    const videoTrack = tile.stream.getVideoTracks()[0];
    const hasMedia = tile.stream.getTracks().length > 0;
    const videoOff = participant ? participant.videoMuted : false;
    const showVideo = Boolean(videoTrack && !videoTrack.muted && !videoOff);
    el.classList.toggle('video-off', !showVideo);
    el.querySelector('.connecting').hidden = hasMedia || videoOff;
    el.querySelector('.mic-off').hidden = !(participant && participant.audioMuted);
    el.querySelector('.cam-off').hidden = !videoOff;
    el.setAttribute('aria-label', describe(name, participant));
  }

  function describe(name, participant) {
    if (!participant) return name;
    const parts = [name];
    if (participant.audioMuted) parts.push('microphone off');
    if (participant.videoMuted) parts.push('camera off');
    return parts.join(', ');
  }

  function renderLocalTile() {
    const el = ui.localTile;
    const stream = state.localStream;
    const hasVideo = Boolean(stream && stream.getVideoTracks().length);
    const hasAudio = Boolean(stream && stream.getAudioTracks().length);
    el.querySelector('.avatar').textContent = initials(state.name);
    el.querySelector('.tile-name').textContent = state.name ? `You (${state.name})` : 'You';
    el.classList.toggle('video-off', !hasVideo || state.videoMuted);
    el.querySelector('.mic-off').hidden = hasAudio && !state.audioMuted;
    el.querySelector('.cam-off').hidden = hasVideo && !state.videoMuted;
    el.setAttribute('aria-label', describe('You', {
      audioMuted: !hasAudio || state.audioMuted,
      videoMuted: !hasVideo || state.videoMuted,
    }));
    ui.micButton.setAttribute('aria-pressed', String(state.audioMuted));
    ui.camButton.setAttribute('aria-pressed', String(state.videoMuted));
    // Before media is known we leave the buttons usable so a choice can be made up front.
    ui.micButton.disabled = Boolean(stream) && !hasAudio;
    ui.camButton.disabled = Boolean(stream) && !hasVideo;
  }

  // Tile layout: try every column count and keep the one giving the largest tiles that still
  // fit on screen (2 people side by side, 3 in a row on a laptop, 2+1 on a phone...).
  // CSS alone cannot size by both the number of tiles and the viewport height.
  const MIN_TILE_WIDTH = 150; // px; below this faces get too small, so the page scrolls instead
  const TILE_ASPECT = 4 / 3;
  const TILE_GAP = 12;

  function layoutTiles() {
    if (ui.roomView.hidden) return;
    const count = Math.max(1, ui.tiles.children.length);
    const width = ui.roomView.clientWidth;
    const top = ui.tiles.getBoundingClientRect().top + window.scrollY;
    const height = Math.max(180, window.innerHeight - top - ui.controls.offsetHeight - 40);
    const maxCols = Math.max(1, Math.floor((width + TILE_GAP) / (MIN_TILE_WIDTH + TILE_GAP)));
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

  function renderRoster() {
    // Everyone in the roster gets a tile straight away, showing their name while media starts.
    // Tiles are only removed on participantLeft, so a track that arrives just before its
    // owner's participantJoined keeps its tile.
    for (const id of state.participants.keys()) ensureTile(id);
    for (const id of tiles.keys()) renderTile(id);
    const count = state.participants.size + 1;
    ui.peopleCount.textContent = count === 1
      ? 'Just you so far. Others will appear here when they join.'
      : `${count} people here, including you.`;
    ui.roomName.textContent = state.roomId;
    layoutTiles();
  }

  // ---------------------------------------------------------------------------------------
  // Joining and leaving.

  function startSession(roomId, name) {
    state.roomId = roomId;
    state.name = name;
    state.reconnectAttempt = 0;
    clearAlert();
    ui.roomName.textContent = roomId;
    ui.peopleCount.textContent = '';
    renderLocalTile();
    setStatus('connecting');
    openSocket();
  }

  function stopSession() {
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    closeSocket();
    teardownPeer();
    clearRemoteTiles();
    stopLocalMedia();
    state.participants.clear();
    state.streamOwners.clear();
    state.participantId = null;
    ui.soundButton.hidden = true;
  }

  function leave() {
    log('leaving');
    send({ type: 'leave' });
    stopSession();
    clearAlert();
    setStatus('left');
  }

  function onJoinSubmit(event) {
    event.preventDefault();
    const roomId = ui.roomInput.value.trim();
    const name = ui.nameInput.value.trim();
    // Native validation bubbles vary by browser and vanish quickly; say it plainly instead.
    const problem = !roomId ? ['Please enter the room name.', ui.roomInput]
      : !ROOM_ID_PATTERN.test(roomId)
        ? ['Room names use only letters, numbers, dots (.), dashes (-) and underscores (_). '
          + 'Please check the name your facilitator gave you.', ui.roomInput]
        : !name ? ['Please enter your name.', ui.nameInput]
          : null;
    for (const input of [ui.roomInput, ui.nameInput]) input.removeAttribute('aria-invalid');
    if (problem) {
      showAlert(problem[0]);
      problem[1].setAttribute('aria-invalid', 'true');
      problem[1].focus();
      return;
    }
    startSession(roomId, name);
  }

  function init() {
    const room = new URLSearchParams(location.search).get('room');
    if (room) ui.roomInput.value = room;
    // We validate ourselves so the message lands in the calm alert area, not a browser bubble.
    ui.joinForm.noValidate = true;
    ui.joinForm.addEventListener('submit', onJoinSubmit);
    ui.micButton.addEventListener('click', () => toggleMute('audio'));
    ui.camButton.addEventListener('click', () => toggleMute('video'));
    ui.leaveButton.addEventListener('click', leave);
    ui.soundButton.addEventListener('click', () => {
      ui.soundButton.hidden = true;
      for (const video of ui.tiles.querySelectorAll('.tile.remote video')) playWithSound(video);
    });
    window.addEventListener('resize', layoutTiles);
    window.addEventListener('pagehide', () => {
      // Tell the room promptly instead of waiting for the server to notice the socket is gone.
      if (state.status === 'joined') send({ type: 'leave' });
    });
    renderLocalTile();
    setStatus('idle');
  }

  // Read-only view for tests and debugging; getters so it always reflects the current objects.
  window.hearth = Object.defineProperties({}, {
    pc: { get: () => state.pc, enumerable: true },
    participantId: { get: () => state.participantId, enumerable: true },
    ws: { get: () => state.ws, enumerable: true },
    state: { get: () => state.status, enumerable: true },
    participants: { get: () => [...state.participants.values()], enumerable: true },
    log: { get: () => state.log.slice(), enumerable: true },
  });

  init();
})();
