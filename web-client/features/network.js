// The network path, said only when it matters: a calm note when media goes through a relay
// (a TURN server, because the network blocks direct UDP) or over TCP, where video may be of
// lower quality; and, when nothing connects within 10 seconds, a plain message with what to
// try instead of black tiles. Silent on a direct connection.

import { announce } from '../lib/announce.js';
import { el } from '../lib/dom.js';
import { on } from '../core/bus.js';
import { log } from '../core/log.js';
import { exposeProbe } from '../core/probe.js';
import { state } from '../core/state.js';

// How long a new media connection may take before the person is told it is not coming up.
const CONNECT_DEADLINE_MS = 10_000;

const TEXT = {
  relay: 'Connected through a relay: video may be lower quality.',
  tcp: 'Connected over a restricted network: video may be lower quality.',
  stuck: 'We cannot connect your audio and video. The network you are on may block video calls.',
  tryHint: 'You can try: another Wi-Fi network or your phone\u2019s mobile data; turning off a VPN; '
    + 'or asking the network\u2019s IT team to allow video calls (UDP, or HTTPS on port 443). '
    + 'You stay in the room meanwhile and can still use the chat.',
};

const ui = {};
const net = { path: null, relayProtocol: null, notice: null };
let timer = null;

function build() {
  const tiles = document.getElementById('tiles');
  ui.note = el('p', { id: 'network-note', class: 'network-note', role: 'status', hidden: true });
  ui.stuck = el('div', { id: 'network-stuck', class: 'network-stuck', role: 'alert', hidden: true },
    el('p', { class: 'network-stuck-text' }),
    el('p', { class: 'hint network-stuck-hint' }));
  tiles.parentElement.insertBefore(ui.stuck, tiles);
  tiles.parentElement.insertBefore(ui.note, tiles);
}

function showNote(text) {
  net.notice = text;
  ui.note.textContent = text || '';
  ui.note.hidden = !text;
}

function showStuck(on) {
  ui.stuck.hidden = !on;
  ui.stuck.querySelector('.network-stuck-text').textContent = on ? TEXT.stuck : '';
  ui.stuck.querySelector('.network-stuck-hint').textContent = on ? TEXT.tryHint : '';
  if (on) net.notice = TEXT.stuck;
}

// The selected pair's local candidate: its type, and for a relay how we reach the TURN server.
async function selectedPath(pc) {
  const stats = await pc.getStats();
  let pairId = null;
  stats.forEach((r) => { if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId; });
  const pair = pairId ? stats.get(pairId) : [...stats.values()].find((r) => r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded');
  const local = pair && stats.get(pair.localCandidateId);
  if (!local) return null;
  if (local.candidateType === 'relay') return { path: 'relay', relayProtocol: local.relayProtocol || null };
  if (local.protocol === 'tcp') return { path: 'tcp', relayProtocol: null };
  return { path: local.candidateType, relayProtocol: null };
}

async function connected(pc) {
  clearTimeout(timer);
  showStuck(false);
  const found = await selectedPath(pc).catch(() => null);
  if (pc !== state.pc) return;
  net.path = found ? found.path : null;
  net.relayProtocol = found ? found.relayProtocol : null;
  log('media path', net.path, net.relayProtocol || '');
  const text = net.path === 'relay' ? TEXT.relay : net.path === 'tcp' ? TEXT.tcp : null;
  if (text !== net.notice) {
    showNote(text);
    if (text) announce(text);
  }
}

function watch(pc) {
  clearTimeout(timer);
  net.path = null;
  net.relayProtocol = null;
  timer = setTimeout(() => {
    if (pc !== state.pc || pc.connectionState === 'connected') return;
    log('media not connected after', CONNECT_DEADLINE_MS, 'ms:', pc.connectionState);
    showNote(null);
    showStuck(true);
    announce(TEXT.stuck);
  }, CONNECT_DEADLINE_MS);
  pc.addEventListener('connectionstatechange', () => {
    if (pc !== state.pc) return;
    if (pc.connectionState === 'connected') connected(pc);
  });
}

build();
on('local:peerStarted', watch);
on('sessionEnded', () => { clearTimeout(timer); showStuck(false); showNote(null); });

exposeProbe('network', () => ({ ...net, stuck: !ui.stuck.hidden }));
