// Family spaces (docs/protocol.md, "Family spaces"): part of a session a member spends with their
// relatives. A therapist opens one from a family guest's row in the waiting room ("Open family
// space", then Admit) and ends it here ("End the family part"); the guest and the member see
// where they are. The server decides who is where and who sees whom; this page only says so and
// sends the therapist's two messages.

import { announce } from '../lib/announce.js';
import { on } from '../core/bus.js';
import { send } from '../core/connection.js';
import { exposeProbe } from '../core/probe.js';
import { renderWaiting } from '../core/roster.js';
import { state } from '../core/state.js';

const section = document.getElementById('family-section');
const text = document.getElementById('family-text');
const closeButton = document.getElementById('family-close-button');

/** The member whose family space this is: the one in it who is neither staff nor a guest. */
function sponsorOf(participants) {
  return participants.find((p) => p.role === 'participant' || p.role === 'peerSupport') || null;
}

function render(space, participants) {
  const inFamily = Boolean(space && space.id.startsWith('family-'));
  section.hidden = !inFamily;
  const sponsor = inFamily ? sponsorOf(participants) : null;
  const before = state.familySponsor;
  state.familySponsor = sponsor ? sponsor.id : null;
  closeButton.hidden = !inFamily || state.role !== 'therapist';
  if (!inFamily) {
    if (before) announce('The family part of the session has ended.');
  } else if (state.role === 'therapist') {
    const name = sponsor ? sponsor.name : 'your client';
    text.textContent = `You and ${name} are in a family space. Admit their guests from the waiting room; `
      + 'no one else in the group can see or hear you here.';
  } else if (state.role === 'familyGuest') {
    text.textContent = 'You are in a private family space with your family member and their therapist. '
      + 'No one else in the group can see or hear you.';
  } else {
    text.textContent = 'You are in a family space with your therapist and your guests. '
      + 'The rest of the group cannot see or hear you here.';
  }
  if (inFamily && !before) announce('You are now in a family space.');
  renderWaiting();
}

on('spaceChanged', (m) => render(m.breakout || null, m.participants || []));
on('admitted', (m) => {
  // A guest is admitted straight into the family space: `spaceChanged` follows at once.
  if (state.role !== 'familyGuest') render(null, m.participants || []);
});
on('spaceRoster', (m) => {
  if (!section.hidden) render({ id: 'family-' }, m.participants || []);
});
on('sessionEnded', () => { section.hidden = true; state.familySponsor = null; });

closeButton.addEventListener('click', () => {
  if (state.familySponsor) send({ type: 'closeFamilySpace', sponsorId: state.familySponsor });
});

exposeProbe('family', () => ({ inFamilySpace: !section.hidden, sponsor: state.familySponsor }));
