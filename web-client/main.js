// Hearth web client: joins a room over the signaling websocket with a join token and exchanges
// media with the server's SFU through a single RTCPeerConnection. Native ES modules, no build
// step; this is the one entry point (index.html: <script type="module" src="main.js">).
//
// How someone gets a token: a join link (`#token=<jwt>` in the address), or, on a development
// server only, the join form (POST /dev/token). The token names the room, the person and their
// role; the server enforces every rule, this page only reflects what the server says.
//
//   lib/       one copy of each helper: dom.js (el, byId, qs…), announce.js (the live region),
//              icons.js, format.js (times, counts, initials), toast.js (passing notes)
//   core/      bus.js (server messages by type), state.js, connection.js (token, websocket,
//              reconnects, redirects, errors), negotiation.js (the peer connection), media.js,
//              session.js, tiles.js, roster.js, view.js, landing.js, page.js (page controls),
//              codes.js (the error codes the client acts on), probe.js (window.hearth),
//              dialog.js (the confirmation dialog), blur.js (background blur on this device)
//   features/  polls, milestones, chat, breakouts, screen, quality, cues,
//              shortcuts, devices, presence, queue (speaking order), rounds (go-arounds),
//              agreement (ground rules at the door), talktime (therapists' talk-time chart),
//              agenda (items and segment timer), network, checkin, partners (accountability
//              partners), door (invites, the waiting room welcome, arrivals a lock turned
//              away): each registers its own
//              handlers on the bus and builds its own part of the page
//   e2ee/      end-to-end encryption: sframe.js (RFC 9605 crypto), worker.js (the frame
//              transforms), frames.js (attaching them), keys.js (key leader and members), ui.js
//
// Order matters only in one way: the core modules register their bus handlers first, so every
// feature sees a message after the core has updated the state. ES modules evaluate in import
// order, so the core is imported here before the features.

import './core/connection.js';
import './core/negotiation.js';
import './core/session.js';
import './core/tiles.js';
import './core/blur.js';
import { sealProbe } from './core/probe.js';
import { init } from './core/page.js';

import './features/polls.js';
import './features/milestones.js';
import './features/chat.js';
import './features/breakouts.js';
import './features/screen.js';
import './features/quality.js';
import './features/cues.js';
import './features/shortcuts.js';
import './features/devices.js';
import './features/presence.js';
import './features/network.js';
import './e2ee/ui.js';
import './features/queue.js';
import './features/rounds.js';
import './features/agreement.js';
import './features/talktime.js';
import './features/agenda.js';
import './features/checkin.js';
import './features/partners.js';
import './features/family.js';
import './features/door.js';

sealProbe();
init();
