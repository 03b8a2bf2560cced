// Shared by our console pages: the state shown on the page, one-time tokens, reconnect
// timing, the power menu, and what to show when the console cannot open.
import { HttpError, closeMenus, requestJson, runPowerAction } from './api.js';

export const root = document.getElementById('console');
const statusEl = document.getElementById('status');
const retryButton = document.getElementById('btn-retry');
const notice = document.getElementById('notice');
const noticeText = document.getElementById('notice-text');
const noticeHint = document.getElementById('notice-hint');
const WATCH_MS = 3000;

// data-state is what tests (and CSS) look at: connecting | connected | reconnecting |
// disconnected | failed (nothing to retry until someone acts: no such console, a role
// refused) | stopped (the VM does not run: the page offers Start and watches for it).
// `detail` ({text, hint}) fills the notice over the console: the whole message and what
// to do; the status line holds one line whatever its length.
export function setState(state, text, detail = null) {
  root.dataset.state = state;
  statusEl.textContent = text;
  statusEl.title = text;
  retryButton.hidden = !['reconnecting', 'failed', 'disconnected'].includes(state);
  notice.hidden = detail === null;
  if (detail !== null) {
    noticeText.textContent = detail.text;
    noticeHint.textContent = detail.hint || '';
  }
}

// The VM's power state drives which power buttons show (CSS on data-power-state).
function setPowerState(state) {
  if (state) root.dataset.powerState = state;
}

// Ask the gateway for a one-time WebSocket URL for this console (valid ~30 s, single use).
async function consoleUrl() {
  const body = await requestJson(root.dataset.tokenUrl, { method: 'POST',
                                                          csrf: root.dataset.csrf });
  const url = new URL(body.url, window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

// Reconnect with back-off (the VM may be rebooting): 1, 2, 4, 8, then every 10 s.
export class Reconnector {
  constructor(connect, maxAttempts = 90) {
    this.connect = connect;
    this.maxAttempts = maxAttempts;
    this.attempts = 0;
    this.timer = null;
  }
  succeeded() { this.attempts = 0; }
  cancel() {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
  schedule(reason) {
    if (this.timer !== null) return;
    this.attempts += 1;
    if (this.attempts > this.maxAttempts) {
      setState('failed', `${reason} — gave up reconnecting`,
               { text: `${reason}. The page stopped trying to reconnect.`,
                 hint: 'Use “Retry now” once the VM or the host is back.' });
      return;
    }
    const delay = Math.min(10, 2 ** Math.min(this.attempts - 1, 4));
    setState('reconnecting', `${reason}; reconnecting in ${delay} s…`);
    this.timer = setTimeout(() => { this.timer = null; this.connect(); }, delay * 1000);
  }
}

// One console on the page.  `open(url)` starts the transport (noVNC, a WebSocket), which
// reports back with opened() and closed(reason).
export class ConsoleSession {
  constructor(open) {
    this.open = open;
    this.reconnector = new Reconnector(() => this.connect());
    this.watchTimer = null;
    this.busy = false;
    retryButton.addEventListener('click', () => this.retryNow());
    const menu = document.getElementById('power');
    menu.addEventListener('toggle', () => { if (menu.open) this.refreshVm(); });
    for (const button of root.querySelectorAll('.power-action')) {
      button.addEventListener('click', () => this.power(button));
    }
  }

  async connect() {
    this.stopWatching();
    setState('connecting', 'Connecting…');
    let url;
    try {
      url = await consoleUrl();
    } catch (err) {
      this.refused(err);
      return;
    }
    setPowerState('Running');  // the host just gave out its console
    this.open(url);
  }

  refused(err) {
    const body = (err instanceof HttpError && err.body) || {};
    if (err.status === 401) return;  // on the way to the sign-in page
    if (body.reason === 'not-running') {
      this.stopped(body);
    } else if (body.permanent) {
      setState('failed', err.message, { text: err.message, hint: body.hint });
    } else {
      this.reconnector.schedule(err.message);
    }
  }

  opened() {
    this.reconnector.succeeded();
    setState('connected', 'Connected');
  }

  closed(reason) {
    if (['stopped', 'failed'].includes(root.dataset.state)) return;
    if (root.dataset.powerState !== 'Running') this.retryNow();  // learn why at once
    else this.reconnector.schedule(reason);
  }

  retryNow() {
    this.reconnector.cancel();
    this.connect();
  }

  // The VM does not run: say so, offer what makes it run, and connect once it does.
  stopped(vm) {
    this.reconnector.cancel();
    setPowerState(vm.power_state);
    setState('stopped', `VM ${vm.power_state.toLowerCase()}`,
             { text: vm.error, hint: vm.hint });
    this.watch();
  }

  watch() {
    this.stopWatching();
    this.watchTimer = setTimeout(async () => {
      this.watchTimer = null;
      const vm = await this.refreshVm();
      if (root.dataset.state !== 'stopped') return;
      if (vm && vm.power_state === 'Running') this.connect();
      else this.watch();
    }, WATCH_MS);
  }

  stopWatching() {
    if (this.watchTimer !== null) clearTimeout(this.watchTimer);
    this.watchTimer = null;
  }

  async refreshVm() {
    try {
      const vm = await requestJson(root.dataset.vmUrl);
      setPowerState(vm.power_state);
      return vm;
    } catch (err) {
      return null;
    }
  }

  async power(button) {
    if (this.busy) return;
    closeMenus();
    this.busy = true;
    root.dataset.busy = '';
    let body;
    try {
      body = await runPowerAction(button, root.dataset.vm, root.dataset.name,
                                  root.dataset.csrf);
    } finally {
      this.busy = false;
      delete root.dataset.busy;
    }
    const state = body && body.power_state ? body.power_state
      : ((await this.refreshVm()) || {}).power_state;
    if (!state) return;
    setPowerState(state);
    const now = root.dataset.state;
    if (state === 'Running' ? now !== 'connected' && now !== 'connecting'
      : now === 'reconnecting' || now === 'disconnected') {
      this.retryNow();
    }
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
