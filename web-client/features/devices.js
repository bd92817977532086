// Checking one's devices, in the waiting room and from "More" in the call: choose the camera,
// microphone and speaker, watch a live microphone level, play a test sound, and choose whether
// your own picture is mirrored, and whether your background is blurred. Switching a device goes
// through core/media.js (switchDevice), blurring through core/blur.js (setBlur, which keeps
// that choice); this module owns only its dialog and the mirror choice (remembered in this
// browser).

import { byId, el } from '../lib/dom.js';
import { announce } from '../lib/announce.js';
import { playTones } from '../lib/tone.js';
import { blurState, setBlur } from '../core/blur.js';
import { on } from '../core/bus.js';
import { log } from '../core/log.js';
import { switchDevice } from '../core/media.js';
import { exposeProbe } from '../core/probe.js';
import { IN_CALL, publishes, state } from '../core/state.js';

const MIRROR_KEY = 'hearth.mirror';

const dev = { level: 0, peak: 0, meterTimer: null, context: null, sink: '', mirror: readMirror() };

function readMirror() {
  try {
    return localStorage.getItem(MIRROR_KEY) !== 'off';
  } catch {
    return true;
  }
}

const cameraSelect = el('select', { id: 'dev-camera', class: 'text-field' });
const micSelect = el('select', { id: 'dev-mic', class: 'text-field' });
const speakerSelect = el('select', { id: 'dev-speaker', class: 'text-field' });
const meter = el('meter', { id: 'dev-level', min: '0', max: '1', low: '0.15', high: '0.8', optimum: '0.5', value: '0' });
const status = el('p', { id: 'dev-status', class: 'hint', role: 'status' });
const mirror = el('input', { id: 'dev-mirror', type: 'checkbox', checked: dev.mirror });
const blurSwitch = el('input', { id: 'dev-blur', type: 'checkbox', role: 'switch', checked: blurState().wanted, 'aria-describedby': 'dev-blur-status' });
const blurStatus = el('p', { id: 'dev-blur-status', class: 'hint', 'aria-live': 'polite' });
const testButton = el('button', { id: 'dev-test-sound', type: 'button', class: 'button small', text: 'Play a test sound' });
const field = (label, control, hint) => el('div', { class: 'field' },
  el('label', { for: control.id, text: label }), control, hint ? el('p', { class: 'hint', text: hint }) : null);

const speakerField = field('Speaker', speakerSelect);
const dialog = el('dialog', { id: 'devices-dialog', class: 'devices-dialog', 'aria-labelledby': 'devices-heading' },
  el('form', { method: 'dialog' },
    el('h2', { id: 'devices-heading', text: 'Camera, microphone and speaker' }),
    field('Camera', cameraSelect),
    field('Microphone', micSelect),
    el('div', { class: 'field' },
      el('label', { for: 'dev-level', text: 'Microphone level' }), meter,
      el('p', { class: 'hint', text: 'Speak: the bar moves when your microphone hears you.' })),
    speakerField,
    el('div', { class: 'field' }, testButton),
    el('div', { class: 'field check-field' }, mirror, el('label', { for: 'dev-mirror', text: 'Mirror my own picture (only you see it mirrored)' })),
    el('div', { class: 'field' },
      el('div', { class: 'check-field' }, blurSwitch, el('label', { for: 'dev-blur', text: 'Blur my background' })),
      blurStatus),
    status,
    el('div', { class: 'confirm-actions' }, el('button', { type: 'submit', class: 'button accent', text: 'Done' }))));
document.body.append(dialog);

const menuItem = el('button', { id: 'devices-open', type: 'button', class: 'menu-item', 'aria-haspopup': 'dialog' },
  el('span', { class: 'label', text: 'Camera, microphone and speaker…' }));
const lobbyButton = el('button', { id: 'devices-lobby', type: 'button', class: 'button secondary devices-lobby', 'aria-haspopup': 'dialog', text: 'Check camera, microphone and speaker' });

let opener = null;

async function fillSelects() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const stream = state.localStream;
  const current = (kind) => {
    const track = stream && (kind === 'audioinput' ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0]);
    return track && track.getSettings ? track.getSettings().deviceId : '';
  };
  for (const [select, kind, noun] of [[cameraSelect, 'videoinput', 'Camera'], [micSelect, 'audioinput', 'Microphone'], [speakerSelect, 'audiooutput', 'Speaker']]) {
    const list = devices.filter((d) => d.kind === kind);
    select.replaceChildren(...list.map((d, i) => el('option', { value: d.deviceId, text: d.label || `${noun} ${i + 1}` })));
    select.disabled = list.length === 0;
    const chosen = kind === 'audiooutput' ? dev.sink : current(kind);
    if (chosen && list.some((d) => d.deviceId === chosen)) select.value = chosen;
  }
  // Choosing a speaker needs setSinkId (not every browser has it).
  speakerField.hidden = !('setSinkId' in HTMLMediaElement.prototype) || speakerSelect.options.length === 0;
}

function startMeter() {
  stopMeter();
  const track = state.localStream && state.localStream.getAudioTracks()[0];
  if (!track) {
    status.textContent = 'No microphone is in use.';
    return;
  }
  try {
    dev.context = new AudioContext();
    const source = dev.context.createMediaStreamSource(new MediaStream([track]));
    const analyser = dev.context.createAnalyser();
    analyser.fftSize = 1024;
    source.connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    dev.meterTimer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const v of samples) sum += v * v;
      // RMS, scaled so a normal voice fills about half the bar.
      dev.level = Math.min(1, Math.sqrt(sum / samples.length) * 4);
      dev.peak = Math.max(dev.peak, dev.level);
      meter.value = dev.level;
    }, 100);
  } catch (err) {
    log('level meter failed', err);
  }
}

function stopMeter() {
  clearInterval(dev.meterTimer);
  dev.meterTimer = null;
  if (dev.context) dev.context.close().catch(() => {});
  dev.context = null;
  meter.value = 0;
}

async function open(from) {
  opener = from;
  status.textContent = '';
  dev.peak = 0;
  dialog.showModal();
  try {
    await fillSelects();
  } catch (err) {
    log('could not list devices', err);
    status.textContent = 'This browser did not list your devices.';
  }
  startMeter();
}

dialog.addEventListener('close', () => {
  stopMeter();
  if (opener && opener.isConnected && opener.offsetParent !== null) opener.focus();
  else {
    const more = byId('more-button');
    if (more) more.focus();
  }
});

async function onChoose(kind, select) {
  if (!select.value) return;
  status.textContent = 'Switching…';
  try {
    await switchDevice(kind, select.value);
    status.textContent = kind === 'audio' ? 'Microphone changed.' : 'Camera changed.';
    announce(status.textContent);
    if (kind === 'audio') startMeter();
  } catch (err) {
    log('could not switch', kind, err && err.name);
    status.textContent = `That ${kind === 'audio' ? 'microphone' : 'camera'} could not be used. The one before is still on.`;
  }
}
cameraSelect.addEventListener('change', () => onChoose('video', cameraSelect));
micSelect.addEventListener('change', () => onChoose('audio', micSelect));
speakerSelect.addEventListener('change', async () => {
  dev.sink = speakerSelect.value;
  // Every video element that plays sound from the room follows the chosen speaker.
  for (const video of document.querySelectorAll('#tiles .tile.remote video, audio')) {
    if (video.setSinkId) await video.setSinkId(dev.sink).catch((err) => log('setSinkId failed', err));
  }
  status.textContent = 'Speaker changed.';
});

testButton.addEventListener('click', async () => {
  // A short, soft two-note sound through the chosen speaker.
  const context = new AudioContext();
  try {
    if (dev.sink && context.setSinkId) await context.setSinkId(dev.sink);
  } catch (err) {
    log('test sound on the chosen speaker failed', err);
  }
  playTones(context, [[523, 0], [659, 0.25], [784, 0.5]], { peak: 0.15, attack: 0.03, fade: 0.6, length: 0.65 });
  status.textContent = 'Playing a test sound. If you did not hear it, choose another speaker or turn up the volume.';
  setTimeout(() => context.close().catch(() => {}), 1500);
});

function applyMirror() {
  document.body.classList.toggle('no-mirror', !dev.mirror);
}
mirror.addEventListener('change', () => {
  dev.mirror = mirror.checked;
  try {
    localStorage.setItem(MIRROR_KEY, dev.mirror ? 'on' : 'off');
  } catch {
    // Private windows may refuse storage: the choice holds for this page.
  }
  applyMirror();
});

blurSwitch.addEventListener('change', () => {
  setBlur(blurSwitch.checked);
});
function showBlur({ wanted, status: now, text }) {
  blurSwitch.checked = wanted;
  blurStatus.textContent = text;
  blurStatus.dataset.state = now;
}
on('local:blur', showBlur);
showBlur(blurState());

menuItem.addEventListener('click', () => open(byId('more-button')));
lobbyButton.addEventListener('click', () => open(lobbyButton));

const menu = byId('more-menu');
if (menu) menu.prepend(menuItem);
const preview = byId('preview');
if (preview) preview.after(lobbyButton);

// Only people who send media have devices to check; only in a call is there a stream.
const sync = () => {
  const show = publishes() && IN_CALL.has(state.status);
  menuItem.hidden = !show;
  lobbyButton.hidden = !show;
};
new MutationObserver(sync).observe(byId('status'), { attributes: true, attributeFilter: ['data-state'] });
sync();
applyMirror();

exposeProbe('devices', () => ({ level: dev.level, peak: dev.peak, mirror: dev.mirror, sink: dev.sink }));
