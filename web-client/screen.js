// Screen sharing: a "Share screen" button for those who may (therapists, and participants a
// therapist allowed), a calm "You are sharing your screen" bar with a stop button, and the
// shared screen shown large above the tiles, with the sharer's camera still in its tile.
// Uses app.js's window.hearth hooks; the server decides who may share (see docs/protocol.md).
(() => {
  'use strict';

  const hearth = window.hearth;
  if (!hearth) return;

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
    const leave = document.getElementById('leave-button');
    ui.button = document.createElement('button');
    ui.button.type = 'button';
    ui.button.id = 'screen-button';
    ui.button.className = 'button toggle';
    ui.button.setAttribute('aria-pressed', 'false');
    ui.button.hidden = true;
    ui.button.innerHTML = '<svg aria-hidden="true" viewBox="0 0 24 24" class="icon"><rect x="3" y="4" width="18" height="12" rx="2"/><path d="M8 20h8M12 16v4"/></svg>'
      + '<span class="label">Share screen</span><span class="short">Share</span>';
    controls.insertBefore(ui.button, leave);
    ui.button.addEventListener('click', () => (share.mine ? stopSharing('stopped') : startSharing()));

    ui.bar = document.createElement('div');
    ui.bar.id = 'screen-sharing-bar';
    ui.bar.className = 'screen-bar';
    ui.bar.setAttribute('role', 'status');
    ui.bar.hidden = true;
    ui.bar.innerHTML = '<span class="text"></span>'
      + '<button type="button" class="button small danger" id="screen-stop">Stop sharing</button>';
    ui.bar.querySelector('#screen-stop').addEventListener('click', () => stopSharing('stopped'));

    // Both above the tiles, where the eye is: the bar (our own share) and the stage (theirs).
    const tiles = document.getElementById('tiles');
    tiles.parentElement.insertBefore(ui.bar, tiles);
    ui.stage = document.createElement('figure');
    ui.stage.id = 'screen-stage';
    ui.stage.className = 'screen-stage';
    ui.stage.hidden = true;
    ui.stage.innerHTML = '<video autoplay playsinline muted></video><figcaption class="screen-caption"></figcaption>';
    tiles.parentElement.insertBefore(ui.stage, tiles);
    ui.video = ui.stage.querySelector('video');
    ui.caption = ui.stage.querySelector('figcaption');
  }

  function nameOf(id) {
    const p = hearth.participants.find((x) => x.id === id);
    return p ? p.name : 'Someone';
  }

  function renderButton() {
    const self = hearth.self;
    const may = hearth.role === 'therapist' || Boolean(self && self.canShareScreen);
    const supported = Boolean(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
    ui.button.hidden = !(may && supported && hearth.state === 'joined' && hearth.admitted) && !share.mine;
    ui.button.setAttribute('aria-pressed', String(Boolean(share.mine)));
    ui.button.querySelector('.label').textContent = share.mine ? 'Stop sharing' : 'Share screen';
    ui.button.querySelector('.short').textContent = share.mine ? 'Stop' : 'Share';
    ui.bar.hidden = !share.mine;
    if (share.mine) {
      const text = ui.bar.querySelector('.text');
      const state = share.mine.failed ? 'failed' : share.mine.forwarded ? 'sharing' : 'starting';
      ui.bar.dataset.state = state;
      text.textContent = state === 'sharing' ? 'You are sharing your screen with the group.'
        : state === 'failed' ? 'Your screen is not reaching the group. Stop sharing and try again.'
          : 'Starting your screen share…';
    }
  }

  async function startSharing() {
    const pc = hearth.pc;
    if (!pc || share.mine) return;
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch (err) {
      // The person closed the picker: nothing to say.
      hearth.trace('screen share not started:', err && err.name);
      return;
    }
    const track = stream.getVideoTracks()[0];
    if (!track || hearth.pc !== pc) {
      stream.getTracks().forEach((t) => t.stop());
      return;
    }
    // Said before the track is added, so the server knows it for a share when it arrives.
    hearth.send({ type: 'screenShare', clientTrackId: track.id, clientStreamId: stream.id, active: true });
    if ('contentHint' in track) track.contentHint = 'detail';
    const sender = pc.addTrack(track, stream);
    share.mine = { stream, track, sender, pc, forwarded: false, failed: false };
    // The browser's own "Stop sharing" button ends the track (also while held for a reconnect).
    track.addEventListener('ended', () => {
      if (share.held && share.held.track === track) share.held = null;
      stopSharing('ended');
    });
    hearth.trace('screen share announced', track.id);
    renderButton();
  }

  function stopSharing(why, { tell = true } = {}) {
    const mine = share.mine;
    if (!mine) return;
    share.mine = null;
    if (tell) hearth.send({ type: 'screenShare', clientTrackId: mine.track.id, active: false });
    try {
      if (mine.pc.signalingState !== 'closed' && mine.pc.getSenders().includes(mine.sender)) mine.pc.removeTrack(mine.sender);
    } catch (err) {
      hearth.trace('removing the screen track failed:', err && err.name);
    }
    mine.track.stop();
    hearth.trace('screen share stopped:', why);
    if (why !== 'reconnect') hearth.announce('You stopped sharing your screen.');
    renderButton();
  }

  function show(participantId, track) {
    share.shown = { participantId, track };
    ui.video.srcObject = new MediaStream([track]);
    ui.video.play().catch(() => {});
    ui.caption.textContent = `${nameOf(participantId)} is sharing their screen`;
    ui.stage.hidden = false;
    ui.stage.setAttribute('aria-label', ui.caption.textContent);
    document.body.classList.add('screen-on-stage');
    const hide = () => hideIf(participantId, track);
    track.addEventListener('ended', hide);
    hearth.announce(`${nameOf(participantId)} is sharing their screen.`);
  }

  function hideIf(participantId, track) {
    if (!share.shown || share.shown.participantId !== participantId) return;
    if (track && share.shown.track !== track) return;
    share.shown = null;
    ui.video.srcObject = null;
    ui.stage.hidden = true;
    document.body.classList.remove('screen-on-stage');
  }

  build();

  hearth.onMessage('screenTrack', ({ track, stream, participantId }) => {
    if (track.kind !== 'video') return;
    show(participantId, track);
    if (stream) stream.addEventListener('removetrack', (e) => { if (e.track === track) hideIf(participantId, track); });
  });
  hearth.onMessage('participantUpdated', ({ participant }) => {
    if (!participant.screenSharing) hideIf(participant.id);
    if (participant.id === hearth.participantId && share.mine && participant.canShareScreen === false) {
      // A therapist stopped our share: the server no longer forwards it.
      stopSharing('revoked', { tell: false });
      hearth.announce('The therapist stopped your screen sharing.');
    }
    renderButton();
  });
  hearth.onMessage('participantLeft', ({ participantId }) => hideIf(participantId));
  hearth.onMessage('spaceChanged', () => { if (share.shown) hideIf(share.shown.participantId); });
  // The server's word that the others receive our share: only now do we say "sharing".
  hearth.onMessage('screenShareForwarded', () => {
    if (!share.mine || share.mine.forwarded) return;
    share.mine.forwarded = true;
    share.mine.failed = false;
    hearth.announce('You are sharing your screen with the group.');
    renderButton();
  });
  hearth.onMessage('error', (message) => {
    if (message.code === 'forbidden' && share.mine && /screen/.test(message.message || '')) stopSharing('refused', { tell: false });
    if (message.code === 'screen_share_not_received' && share.mine && !share.mine.forwarded) {
      share.mine.failed = true;
      hearth.announce('Your screen is not reaching the group. Stop sharing and try again.');
      renderButton();
    }
  });
  // A new connection (reconnect, moved node) starts without our share. While the captured
  // screen is still live it goes on by itself on the new connection, once we are back in the
  // room: nobody has to pick the window again in the middle of a session.
  function resumeSharing() {
    const held = share.held;
    const pc = hearth.pc;
    if (!held || !pc || !hearth.admitted) return;
    share.held = null;
    if (held.track.readyState !== 'live') {
      hearth.announce('You stopped sharing your screen.');
      renderButton();
      return;
    }
    hearth.send({ type: 'screenShare', clientTrackId: held.track.id, clientStreamId: held.stream.id, active: true });
    share.mine = { stream: held.stream, track: held.track, sender: pc.addTrack(held.track, held.stream), pc, forwarded: false, failed: false };
    hearth.trace('screen share resumed on the new connection', held.track.id);
    renderButton();
  }
  hearth.onMessage('joined', () => {
    if (share.mine) {
      // The old connection is gone, and its sender with it; the capture itself goes on.
      share.held = { stream: share.mine.stream, track: share.mine.track };
      share.mine = null;
    }
    hideIf(share.shown && share.shown.participantId);
    resumeSharing();
    renderButton();
  });
  hearth.onMessage('admitted', resumeSharing);
  for (const type of ['admitted', 'waitingList', 'roomStateChanged', 'participantJoined']) hearth.onMessage(type, renderButton);
  renderButton();
})();
