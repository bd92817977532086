// Keyboard shortcuts in a call: M microphone, V camera, H hand, C chat. Single keys, so they
// only act when focus is not in a text field and no modifier is held, and they can be turned
// off (WCAG 2.1.4) from the "More" menu; the choice is remembered in this browser. Each one
// presses the same button a click would, so labels, announcements and rules stay in one place.

import { el } from '../lib/dom.js';
import { announce } from '../lib/announce.js';
import { exposeProbe } from '../core/probe.js';
import { IN_CALL, state } from '../core/state.js';

const STORAGE_KEY = 'hearth.shortcuts';
const KEYS = { m: 'mic-button', v: 'cam-button', h: 'hand-button', c: 'chat-button' };

let enabled = readSetting();

function readSetting() {
  try {
    return localStorage.getItem(STORAGE_KEY) !== 'off';
  } catch {
    return true;
  }
}

function typing(target) {
  if (!(target instanceof Element)) return false;
  return Boolean(target.closest('input, textarea, select, [contenteditable=""], [contenteditable="true"], dialog[open]'));
}

document.addEventListener('keydown', (event) => {
  if (!enabled || event.altKey || event.ctrlKey || event.metaKey || event.repeat) return;
  if (!IN_CALL.has(state.status) || typing(event.target) || document.querySelector('dialog[open]')) return;
  const id = KEYS[event.key.toLowerCase()];
  const button = id && document.getElementById(id);
  if (!button || button.hidden || button.disabled || button.offsetParent === null) return;
  event.preventDefault();
  button.click();
});

const item = el('button', { id: 'shortcuts-toggle', type: 'button', class: 'menu-item', role: 'switch', 'aria-checked': String(enabled) },
  el('span', { class: 'label', text: 'Keyboard shortcuts' }),
  el('span', { class: 'menu-hint', text: 'M microphone · V camera · H hand · C chat' }));
item.addEventListener('click', () => {
  enabled = !enabled;
  try {
    localStorage.setItem(STORAGE_KEY, enabled ? 'on' : 'off');
  } catch {
    // Private windows may refuse storage: the choice holds for this page.
  }
  item.setAttribute('aria-checked', String(enabled));
  announce(enabled ? 'Keyboard shortcuts are on.' : 'Keyboard shortcuts are off.');
});
const menu = document.getElementById('more-menu');
if (menu) menu.append(item);

exposeProbe('shortcuts', () => enabled);
