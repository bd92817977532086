// The client's state: everything that changes lives here, so there is one place to look when
// debugging. Core modules change it; features only read it (their own state is their own).

export const state = {
  // 'idle' | 'connecting' | 'waiting' | 'joined' | 'reconnecting' | 'left' | 'ended'
  status: 'idle',
  devTokens: false,
  // The clinic's own words from /api/info (clinic.* in the server's configuration).
  clinic: { noLinkText: '', supportResourcesText: '' },
  token: '',
  claims: null, // decoded token payload: { sub, room, role, name, exp }
  fromForm: false,
  roomId: '',
  name: '',
  role: 'participant',
  ws: null,
  pc: null,
  participantId: null,
  admitted: false,
  // The rows of the server's permission table this role may send here (from `admitted`).
  permissions: new Set(),
  iceServers: [],
  room: { locked: false, waitingRoom: true, spotlight: null, e2ee: 'off' },
  self: null, // our own ParticipantInfo, as the server last described it
  participants: new Map(), // everyone else in our space: participantId -> ParticipantInfo
  space: null, // the breakout (or private room) we are in, { id, name }; null: the main room
  spacesUsed: false, // people have moved between spaces this session (breakouts, private rooms)
  waiting: [], // therapists only: [{ id, name, role, sponsor?, sponsorName? }]
  familySponsor: null, // the participant whose family space we are in (features/family.js)
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
  openMenu: null, // therapists: whose actions menu is open
  menuOn: 'row', // where that menu shows: 'row' (the people list) or 'tile' (their video)
  // What the waiting room says (the server's `waitingRoom`): group, therapist, welcome.
  door: { groupName: null, therapistName: null, therapistHere: false, welcome: null, sessionEnded: false },
  invite: '', // an invite link's token, until the person has typed their name
  closingMessage: '', // therapists: the closing words for the group's end screen
  confirmRemove: null, // participantId whose Remove is awaiting confirmation
  peerGeneration: null, // which startPeer() may still create the connection
  makingOffer: false,
  offerTimer: null,
  iceRestarted: false,
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
};

export const ROLE_LABEL = {
  therapist: 'Therapist',
  coFacilitator: 'Co-facilitator',
  peerSupport: 'Peer support',
  participant: 'Participant',
  observer: 'Observer',
  familyGuest: 'Family guest',
};

// The statuses in which the call view shows (and a lost socket reconnects).
export const IN_CALL = new Set(['connecting', 'waiting', 'joined', 'reconnecting']);

export const isTherapist = () => state.role === 'therapist';
// Therapists and co-facilitators: they see the waiting room and admit (the server's permission
// table says what else each may do).
export const isStaff = () => state.role === 'therapist' || state.role === 'coFacilitator';
export const publishes = () => state.role !== 'observer';
// Whether the server lets this page send `action` (a row of the permission table, e.g.
// 'openBreakouts' or "lowerHand (another's)"): controls show only where they work.
export const can = (action) => state.permissions.has(action);

/** Everyone else in our space, in join order. */
export const participantList = () => [...state.participants.values()];

/** "You", the person's name, or "Someone" if they are not (or no longer) in our space. */
export function nameOf(participantId) {
  if (participantId === state.participantId) return 'You';
  const p = state.participants.get(participantId);
  return p ? p.name : 'Someone';
}
