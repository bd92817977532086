// DOM helpers shared by the whole client. Everything from the server is set as text
// (textContent, attributes), never parsed as markup; no `style` attributes either, because the
// server's Content-Security-Policy (style-src 'self') refuses them: sizes go through the CSSOM.

/** The element with this id. */
export const byId = (id) => document.getElementById(id);

/**
 * Puts `node` just before the element with id `anchorId`, once: nothing while the anchor is not
 * on the page yet or `node` is already placed (features mount lazily, on first render).
 */
export function placeBefore(node, anchorId) {
  if (node.isConnected) return;
  const anchor = byId(anchorId);
  if (anchor && anchor.parentElement) anchor.parentElement.insertBefore(node, anchor);
}

/** The first element matching `selector` (in `root`, the document by default). */
export const qs = (selector, root = document) => root.querySelector(selector);

/**
 * Builds an element: `el('button', { class: 'button', text: 'OK', onclick: fn }, child, ...)`.
 * `text` sets the text, `class` the class name, `on…` adds a listener; `true` makes an empty
 * (boolean) attribute and `false`, `null` or `undefined` leaves the attribute out. Children may
 * be nodes, strings or arrays of them; `null`, `undefined`, `false` and '' are skipped.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === 'text') node.textContent = value;
    else if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false && child !== '') node.append(child);
  }
  return node;
}

/** Text only screen readers read (the `.visually-hidden` class). */
export const visuallyHidden = (text) => el('span', { class: 'visually-hidden', text });

/** Puts `rows` into `list` in order, touching the DOM only when the order changed (moving an
 *  element loses keyboard focus inside it). */
export function placeInOrder(list, rows) {
  const same = list.children.length === rows.length && rows.every((li, i) => list.children[i] === li);
  if (!same) list.replaceChildren(...rows);
}
