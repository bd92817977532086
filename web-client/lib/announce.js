// The page's one polite screen reader live region (#announcer in index.html). Roster changes,
// polls, breakouts, milestones... all speak through it, apart from the connection status
// (#status) and the alerts (role="alert"), which have live regions of their own.

let region = null;

/** Says `message` politely. Repeating the same words announces them again. */
export function announce(message) {
  region = region || document.getElementById('announcer');
  if (!region) return;
  // Clearing first makes repeated identical messages ("Sam joined" twice) announce again.
  region.textContent = '';
  setTimeout(() => { region.textContent = message; }, 50);
}
