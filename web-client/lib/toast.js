// Small passing notes ("Ana raised their hand") at the top right of the window, where they
// never cover the control bar. Each goes by itself after a few seconds or with its close button;
// screen readers hear them through the polite live region (lib/announce.js), not from here.

import { el } from './dom.js';

const SHOW_MS = 6000;

let stack = null;

export function toast(text) {
  if (!stack) {
    stack = el('div', { id: 'toasts', class: 'toasts' });
    document.body.append(stack);
  }
  const note = el('div', { class: 'toast' }, el('p', { class: 'toast-text', text }));
  note.append(el('button', {
    type: 'button', class: 'toast-close', 'aria-label': 'Dismiss', onclick: () => note.remove(),
  }, el('span', { 'aria-hidden': 'true', text: '\u00D7' })));
  stack.append(note);
  window.setTimeout(() => note.remove(), SHOW_MS);
  return note;
}
