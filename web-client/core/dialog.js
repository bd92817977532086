// The one confirmation dialog (#confirm-dialog) for actions that end something: ending the
// session for everyone, leaving on a phone. A native modal <dialog>: focus moves into it (onto
// the safe choice), Escape cancels, and focus goes back to the button that opened it.

import { byId } from '../lib/dom.js';

const dialog = byId('confirm-dialog');
const title = byId('confirm-title');
const text = byId('confirm-text');
const extra = byId('confirm-extra');
const yes = byId('confirm-yes');
const no = byId('confirm-no');

let settle = null;

/**
 * Asks `question` (`heading`, `body`, the `confirm` label, optional `content` nodes inside the
 * form) and resolves true when the person confirms, false on Cancel or Escape.
 */
export function confirmAction({ heading, body, confirm, content = [] }) {
  if (settle) settle(false);
  const opener = document.activeElement;
  title.textContent = heading;
  text.textContent = body;
  extra.replaceChildren(...content);
  yes.textContent = confirm;
  dialog.returnValue = '';
  dialog.showModal();
  no.focus();
  return new Promise((resolve) => {
    settle = (answer) => {
      settle = null;
      resolve(answer);
    };
    dialog.addEventListener('close', () => {
      const answer = dialog.returnValue === 'yes';
      if (settle) settle(answer);
      if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
    }, { once: true });
  });
}

/** Closes the dialog as if cancelled (the session ended under it). */
export function dismissConfirm() {
  if (dialog.open) dialog.close('no');
}
