// Hearth web client: joins a room over the signaling websocket with a join token and exchanges
// media with the server's SFU through a single RTCPeerConnection. Plain browser JS, no build step.
//
// How someone gets a token: a join link (`#token=<jwt>` in the address), or, on a development
// server only, the join form (POST /dev/token). The token names the room, the person and their
// role; the server enforces every rule, this page only reflects what the server says.
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
  // How long a new arrival in the waiting room stays highlighted for the therapist.
  const ARRIVAL_HIGHLIGHT_MS = 10_000;
  const LOG_LIMIT = 500;
  // Same rule as the server's RoomId, checked here so a typo gets a friendly message.
  const ROOM_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

  // Join refusals that retrying cannot fix. The person sees the message and nothing retries.
  const FATAL_JOIN_ERRORS = new Set([
    'invalid_field', 'invalid_message', 'room_full', 'unsupported_version', 'already_joined',
    'token_missing', 'token_expired', 'token_invalid', 'token_wrong_room', 'room_locked', 'banned',
    'invalid_name',
  ]);
  // Plain-language versions of the server's error codes; the server's text is the fallback.
  const FRIENDLY_ERRORS = {
    room_full: 'This group is full at the moment. Please check with your therapist.',
    unsupported_version: 'This page is out of date. Please reload it and join again.',
    shutting_down: 'The server is restarting. We will reconnect you in a moment.',
    cluster_unavailable: 'Your session is moving to another server. We will reconnect you in a moment.',
    negotiation: 'The video connection had a problem. Reconnecting you…',
    join_timeout: 'The connection was slow to start. Reconnecting you…',
    internal: 'Something went wrong on our side. Please try again in a moment.',
    token_missing: 'This page needs your personal join link. Ask your therapist for your join link.',
    token_expired: 'Your join link has expired. Ask your therapist for a new one.',
    token_invalid: "This join link doesn't work. It may be incomplete: try copying the whole link, or ask your therapist for a new one.",
    token_wrong_room: 'This join link is for a different group. Ask your therapist for the right link.',
    forbidden: 'Only the therapist can do that.',
    room_locked: 'The therapist has locked this session, so no one new can join right now. Please contact your therapist.',
    banned: 'You were removed from this session and cannot rejoin it. Please contact your therapist if you have questions.',
    hard_muted: 'The therapist turned this off for you. Only they can turn it back on.',
    unknown_participant: 'That person is no longer in the room.',
    rate_limited: 'That was a lot at once. Please wait a moment, then try again.',
    invalid_name: 'The name in this join link cannot be shown to the group. Please ask your therapist for a new link.',
    not_admitted: "You're still in the waiting room. The therapist will let you in shortly.",
    unknown_breakout: 'That breakout room is not open any more.',
    return_not_allowed: 'The therapist asked everyone to stay in their breakout room for now.',
  };
  const ERROR_HEADINGS = {
    token_expired: 'This link has expired',
    token_invalid: "This link doesn't work",
    token_wrong_room: 'This link is for another group',
    token_missing: 'A join link is needed',
    room_locked: 'The session is locked',
    banned: 'You cannot rejoin this session',
    room_full: 'The group is full',
    invalid_name: 'This link needs a different name',
  };
  const ROLE_LABEL = { therapist: 'Therapist', participant: 'Participant', observer: 'Observer' };

  // Everything that changes lives here, so there is one place to look when debugging.
  const state = {
    // 'idle' | 'connecting' | 'waiting' | 'joined' | 'reconnecting' | 'left' | 'ended'
    status: 'idle',
    devTokens: false,
    token: '',
    claims: null, // decoded token payload: { sub, room, role, name, exp }
    roomId: '',
    name: '',
    role: 'participant',
    ws: null,
    pc: null,
    participantId: null,
    admitted: false,
    iceServers: [],
    room: { locked: false, waitingRoom: true, spotlight: null },
    self: null, // our own ParticipantInfo, as the server last described it
    participants: new Map(), // everyone else in our space: participantId -> ParticipantInfo
    space: null, // the breakout (or private room) we are in, { id, name }; null: the main room
    spacesUsed: false, // people have moved between spaces this session (breakouts, private rooms)
    waiting: [], // therapists only: [{ id, name, role }]
    arrivals: new Map(), // waiting participantId -> time first seen (for the highlight)
    streamOwners: new Map(), // streamId -> participantId, from trackPublished
    localStream: null,
    mediaPromise: null,
    audioMuted: false,
    videoMuted: false,
    audioHardMuted: false,
    videoHardMuted: false,
    handRaised: false,
    modNotes: { audio: '', video: '' }, // transient moderator notes ("asked you to mute")
    confirmRemove: null, // participantId whose Remove is awaiting confirmation
    makingOffer: false,
    offerTimer: null,
    pendingCandidates: [], // remote candidates that arrived before a remote description
    signalChain: Promise.resolve(), // SDP/ICE messages are applied one at a time, in order
    reconnectAttempt: 0,
    // Relay nodes: the node our room runs on, when a redirect sent us there (else the entry).
    nodeUrl: null,
    redirectPending: false,
    // Who the server says is speaking in our space (null: nobody).
    activeSpeaker: null,
    reconnectTimer: null,
    pingTimer: null,
    arrivalTimer: null,
    lastHeardAt: 0,
    log: [],
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
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
    messageAction: $('message-action'),
    modNotice: $('mod-notice'),
    lobby: $('lobby-panel'),
    lobbyHeading: $('lobby-heading'),
    lobbyText: $('lobby-text'),
    preview: $('preview'),
    previewVideo: $('preview-video'),
    roomPanel: $('room-panel'),
    roomHeading: $('room-heading'),
    roomName: $('room-name'),
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
    peopleList: $('people-list'),
    roomControls: $('room-controls'),
    lockButton: $('lock-button'),
    waitingRoomButton: $('waiting-room-button'),
    muteAll: $('mute-all-button'),
    endButton: $('end-button'),
    endConfirm: $('end-confirm'),
    endConfirmButton: $('end-confirm-button'),
    endCancel: $('end-cancel-button'),
    micButton: $('mic-button'),
    camButton: $('cam-button'),
    handButton: $('hand-button'),
    leaveButton: $('leave-button'),
    controls: $('controls'),
    soundButton: $('sound-button'),
  };

  const isTherapist = () => state.role === 'therapist';
  const publishes = () => state.role !== 'observer';

  // ---------------------------------------------------------------------------------------
  // Logging: kept in memory so tests and support can read what happened (window.hearth.log).
  // Tokens are never logged.

  function log(...parts) {
    const line = `${new Date().toISOString().slice(11, 23)} ${parts.map(String).join(' ')}`;
    state.log.push(line);
    if (state.log.length > LOG_LIMIT) state.log.shift();
    console.debug('[hearth]', line);
  }

  // ---------------------------------------------------------------------------------------
  // Status, views, alerts and announcements.

  const STATUS_TEXT = {
    idle: 'Not connected yet.',
    connecting: 'Connecting…',
    waiting: 'In the waiting room.',
    joined: "You're in the room.",
    reconnecting: 'Reconnecting…',
    left: 'You left the room. Take care.',
    ended: 'Not connected.',
  };
  const IN_CALL = new Set(['connecting', 'waiting', 'joined', 'reconnecting']);

  function setStatus(status, text) {
    state.status = status;
    ui.status.dataset.state = status;
    ui.status.textContent = text || STATUS_TEXT[status];
    if (IN_CALL.has(status)) showView('call');
    renderCall();
  }

  let currentView = 'loading';
  function showView(which) {
    const previous = currentView;
    currentView = which;
    for (const [name, el] of Object.entries(ui.views)) el.hidden = name !== which;
    // Move focus with the view, otherwise keyboard and screen reader users are left on a
    // button that no longer exists.
    if (which !== previous && which !== 'call' && ui.headings[which]) ui.headings[which].focus();
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

  // A final or informational screen: no link, a bad link, the session is over.
  function showMessage(heading, text, { hint = '', action = null } = {}) {
    ui.headings.message.textContent = heading;
    ui.messageText.textContent = text;
    ui.messageHint.textContent = hint;
    ui.messageHint.hidden = !hint;
    ui.messageAction.hidden = !action;
    ui.messageAction.onclick = null;
    if (action) {
      ui.messageAction.textContent = action.label;
      ui.messageAction.onclick = action.run;
    }
    showView('message');
    if (currentView === 'message') ui.headings.message.focus();
  }

  // ---------------------------------------------------------------------------------------
  // Tokens.

  // The join link's token, read once: it is taken out of the address bar at once (and out of
  // the history entry), so it does not show on a shared screen, in the history list or in a
  // copied address. The page keeps it in memory for reconnects, and in this tab's
  // sessionStorage so a reload still rejoins as the same person; closing the tab forgets it.
  const TOKEN_KEY = 'hearth.joinToken';

  function tokenFromFragment() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ''));
    const token = (params.get('token') || '').trim();
    if (token) {
      rememberToken(token);
      params.delete('token');
      const rest = params.toString();
      history.replaceState(history.state, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
      return token;
    }
    try {
      return sessionStorage.getItem(TOKEN_KEY) || '';
    } catch (err) {
      return '';
    }
  }

  function rememberToken(token) {
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (err) {
      // Storage off (private mode settings): reloads then need the link again.
    }
  }

  // Reads a JWT's payload without verifying it: only to greet the person and pick the room.
  // The server verifies the signature on join.
  function decodeToken(token) {
    const parts = token.split('.');
    if (parts.length !== 3) return null;
    try {
      const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
      const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
      const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
      const claims = JSON.parse(new TextDecoder().decode(bytes));
      if (!claims || typeof claims.room !== 'string' || typeof claims.name !== 'string') return null;
      if (!ROLE_LABEL[claims.role]) return null;
      return claims;
    } catch (err) {
      return null;
    }
  }

  function tokenExpired(claims) {
    return typeof claims.exp === 'number' && claims.exp * 1000 < Date.now();
  }

  // ---------------------------------------------------------------------------------------
  // Websocket signaling.

  // The page's own server is the entry point (in a deployment, the load balancer). With
  // relay nodes, it may redirect us to the node that runs our room; we stay there until that
  // node goes away, then come back through the entry point.
  function socketUrl() {
    if (state.nodeUrl) return state.nodeUrl;
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
      send({ type: 'join', protocolVersion: PROTOCOL_VERSION, roomId: state.roomId, token: state.token });
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
    // After a redirect we go straight to the node named; any other loss means that node may
    // be gone, so the next attempt goes through the entry point again.
    const redirected = state.redirectPending;
    state.redirectPending = false;
    if (!redirected) state.nodeUrl = null;
    stopPing();
    teardownPeer();
    // Keep the tiles and the roster (dimmed) while we reconnect: the server holds our place,
    // and `admitted` / `spaceChanged` bring the real picture back. Only the media is gone.
    detachRemoteMedia();
    state.waiting = [];
    if (IN_CALL.has(state.status)) {
      if (state.admitted) ui.peopleCount.textContent = 'Reconnecting… You will see and hear everyone again in a moment.';
      scheduleReconnect(redirected);
    }
  }

  function scheduleReconnect(now) {
    // A redirect during the first join is part of connecting, not a reconnect.
    if (!(now && state.status === 'connecting')) setStatus('reconnecting');
    if (now) {
      log('reconnecting at once to', state.nodeUrl);
      clearTimeout(state.reconnectTimer);
      state.reconnectTimer = setTimeout(openSocket, 0);
      return;
    }
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

  // Features in their own files (polls.js, ...) hear server messages through
  // window.hearth.onMessage(type, fn): after this file has handled the message, every listener
  // for its type runs, in the order registered.
  const messageListeners = new Map();

  function handleMessage(message) {
    handleCoreMessage(message);
    emitLocal(message.type, message);
  }

  // Also for events of this page's own (type `screenTrack`: a remote screen share arrived).
  function emitLocal(type, message) {
    for (const fn of messageListeners.get(type) || []) {
      try {
        fn(message);
      } catch (err) {
        log('listener for', message.type, 'failed:', err);
      }
    }
  }

  function handleCoreMessage(message) {
    switch (message.type) {
      case 'joined': return onJoined(message);
      case 'admitted': return onAdmitted(message);
      case 'waitingList': return onWaitingList(message.waiting || []);
      case 'roomStateChanged': return onRoomState(message.room);
      case 'participantJoined': return onParticipantJoined(message.participant);
      case 'participantLeft': return onParticipantLeft(message.participantId);
      case 'participantUpdated': return onParticipantUpdated(message.participant);
      case 'spaceChanged': return onSpaceChanged(message);
      case 'spaceRoster': return replaceRoster(message.participants || [], { announceMoves: true });
      case 'mutedByModerator': return onMutedByModerator(message.kind, Boolean(message.hard));
      case 'unmutedByModerator': return onUnmutedByModerator(message.kind);
      case 'sessionEnded': return onSessionEnded(message);
      case 'trackPublished': return onTrackPublished(message);
      case 'offer': return queueSignal(() => onRemoteOffer(message.sdp));
      case 'answer': return queueSignal(() => onRemoteAnswer(message.sdp));
      case 'iceCandidate': return queueSignal(() => onRemoteCandidate(message.candidate));
      case 'pong': return undefined; // lastHeardAt is already updated
      case 'error': return onServerError(message);
      case 'goodbye': return onGoodbye(message);
      case 'redirect': return onRedirect(message);
      case 'activeSpeaker': return onActiveSpeaker(message.participantId || null);
      default:
        if (!messageListeners.has(message.type)) log('ignoring unknown message type', message.type);
        return undefined;
    }
  }

  function onJoined(message) {
    log('joined as', message.participantId, message.role, message.admitted ? 'admitted' : 'waiting');
    state.participantId = message.participantId;
    state.name = message.name || state.name;
    state.role = message.role || state.role;
    state.iceServers = message.iceServers || [];
    state.room = normaliseRoom(message.room);
    // Rejoining a room we were in: keep showing it until `admitted` (which follows at once).
    state.admitted = state.admitted && Boolean(message.admitted);
    state.self = null;
    // A fresh session on the server: nothing the therapist did before carries over.
    state.audioHardMuted = false;
    state.videoHardMuted = false;
    state.handRaised = false;
    // Back in a room we were in: keep the (dimmed) tiles until `admitted` replaces the roster.
    if (!state.admitted) {
      state.participants.clear();
      state.space = null;
    }
    state.streamOwners.clear();
    state.waiting = [];
    clearAlert();
    ui.localTile.dataset.participantId = state.participantId;
    // When admitted is true, `admitted` with the roster follows at once; until then (or while
    // waiting) the lobby shows. Media is negotiated now either way, so it is ready on admission.
    setStatus(message.admitted ? 'connecting' : 'waiting');
    if (!message.admitted) {
      announce('You are in the waiting room. The therapist will let you in shortly.');
      ui.lobbyHeading.focus();
    }
    startPeer();
  }

  function onAdmitted(message) {
    log('admitted');
    const wasWaiting = state.status === 'waiting';
    state.admitted = true;
    state.room = normaliseRoom(message.room);
    // The main room's roster; `spaceChanged` follows at once if we belong in a breakout.
    state.space = null;
    replaceRoster(message.participants || [], { render: false });
    // The server refuses setMute before admission; tell the room about choices made while waiting.
    if (publishes()) {
      if (state.audioMuted) send({ type: 'setMute', kind: 'audio', muted: true });
      if (state.videoMuted) send({ type: 'setMute', kind: 'video', muted: true });
    }
    setStatus('joined');
    renderRoster();
    if (wasWaiting) announce('The therapist let you in. Welcome.');
    if (wasWaiting || state.reconnectAttempt === 0) ui.roomHeading.focus();
  }

  function normaliseRoom(room) {
    return {
      locked: Boolean(room && room.locked),
      waitingRoom: Boolean(room && room.waitingRoom),
      spotlight: (room && room.spotlight) || null,
    };
  }

  function onRoomState(room) {
    const before = state.room;
    state.room = normaliseRoom(room);
    if (before.locked !== state.room.locked) {
      announce(state.room.locked ? 'The room is now locked. No one new can join.' : 'The room is unlocked.');
    }
    if (before.spotlight !== state.room.spotlight) {
      const who = state.room.spotlight;
      if (!who) announce('The spotlight was turned off.');
      else if (who === state.participantId) announce('You are in the spotlight.');
      else announce(`${nameOf(who)} is in the spotlight.`);
    }
    renderRoster();
  }

  function onWaitingList(waiting) {
    const known = new Set(state.waiting.map((w) => w.id));
    const now = Date.now();
    const arrived = waiting.filter((w) => !known.has(w.id));
    state.waiting = waiting;
    for (const id of [...state.arrivals.keys()]) {
      if (!waiting.some((w) => w.id === id)) state.arrivals.delete(id);
    }
    for (const w of arrived) state.arrivals.set(w.id, now);
    if (arrived.length === 1) announce(`${arrived[0].name} is waiting to join.`);
    else if (arrived.length > 1) announce(`${arrived.length} people are waiting to join.`);
    if (arrived.length) {
      clearTimeout(state.arrivalTimer);
      state.arrivalTimer = setTimeout(() => { state.arrivals.clear(); renderWaiting(); }, ARRIVAL_HIGHLIGHT_MS);
    }
    renderWaiting();
  }

  function onParticipantJoined(participant) {
    if (!participant) return;
    if (participant.id === state.participantId) {
      applySelf(participant);
      renderRoster();
      return;
    }
    state.participants.set(participant.id, participant);
    renderRoster();
    const role = participant.role === 'participant' ? '' : ` (${ROLE_LABEL[participant.role].toLowerCase()})`;
    announce(`${participant.name}${role} joined the room.`);
  }

  function onParticipantLeft(participantId) {
    const participant = state.participants.get(participantId);
    state.participants.delete(participantId);
    for (const [streamId, owner] of state.streamOwners) {
      if (owner === participantId) state.streamOwners.delete(streamId);
    }
    if (state.confirmRemove === participantId) state.confirmRemove = null;
    removeTile(participantId);
    renderRoster();
    if (participant) announce(`${participant.name} left the room.`);
  }

  // We moved (into a breakout, a private room, back to the main room): who is there now.
  function onSpaceChanged(message) {
    // The speaker highlight belonged to the space we left.
    onActiveSpeaker(null);
    const before = state.space;
    state.space = message.breakout ? { id: message.breakout.id, name: message.breakout.name } : null;
    state.spacesUsed = true;
    if ((before && before.id) !== (state.space && state.space.id)) log('now in space', state.space ? state.space.id : 'main');
    replaceRoster(message.participants || []);
  }

  // Media, the tiles and the people list follow the space we are in: the server sends the
  // whole list of who is there (us included) whenever it changes. Tiles of people who are no
  // longer with us go (the server also stops forwarding them); newcomers get a tile at once,
  // and their media follows by renegotiation.
  function replaceRoster(list, { announceMoves = false, render = true } = {}) {
    const before = new Map(state.participants);
    if (announceMoves) state.spacesUsed = true;
    state.participants.clear();
    for (const p of list) {
      if (p.id === state.participantId) applySelf(p);
      else state.participants.set(p.id, p);
    }
    for (const id of [...tiles.keys()]) {
      if (!state.participants.has(id)) dropTileIfIdle(id);
    }
    if (state.confirmRemove && !state.participants.has(state.confirmRemove)) state.confirmRemove = null;
    if (render) renderRoster();
    if (!announceMoves) return;
    const came = [...state.participants.values()].filter((p) => !before.has(p.id));
    const went = [...before.values()].filter((p) => !state.participants.has(p.id));
    if (came.length + went.length === 1) {
      announce(came.length ? `${came[0].name} joined this room.` : `${went[0].name} left this room.`);
    } else if (came.length + went.length > 1) {
      const n = state.participants.size;
      announce(n === 0 ? 'Everyone else moved to another room. You are on your own here for now.'
        : `People moved between rooms. ${n + 1} people are in this room now, including you.`);
    }
  }

  function onParticipantUpdated(participant) {
    if (!participant) return;
    if (participant.id === state.participantId) {
      applySelf(participant);
    } else {
      const before = state.participants.get(participant.id);
      state.participants.set(participant.id, participant);
      if (isTherapist() && participant.handRaised && !(before && before.handRaised)) {
        announce(`${participant.name} raised their hand.`);
      }
    }
    renderRoster();
  }

  // The server's view of us: hand, and mutes only the therapist can lift.
  function applySelf(info) {
    state.self = info;
    state.handRaised = Boolean(info.handRaised);
    state.audioHardMuted = Boolean(info.audioHardMuted);
    state.videoHardMuted = Boolean(info.videoHardMuted);
    // Our own mute choices are ours (an update sent before the server saw our latest toggle
    // must not undo it); only a hard mute overrides them, and never to turn a device on.
    if (state.audioHardMuted) state.audioMuted = true;
    if (state.videoHardMuted) state.videoMuted = true;
    applyLocalMutes();
  }

  function onMutedByModerator(kind, hard) {
    log('muted by moderator', kind, hard ? 'hard' : 'asked');
    // Observers send nothing; "mute all" may still include them. Nothing to say.
    if (!publishes()) return;
    if (kind === 'audio') {
      state.audioMuted = true;
      if (hard) state.audioHardMuted = true;
    } else {
      state.videoMuted = true;
      if (hard) state.videoHardMuted = true;
    }
    state.modNotes[kind] = hard ? '' : (kind === 'audio'
      ? 'The therapist asked you to mute. You can unmute when you want to speak.'
      : 'The therapist asked you to turn off your camera. You can turn it back on when you are ready.');
    applyLocalMutes();
    renderLocalTile();
    renderModNotice();
  }

  function onUnmutedByModerator(kind) {
    log('unmuted by moderator', kind);
    if (!publishes()) return;
    if (kind === 'audio') state.audioHardMuted = false;
    else state.videoHardMuted = false;
    // Allowed, not switched on: the person decides when their microphone or camera comes back.
    state.modNotes[kind] = kind === 'audio'
      ? 'The therapist allowed you to unmute. Your microphone stays off until you turn it on.'
      : 'The therapist allowed you to turn your camera back on. It stays off until you turn it on.';
    renderLocalTile();
    renderModNotice();
  }

  function onSessionEnded(message) {
    const reason = message.reason;
    log('session ended:', reason);
    // Set before the socket closes so nothing tries to reconnect.
    state.status = 'ended';
    stopSession();
    const again = { label: 'Join again from this window', run: () => startSession() };
    const screens = {
      declined: ['You were not admitted', 'The therapist did not admit you to this session.',
        'If you think this is a mistake, please contact your therapist.', null],
      removed: ['You have left the session', 'The therapist removed you from this session.',
        'If you have questions, please contact your therapist.', null],
      ended: ['The session has ended', isTherapist()
        ? 'You ended the session for everyone.'
        : 'The therapist ended the session. Thank you for being here.', 'You can close this window.', null],
      replaced: ['Joined somewhere else', 'You joined this session from another window or device, so this one stopped.',
        '', { label: 'Use this window instead', run: () => startSession() }],
      stalled: ['Your connection dropped', 'Your connection could not keep up with the session.',
        'Check your internet connection, then join again.', again],
    };
    const [heading, text, hint, action] = screens[reason]
      || ['Your session has ended', message.message || 'Your session has ended.', '', null];
    setStatus('ended', 'Session ended.');
    showMessage(heading, text, { hint, action });
  }

  function onTrackPublished(message) {
    // The SDP only carries stream ids; this tells us whose stream it is.
    state.streamOwners.set(message.streamId, message.participantId);
  }

  function onServerError(message) {
    log('server error', message.code, message.message);
    const code = message.code;
    // A video preference for a track that just went away: nothing for a person to do.
    if (code === 'unknown_track') return undefined;
    const joining = state.status === 'connecting' || state.status === 'reconnecting';
    // In the call, a rate limit on asking for help says honestly that the earlier calls reached
    // the therapists and where to turn now: the server's words, not a generic "slow down".
    const said = code === 'rate_limited' && !joining && message.message;
    const own = said && `${said.charAt(0).toUpperCase()}${said.slice(1)}.`;
    const text = code === 'invalid_field'
      ? `Please check what you entered: ${message.message}.`
      : own || FRIENDLY_ERRORS[code] || message.message || 'Something went wrong.';
    // These codes only answer `join` (on a first connect or a reconnect): retrying cannot help.
    if (joining && FATAL_JOIN_ERRORS.has(code)) return refuseJoin(code, text);
    if (joining && (code === 'rate_limited' || code === 'shutting_down' || code === 'cluster_unavailable' || code === 'join_timeout')) {
      // Too many joins from this address, or a restart: try again later, with backoff.
      showAlert(text);
      return restartConnection(`server error ${code}`);
    }
    if (code === 'negotiation') {
      // The server gave up on this connection's media: a fresh join is the way back.
      showAlert(text);
      return restartConnection('server error negotiation');
    }
    showAlert(text);
    return undefined;
  }

  // A join the server refused for good (bad or expired link, locked, removed...).
  function refuseJoin(code, text) {
    stopSession();
    if (state.devTokens && state.fromForm) {
      // On the development form the fix is usually a different room or name.
      setStatus('idle', 'Not connected.');
      showView('form');
      showAlert(text);
      return;
    }
    setStatus('ended', 'Not connected.');
    const retry = ['room_locked', 'room_full'].includes(code)
      ? { label: 'Try again', run: () => startSession() }
      : null;
    showMessage(ERROR_HEADINGS[code] || 'We could not connect you', text, { action: retry });
  }

  function restartConnection(why) {
    log('restarting connection:', why);
    const ws = state.ws;
    onSocketLost();
    if (ws) ws.close(1000, 'restart');
  }

  // Relay nodes: our room runs on (or just moved to) another node. Join there with the same
  // token; the server closes this socket next.
  function onRedirect(message) {
    let url;
    try {
      url = new URL(message.url);
    } catch (err) {
      log('ignoring redirect to an unparseable address');
      return;
    }
    if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
      log('ignoring redirect to a non-websocket address');
      return;
    }
    log('redirected to', url.href, message.reason);
    state.nodeUrl = url.href;
    state.redirectPending = true;
    state.reconnectAttempt = 0;
    if (message.reason === 'draining' || message.reason === 'moved') {
      // Only a move during the call is worth saying; a first join's redirect is invisible.
      showAlert('Moving your session to another server. You will see and hear everyone again in a moment.');
    }
  }

  function onGoodbye(message) {
    log('goodbye:', message.reason);
    // The socket closes next; onclose starts reconnecting because the server usually returns.
    showAlert("The server is restarting. We'll reconnect you automatically when it's back.");
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
    state.iceRestarted = false;

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

  // One request at a time: the lobby preview and the peer connection share the same stream.
  function ensureLocalMedia() {
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
    ui.previewVideo.srcObject = null;
  }

  function applyLocalMutes() {
    const stream = state.localStream;
    if (!stream) return;
    for (const track of stream.getAudioTracks()) track.enabled = !state.audioMuted;
    for (const track of stream.getVideoTracks()) track.enabled = !state.videoMuted;
  }

  function toggleMute(kind) {
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

  function toggleHand() {
    if (state.status !== 'joined') return;
    // The button follows the server's answer (participantUpdated), not our guess.
    if (state.handRaised) send({ type: 'lowerHand' });
    else send({ type: 'raiseHand' });
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
    if (streamId.endsWith('~screen')) {
      // A shared screen has a stream of its own and is shown apart from the camera (screen.js).
      emitLocal('screenTrack', { type: 'screenTrack', track, stream: remoteStream, participantId: owner });
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

  function playWithSound(video) {
    video.play().catch((err) => {
      // Autoplay policy: sound may need a click. Offer one obvious button instead of silence.
      // (A play() cut short because the tile went away, an AbortError, needs nothing.)
      log('play() failed:', err && err.name);
      if (err && err.name === 'NotAllowedError') ui.soundButton.hidden = false;
    });
  }

  const tiles = new Map(); // participantId -> { element, stream }

  function ensureTile(participantId) {
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
  function onActiveSpeaker(participantId) {
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

  // Someone is no longer in our space. Their tile goes at once; if their tracks are still
  // attached (the server's renegotiation removing them has not arrived yet) it is only hidden
  // and muted, and goes when the last track does, or comes back if they do.
  function dropTileIfIdle(participantId) {
    const tile = tiles.get(participantId);
    if (!tile) return;
    if (state.participants.has(participantId)) return;
    if (tile.stream.getTracks().some((t) => t.readyState === 'live')) renderTile(participantId);
    else removeTile(participantId);
  }

  // Our connection dropped: the peer connection is gone, so are its tracks; the tiles stay.
  function detachRemoteMedia() {
    for (const [id, tile] of tiles) {
      for (const track of tile.stream.getTracks()) tile.stream.removeTrack(track);
      renderTile(id);
    }
  }

  function initials(name) {
    const words = String(name || '').trim().split(/\s+/).filter(Boolean);
    const letters = words.slice(0, 2).map((w) => Array.from(w)[0].toUpperCase());
    return letters.join('') || '?';
  }

  function nameOf(participantId) {
    if (participantId === state.participantId) return 'You';
    const p = state.participants.get(participantId);
    return p ? p.name : 'Someone';
  }

  function renderTile(participantId) {
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

  function renderTileBadges(el, p, participantId) {
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

  function describe(name, p, participantId) {
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

  function renderLocalTile() {
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

    ui.micButton.setAttribute('aria-pressed', String(state.audioMuted));
    ui.camButton.setAttribute('aria-pressed', String(state.videoMuted));
    // Before media is known the buttons stay usable so a choice can be made up front. A hard
    // mute disables the way back on; the notice says why.
    ui.micButton.disabled = (Boolean(stream) && !hasAudio) || state.audioHardMuted;
    ui.camButton.disabled = (Boolean(stream) && !hasVideo) || state.videoHardMuted;
    ui.micButton.classList.toggle('locked', state.audioHardMuted);
    ui.camButton.classList.toggle('locked', state.videoHardMuted);
    setLabel(ui.micButton, state.audioHardMuted ? 'Muted by therapist' : 'Mute microphone',
      state.audioHardMuted ? 'Muted' : 'Mute');
    setLabel(ui.camButton, state.videoHardMuted ? 'Camera off by therapist' : 'Turn off camera',
      'Camera off');
    ui.micButton.hidden = !publishes();
    ui.camButton.hidden = !publishes();
    // Therapists speak when they like; the hand is for participants and observers.
    ui.handButton.hidden = state.status !== 'joined' || isTherapist();
    ui.handButton.setAttribute('aria-pressed', String(state.handRaised));
    setLabel(ui.handButton, state.handRaised ? 'Lower hand' : 'Raise hand');
  }

  // Control buttons carry a full label and, for narrow screens, a short one; CSS shows one.
  function setLabel(button, label, short) {
    button.querySelector('.label').textContent = label;
    const el = button.querySelector('.short');
    if (el) el.textContent = short || label;
  }

  // What the therapist did to our microphone or camera, for as long as it applies.
  function renderModNotice() {
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
  function sizeSidebar() {
    if (!WIDE.matches || ui.views.call.hidden || ui.roomPanel.hidden) {
      ui.sidebar.style.maxHeight = '';
      return;
    }
    const top = Math.max(ui.sidebar.getBoundingClientRect().top, 8);
    const available = window.innerHeight - top - ui.controls.offsetHeight - 24;
    ui.sidebar.style.maxHeight = `${Math.max(240, Math.floor(available))}px`;
  }

  function layoutTiles() {
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

  function renderRoster() {
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
    ui.peopleCount.textContent = count > 1 ? `${count} people ${where}, including you.`
      : where === 'here' ? 'Just you so far. Others will appear here when they join.'
        : `Just you ${where} right now.`;
    ui.roomName.textContent = state.roomId;

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

  const peopleRows = new Map(); // participantId -> li

  function renderPeople(all) {
    const therapist = isTherapist();
    const focusedRow = rowOf(document.activeElement, ui.peopleList);
    // Raised hands first, so the therapist sees them at a glance; otherwise join order.
    const ordered = [...all].sort((a, b) => Number(Boolean(b.handRaised)) - Number(Boolean(a.handRaised)));
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
      : `${hands.length === 1 ? '1 raised hand' : `${hands.length} raised hands`}: ${hands.map((p) => (p.self ? 'you' : p.name)).join(', ')}`;
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

    const actions = li.querySelector('.person-actions');
    const confirm = li.querySelector('.confirm');
    const confirming = therapist && state.confirmRemove === p.id;
    actions.hidden = !therapist || confirming;
    confirm.hidden = !confirming;
    if (!therapist) return;
    for (const who of li.querySelectorAll('.who')) who.textContent = `, ${p.self ? 'you' : p.name}`;
    const moderated = p.role === 'participant' && !p.self;
    const button = (action) => li.querySelector(`[data-action="${action}"]`);
    const set = (action, visible, label) => {
      const b = button(action);
      b.hidden = !visible;
      if (label) b.querySelector('.label').textContent = label;
      return b;
    };
    set('lower-hand', Boolean(p.handRaised));
    set('ask-mute', moderated && !p.audioMuted && !p.audioHardMuted);
    set('hard-mute', moderated, p.audioHardMuted ? 'Allow unmute' : 'Mute')
      .classList.toggle('engaged', Boolean(p.audioHardMuted));
    set('camera', moderated, p.videoHardMuted ? 'Allow camera' : 'Turn off camera')
      .classList.toggle('engaged', Boolean(p.videoHardMuted));
    set('spotlight', publisher, state.room.spotlight === p.id ? 'End spotlight' : 'Spotlight')
      .classList.toggle('engaged', state.room.spotlight === p.id);
    set('screen', moderated, p.canShareScreen ? 'Stop screen sharing' : 'Allow screen sharing')
      .classList.toggle('engaged', Boolean(p.canShareScreen));
    set('remove', p.role !== 'therapist' && !p.self);
    actions.hidden = confirming || ![...actions.children].some((b) => !b.hidden);
    if (confirming) {
      li.querySelector('.confirm-text').textContent = `Remove ${p.name} from this session? They will not be able to rejoin it.`;
    }
  }

  // Puts `rows` into `list` in order, touching the DOM only when the order changed: moving an
  // element loses keyboard focus inside it.
  function placeInOrder(list, rows) {
    const same = list.children.length === rows.length && rows.every((li, i) => list.children[i] === li);
    if (!same) list.replaceChildren(...rows);
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

  function renderWaiting() {
    const therapist = isTherapist();
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
      role.hidden = w.role === 'participant';
      role.textContent = ROLE_LABEL[w.role] || w.role;
      role.classList.toggle('observer', w.role === 'observer');
      for (const who of li.querySelectorAll('.who')) who.textContent = `, ${w.name}`;
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
    ui.waitingSection.hidden = !therapist;
    ui.roomControls.hidden = !therapist;
    ui.lockButton.setAttribute('aria-checked', String(state.room.locked));
    ui.waitingRoomButton.setAttribute('aria-checked', String(state.room.waitingRoom));
    const others = [...state.participants.values()].some((p) => p.role === 'participant');
    ui.muteAll.disabled = !others;
    renderWaiting();
  }

  function renderCall() {
    const inCall = IN_CALL.has(state.status);
    // The lobby shows until the server admits us; the room after, and while reconnecting to it.
    const inRoom = inCall && state.admitted;
    ui.lobby.hidden = !inCall || inRoom;
    ui.roomPanel.hidden = !inRoom;
    ui.controls.hidden = !inCall;
    ui.roleChip.hidden = !inCall || state.role === 'participant';
    ui.roleChip.querySelector('.text').textContent = state.role === 'therapist' ? 'Therapist'
      : state.role === 'observer' ? 'Observer' : '';
    ui.preview.hidden = !publishes();
    setLabel(ui.leaveButton, inRoom ? 'Leave room' : 'Leave');
    if (state.status === 'waiting') {
      ui.lobbyHeading.textContent = "You're in the waiting room";
      ui.lobbyText.textContent = publishes()
        ? 'The therapist will let you in shortly. Meanwhile you can check how you look here; '
          + 'no one else can see or hear you yet.'
        : 'The therapist will let you in shortly. As an observer, others will not see or hear you.';
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

  function onPeopleClick(event) {
    const button = event.target.closest('button[data-action]');
    if (!button || !isTherapist()) return;
    const li = button.closest('li');
    const id = li && li.dataset.participantId;
    const p = id === state.participantId ? state.self : state.participants.get(id);
    if (!id) return;
    const action = button.dataset.action;
    switch (action) {
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

  function onWaitingClick(event) {
    const button = event.target.closest('button[data-action]');
    if (!button || !isTherapist()) return;
    const id = button.closest('li').dataset.participantId;
    if (button.dataset.action === 'admit') send({ type: 'admit', participantId: id });
    if (button.dataset.action === 'decline') send({ type: 'decline', participantId: id });
  }

  function showEndConfirm(open) {
    ui.endConfirm.hidden = !open;
    ui.endButton.hidden = open;
    (open ? ui.endCancel : ui.endButton).focus();
  }

  // ---------------------------------------------------------------------------------------
  // Joining and leaving.

  function startSession() {
    clearTimeout(state.reconnectTimer);
    const claims = state.claims;
    state.roomId = claims.room;
    state.name = claims.name;
    state.role = claims.role;
    state.reconnectAttempt = 0;
    state.admitted = false;
    state.self = null;
    state.audioHardMuted = false;
    state.videoHardMuted = false;
    state.handRaised = false;
    state.modNotes = { audio: '', video: '' };
    state.room = { locked: false, waitingRoom: true, spotlight: null };
    clearAlert();
    ui.roomName.textContent = state.roomId;
    ui.peopleCount.textContent = '';
    setStatus('connecting');
    ui.lobbyHeading.focus();
    // Start the camera now, so the preview shows while the server answers.
    if (publishes()) ensureLocalMedia();
    openSocket();
  }

  function stopSession() {
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    state.nodeUrl = null;
    state.redirectPending = false;
    clearTimeout(state.arrivalTimer);
    closeSocket();
    teardownPeer();
    clearRemoteTiles();
    stopLocalMedia();
    state.participants.clear();
    state.space = null;
    state.spacesUsed = false;
    state.streamOwners.clear();
    state.waiting = [];
    state.arrivals.clear();
    state.admitted = false;
    state.confirmRemove = null;
    ui.soundButton.hidden = true;
    ui.endConfirm.hidden = true;
    ui.endButton.hidden = false;
  }

  function leave() {
    log('leaving');
    send({ type: 'leave' });
    stopSession();
    state.participantId = null;
    clearAlert();
    setStatus('left');
    showLinkView({ left: true });
  }

  // A token is ready: greet the person, join on one click.
  function showLinkView({ left = false } = {}) {
    const claims = state.claims;
    ui.linkName.textContent = claims.name;
    ui.linkRoom.textContent = claims.room;
    ui.linkRole.textContent = ROLE_LABEL[claims.role];
    ui.linkLeft.hidden = !left;
    ui.linkLead.hidden = left;
    ui.linkLead.textContent = claims.role === 'observer'
      ? 'You are joining as an observer: you will see and hear the group, and they will not see or hear you.'
      : 'Take your time. When you join, your camera and microphone turn on, and you can turn '
        + 'either of them off at any moment.';
    ui.linkJoin.textContent = left ? 'Join again' : 'Join';
    ui.linkOther.hidden = !state.devTokens;
    showView('link');
    ui.headings.link.focus();
  }

  function useToken(token, { fromForm = false } = {}) {
    const claims = decodeToken(token);
    if (!claims) {
      setStatus('idle', 'Not connected.');
      showMessage(ERROR_HEADINGS.token_invalid, FRIENDLY_ERRORS.token_invalid);
      return false;
    }
    if (tokenExpired(claims)) {
      setStatus('idle', 'Not connected.');
      showMessage(ERROR_HEADINGS.token_expired, FRIENDLY_ERRORS.token_expired);
      return false;
    }
    state.token = token;
    state.claims = claims;
    state.fromForm = fromForm;
    state.name = claims.name;
    state.role = claims.role;
    return true;
  }

  async function onJoinSubmit(event) {
    event.preventDefault();
    const roomId = ui.roomInput.value.trim();
    const name = ui.nameInput.value.trim();
    const role = ui.roleInput.value;
    // Native validation bubbles vary by browser and vanish quickly; say it plainly instead.
    const problem = !roomId ? ['Please enter the room name.', ui.roomInput]
      : !ROOM_ID_PATTERN.test(roomId)
        ? ['Room names use only letters, numbers, dots (.), dashes (-) and underscores (_).', ui.roomInput]
        : !name ? ['Please enter your name.', ui.nameInput]
          : null;
    for (const input of [ui.roomInput, ui.nameInput]) input.removeAttribute('aria-invalid');
    if (problem) {
      showAlert(problem[0]);
      problem[1].setAttribute('aria-invalid', 'true');
      problem[1].focus();
      return;
    }
    clearAlert();
    ui.joinButton.disabled = true;
    try {
      const response = await fetch('/dev/token', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ room: roomId, name, role }),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok || !body.token) {
        showAlert(body.message ? `Could not join: ${body.message}.` : 'Could not join. Please try again.');
        return;
      }
      if (!useToken(body.token, { fromForm: true })) return;
      // Kept for this tab (not in the address), so a reload rejoins as the same person.
      rememberToken(body.token);
      startSession();
    } catch (err) {
      log('dev token request failed', err);
      showAlert('Could not reach the server. Please check your connection and try again.');
    } finally {
      ui.joinButton.disabled = false;
    }
  }

  async function fetchInfo() {
    try {
      const response = await fetch('/api/info', { cache: 'no-store' });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      return await response.json();
    } catch (err) {
      log('could not read /api/info', err);
      return null;
    }
  }

  // Decides the first screen: a join link, the development form, or a calm explanation.
  async function route() {
    const info = await fetchInfo();
    state.devTokens = Boolean(info && info.devTokens);
    const token = tokenFromFragment();
    if (token) {
      if (useToken(token)) {
        setStatus('idle');
        showLinkView();
      }
      return;
    }
    if (!info) {
      setStatus('idle', 'Not connected.');
      showMessage('We could not reach the server', 'Please check your internet connection.',
        { action: { label: 'Try again', run: () => { showView('loading'); route(); } } });
      return;
    }
    if (state.devTokens) {
      setStatus('idle');
      showView('form');
      return;
    }
    setStatus('idle');
    showMessage('Ask your therapist for your join link',
      'To join a session you need your personal join link. Your therapist sends it to you before the session.',
      { hint: 'If you already have one, open it from your email or message; this page will then let you in.' });
  }

  function init() {
    const room = new URLSearchParams(location.search).get('room');
    if (room) ui.roomInput.value = room;
    // We validate ourselves so the message lands in the calm alert area, not a browser bubble.
    ui.joinForm.noValidate = true;
    ui.joinForm.addEventListener('submit', onJoinSubmit);
    ui.linkJoin.addEventListener('click', () => startSession());
    ui.linkOtherButton.addEventListener('click', () => {
      history.replaceState(null, '', `${location.pathname}${location.search}`);
      rememberToken('');
      setStatus('idle');
      showView('form');
    });
    ui.micButton.addEventListener('click', () => toggleMute('audio'));
    ui.camButton.addEventListener('click', () => toggleMute('video'));
    ui.handButton.addEventListener('click', toggleHand);
    ui.leaveButton.addEventListener('click', leave);
    ui.soundButton.addEventListener('click', () => {
      ui.soundButton.hidden = true;
      for (const video of ui.tiles.querySelectorAll('.tile.remote video')) playWithSound(video);
    });
    ui.peopleList.addEventListener('click', onPeopleClick);
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
    ui.endButton.addEventListener('click', () => showEndConfirm(true));
    ui.endCancel.addEventListener('click', () => showEndConfirm(false));
    ui.endConfirmButton.addEventListener('click', () => send({ type: 'endSession' }));
    document.addEventListener('keydown', (event) => {
      // Escape backs out of a confirmation, like closing a dialog.
      if (event.key !== 'Escape') return;
      if (!ui.endConfirm.hidden) showEndConfirm(false);
      else if (state.confirmRemove) {
        const id = state.confirmRemove;
        state.confirmRemove = null;
        renderRoster();
        const li = peopleRows.get(id);
        if (li) li.querySelector('[data-action="remove"]').focus();
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

  // Read-only view for tests and debugging; getters so it always reflects the current objects.
  window.hearth = Object.defineProperties({}, {
    pc: { get: () => state.pc, enumerable: true },
    participantId: { get: () => state.participantId, enumerable: true },
    ws: { get: () => state.ws, enumerable: true },
    state: { get: () => state.status, enumerable: true },
    role: { get: () => state.role, enumerable: true },
    name: { get: () => state.name, enumerable: true },
    roomId: { get: () => state.roomId, enumerable: true },
    admitted: { get: () => state.admitted, enumerable: true },
    room: { get: () => ({ ...state.room }), enumerable: true },
    participants: { get: () => [...state.participants.values()], enumerable: true },
    // The breakout or private room we are in ({ id, name }), or null for the main room.
    space: { get: () => (state.space ? { ...state.space } : null), enumerable: true },
    waiting: { get: () => state.waiting.slice(), enumerable: true },
    audioMuted: { get: () => state.audioMuted, enumerable: true },
    videoMuted: { get: () => state.videoMuted, enumerable: true },
    audioHardMuted: { get: () => state.audioHardMuted, enumerable: true },
    videoHardMuted: { get: () => state.videoHardMuted, enumerable: true },
    handRaised: { get: () => state.handRaised, enumerable: true },
    log: { get: () => state.log.slice(), enumerable: true },
    self: { get: () => (state.self ? { ...state.self } : null), enumerable: true },
    trace: { value: (...args) => log(...args), enumerable: true },
    // Hooks for feature scripts loaded after this one (see handleMessage).
    send: { value: (message) => send(message), enumerable: true },
    onMessage: {
      value: (type, fn) => {
        if (!messageListeners.has(type)) messageListeners.set(type, []);
        messageListeners.get(type).push(fn);
      },
      enumerable: true,
    },
    announce: { value: (text) => announce(text), enumerable: true },
  });

  init();
})();
