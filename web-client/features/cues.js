// Gentle cues for a therapist who is busy talking: a soft chime when someone enters the waiting
// room (the tab title counts who waits: core/roster.js), and a softer tone with a passing note
// when a hand goes up. Sounds are made with WebAudio (nothing to download) and stay quiet.
// Owns only its sounds and notes; the waiting list and hands are drawn by core/roster.js.

import { toast } from '../lib/toast.js';
import { playTones } from '../lib/tone.js';
import { on } from '../core/bus.js';
import { log } from '../core/log.js';
import { exposeProbe } from '../core/probe.js';
import { isTherapist, state } from '../core/state.js';

let audio = null;
const played = []; // for tests and debugging: which cues sounded
const waitingSeen = new Set();
const handsSeen = new Set();

// Notes as [frequency Hz, start s]: two rising notes for an arrival, one for a hand.
const CHIMES = { arrival: [[660, 0], [880, 0.18]], hand: [[740, 0]] };

function play(kind) {
  played.push(kind);
  try {
    audio = audio || new AudioContext();
    // Soft attack and a long fade: a chime, not a beep.
    playTones(audio, CHIMES[kind], { peak: 0.08, attack: 0.02, fade: 0.9, length: 1 });
  } catch (err) {
    log('cue could not sound', err);
  }
}

on('waitingList', (m) => {
  const waiting = m.waiting || [];
  const fresh = waiting.filter((w) => !waitingSeen.has(w.id));
  waitingSeen.clear();
  for (const w of waiting) waitingSeen.add(w.id);
  if (isTherapist() && fresh.length) play('arrival');
});

on('participantUpdated', (m) => {
  const p = m.participant;
  if (!p || p.id === state.participantId) return;
  const wasUp = handsSeen.has(p.id);
  if (p.handRaised) handsSeen.add(p.id);
  else handsSeen.delete(p.id);
  if (!isTherapist() || !p.handRaised || wasUp) return;
  play('hand');
  toast(`${p.name} raised their hand`);
});

on('participantLeft', (m) => handsSeen.delete(m.participantId));
on('admitted', (m) => {
  handsSeen.clear();
  for (const p of m.participants || []) if (p.handRaised) handsSeen.add(p.id);
});

exposeProbe('cues', () => played.slice());
