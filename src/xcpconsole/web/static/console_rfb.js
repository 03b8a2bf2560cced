// Graphical console: noVNC's RFB library on our own page, over the gateway's WebSocket.
import RFB from '/static/vendor/novnc/core/rfb.js';
import { root, setState, nextConsoleUrl, Reconnector, wireFullscreen } from './common.js';

const screen = document.getElementById('screen');
const cad = document.getElementById('btn-cad');
const scale = document.getElementById('opt-scale');
const power = document.getElementById('power');
const dialog = document.getElementById('confirm');
const confirmText = document.getElementById('confirm-text');
const clipText = document.getElementById('clip-text');

let rfb = null;
const reconnector = new Reconnector(connect);

async function connect() {
  const url = await nextConsoleUrl(reconnector);
  if (url === null) return;
  const conn = new RFB(screen, url, { wsProtocols: ['binary'], shared: true });
  rfb = conn;
  window.xcpRfb = conn;
  conn.scaleViewport = scale.checked;
  conn.resizeSession = false;
  conn.focusOnClick = true;
  conn.addEventListener('connect', () => {
    reconnector.succeeded();
    cad.disabled = false;
    setState('connected', 'Connected');
    conn.focus();
  });
  conn.addEventListener('disconnect', (ev) => {
    if (rfb !== conn) return;
    rfb = null;
    cad.disabled = true;
    power.hidden = true;
    reconnector.schedule(ev.detail.clean ? 'Console closed' : 'Connection lost');
  });
  conn.addEventListener('capabilities', () => { power.hidden = !conn.capabilities.power; });
  conn.addEventListener('clipboard', (ev) => { clipText.value = ev.detail.text; });
  conn.addEventListener('desktopname', (ev) => { root.dataset.desktopName = ev.detail.name; });
}

cad.addEventListener('click', () => { if (rfb) rfb.sendCtrlAltDel(); });
scale.addEventListener('change', () => { if (rfb) rfb.scaleViewport = scale.checked; });
wireFullscreen(screen);

const ACTIONS = {
  shutdown: ['Shut down', 'machineShutdown'],
  reboot: ['Reboot', 'machineReboot'],
  reset: ['Reset (hard reboot)', 'machineReset'],
};
for (const button of power.querySelectorAll('button[data-action]')) {
  button.addEventListener('click', () => {
    const [label, method] = ACTIONS[button.dataset.action];
    confirmText.textContent = `${label} “${root.dataset.name}”?`;
    dialog.returnValue = '';
    dialog.onclose = () => {
      if (dialog.returnValue === 'ok' && rfb) rfb[method]();
    };
    dialog.showModal();
  });
}

// Clipboard: "Send" puts the text in the guest's clipboard; "Type" types it as key presses
// (for consoles without a clipboard, like a text terminal or a BIOS screen).
document.getElementById('btn-clip-send').addEventListener('click', () => {
  if (rfb) rfb.clipboardPasteFrom(clipText.value);
});
document.getElementById('btn-clip-type').addEventListener('click', () => {
  if (!rfb) return;
  for (const ch of clipText.value) {
    const cp = ch.codePointAt(0);
    let keysym;
    if (ch === '\n') keysym = 0xff0d;
    else if (ch === '\t') keysym = 0xff09;
    else if (cp >= 0x20 && cp <= 0x7e) keysym = cp;
    else if (cp >= 0xa0 && cp <= 0xff) keysym = cp;
    else keysym = 0x01000000 + cp;
    rfb.sendKey(keysym, null);
  }
});

connect();
