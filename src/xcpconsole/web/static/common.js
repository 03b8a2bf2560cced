// Shared by our console pages: state shown on the page, one-time tokens, reconnect timing.

export const root = document.getElementById('console');
const statusEl = document.getElementById('status');

// data-state is what tests (and CSS) look at: connecting | connected | reconnecting |
// disconnected | failed.
export function setState(state, text) {
  root.dataset.state = state;
  statusEl.textContent = text;
}

export class HttpError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// Ask the gateway for a one-time WebSocket URL for this console (valid ~30 s, single use).
export async function consoleUrl() {
  const resp = await fetch(root.dataset.tokenUrl, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'X-CSRF-Token': root.dataset.csrf },
  });
  if (resp.status === 401) {
    window.location.href = '/login';
    throw new HttpError('signed out', 401, {});
  }
  let body = {};
  try { body = await resp.json(); } catch (e) { /* not JSON */ }
  if (!resp.ok) throw new HttpError(body.error || resp.statusText, resp.status, body);
  const url = new URL(body.url, window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

// Reconnect with back-off (the VM may be rebooting): 1, 2, 4, 8, then every 10 s.
// Show "connecting" and get a fresh WebSocket URL; null when a retry was scheduled instead
// (or when the page is on its way to the sign-in page).
export async function nextConsoleUrl(reconnector) {
  setState('connecting', 'Connecting…');
  try {
    return await consoleUrl();
  } catch (err) {
    if (err.body && err.body.permanent) {
      setState('failed', err.message);  // e.g. a read-only role: retrying cannot help
    } else if (err.status !== 401) {
      reconnector.schedule(err.message);
    }
    return null;
  }
}

export class Reconnector {
  constructor(connect, maxAttempts = 90) {
    this.connect = connect;
    this.maxAttempts = maxAttempts;
    this.attempts = 0;
    this.timer = null;
  }
  succeeded() { this.attempts = 0; }
  schedule(reason) {
    if (this.timer !== null) return;
    this.attempts += 1;
    if (this.attempts > this.maxAttempts) {
      setState('failed', `${reason} — gave up reconnecting`);
      return;
    }
    const delay = Math.min(10, 2 ** Math.min(this.attempts - 1, 4));
    setState('reconnecting', `${reason}; reconnecting in ${delay} s…`);
    this.timer = setTimeout(() => { this.timer = null; this.connect(); }, delay * 1000);
  }
}

export function wireFullscreen(target) {
  const button = document.getElementById('btn-fullscreen');
  if (!button) return;
  button.addEventListener('click', () => {
    if (document.fullscreenElement) document.exitFullscreen();
    else target.requestFullscreen().catch(() => {});
  });
}
