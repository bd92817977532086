// Times, counts and names as people read them.

/** "4:05" (or "1:04:05" from an hour up) for a time left in milliseconds; never negative. */
export function formatLeft(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/** The time of day, "14:05", in the person's own format. */
export function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** A date, "4 Dec 2026", in the person's own format. */
export function formatDate(ms) {
  return new Date(ms).toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
}

/** "1 vote", "3 votes". */
export function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

/** Up to two initials for an avatar ("Dr. Rivera" -> "DR"), "?" for no name. */
export function initials(name) {
  const words = String(name || '').trim().split(/\s+/).filter(Boolean);
  const letters = words.slice(0, 2).map((w) => Array.from(w)[0].toUpperCase());
  return letters.join('') || '?';
}
