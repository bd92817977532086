// The page's own log: kept in memory so tests and support can read what happened
// (window.hearth.log). Tokens are never logged.

const LOG_LIMIT = 500;
const lines = [];

export function log(...parts) {
  const line = `${new Date().toISOString().slice(11, 23)} ${parts.map(String).join(' ')}`;
  lines.push(line);
  if (lines.length > LOG_LIMIT) lines.shift();
  console.debug('[hearth]', line);
}

/** A copy of the log so far, oldest first. */
export const logLines = () => lines.slice();
