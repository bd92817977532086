// Inline SVG icons, one copy each. Decorative (aria-hidden): every control that shows one also
// has a text label. Built with the DOM, not innerHTML, so nothing is parsed as markup.

const NS = 'http://www.w3.org/2000/svg';

/**
 * An `<svg class="icon">` of the given shapes: a string is a path's `d`, an array is
 * `[tag, attributes]` (e.g. `['rect', { x: 3, y: 4, width: 18, height: 12, rx: 2 }]`).
 */
export function svgIcon(shapes, { className = 'icon', shapeAttrs = null, focusable = null } = {}) {
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', className);
  svg.setAttribute('aria-hidden', 'true');
  if (focusable !== null) svg.setAttribute('focusable', String(focusable));
  for (const shape of shapes) {
    const [tag, attrs] = typeof shape === 'string' ? ['path', { d: shape }] : shape;
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (shapeAttrs) for (const [k, v] of Object.entries(shapeAttrs)) node.setAttribute(k, String(v));
    svg.append(node);
  }
  return svg;
}

export const ICONS = Object.freeze({
  chat: ['M4 5h16v11H9l-5 4z'],
  heart: ['M12 20.5s-7.6-4.6-9.2-9.2C1.6 7.9 3.8 4.5 7.1 4.5c2 0 3.4 1.1 4.9 3 1.5-1.9 2.9-3 4.9-3 3.3 0 5.5 3.4 4.3 6.8-1.6 4.6-9.2 9.2-9.2 9.2z'],
  door: ['M4 21h16', 'M6 21V4h10v17', 'M13 12h.01', 'M16 6l3 1v14'],
  help: ['M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18z', 'M9.5 9a2.5 2.5 0 1 1 3.5 2.3c-.6.3-1 .9-1 1.6v.6', 'M12 17h.01'],
  megaphone: ['M3 10v4h3l6 4V6L6 10z', 'M16 9a4 4 0 0 1 0 6', 'M19 6a8 8 0 0 1 0 12'],
  check: ['M5 12.5l4.5 4.5L19 7'],
  screen: [['rect', { x: 3, y: 4, width: 18, height: 12, rx: 2 }], 'M8 20h8M12 16v4'],
});
