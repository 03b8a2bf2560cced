// Graphical console: noVNC's RFB library on our own page, over the gateway's WebSocket.
import RFB from '/static/vendor/novnc/core/rfb.js';
import KeyTable from '/static/vendor/novnc/core/input/keysym.js';
import { showMessage } from './api.js';
import { ConsoleSession, root, wireFullscreen } from './common.js';

const screen = document.getElementById('screen');
const cad = document.getElementById('btn-cad');
const scale = document.getElementById('opt-scale');
const clipText = document.getElementById('clip-text');
const pasteTypes = document.getElementById('opt-paste-types');
const sendKeyButtons = document.querySelectorAll('#keys-menu .send-key');

let rfb = null;
const session = new ConsoleSession(open);

function setKeysEnabled(enabled) {
  cad.disabled = !enabled;
  for (const button of sendKeyButtons) button.disabled = !enabled;
}

function open(url) {
  const conn = new RFB(screen, url, { wsProtocols: ['binary'], shared: true });
  rfb = conn;
  window.xcpRfb = conn;
  conn.scaleViewport = scale.checked;
  conn.resizeSession = false;
  conn.focusOnClick = true;
  conn.addEventListener('connect', () => {
    setKeysEnabled(true);
    session.opened();
    conn.focus();
  });
  conn.addEventListener('disconnect', (ev) => {
    if (rfb !== conn) return;
    rfb = null;
    setKeysEnabled(false);
    // noVNC calls a close by the server after the handshake clean, one before it not.
    // Either way RFB gives no reason; the usual one on a running VM is a viewer that
    // asked for an exclusive session (TigerVNC without -Shared), so name it as a guess.
    session.closed(ev.detail.clean
      ? 'The host closed the console (another viewer may have taken it exclusively)'
      : 'Connection lost before the console opened (another viewer may hold it exclusively)');
  });
  conn.addEventListener('clipboard', (ev) => { clipText.value = ev.detail.text; });
  conn.addEventListener('desktopname', (ev) => { root.dataset.desktopName = ev.detail.name; });
}

cad.addEventListener('click', () => { if (rfb) rfb.sendCtrlAltDel(); });
scale.addEventListener('change', () => { if (rfb) rfb.scaleViewport = scale.checked; });
wireFullscreen(screen);

// The send-key menu: data-keys names X keysyms (noVNC's KeyTable without "XK_"), held in
// order and released in reverse; the physical key codes let QEMU send scancodes.
const CODES = {
  Control_L: 'ControlLeft', Control_R: 'ControlRight', Alt_L: 'AltLeft', Shift_L: 'ShiftLeft',
  Shift_R: 'ShiftRight', Super_L: 'MetaLeft', Delete: 'Delete', BackSpace: 'Backspace',
  Tab: 'Tab', Escape: 'Escape', Print: 'PrintScreen', Sys_Req: 'PrintScreen', Insert: 'Insert',
};

function keyOf(name) {
  if (name.length === 1) {  // a letter or digit (Alt-SysRq's)
    const ch = name.toLowerCase();
    return [ch.codePointAt(0), /[0-9]/.test(ch) ? `Digit${ch}` : `Key${ch.toUpperCase()}`];
  }
  return [KeyTable[`XK_${name}`], CODES[name] || name];  // F1…F12: the code is the name
}

function sendCombo(names) {
  if (!rfb) return;
  const keys = names.map(keyOf).filter(([keysym]) => keysym !== undefined);
  for (const [keysym, code] of keys) rfb.sendKey(keysym, code, true);
  for (const [keysym, code] of keys.reverse()) rfb.sendKey(keysym, code, false);
  rfb.focus();
}

for (const button of sendKeyButtons) {
  button.addEventListener('click', () => {
    const names = button.dataset.keys.split(' ');
    if (button.dataset.letter) {
      const letter = document.getElementById(button.dataset.letter).value.trim();
      if (!/^[a-z0-9]$/i.test(letter)) {
        showMessage('Alt-SysRq needs one letter or digit (h lists them).', 'error');
        return;
      }
      names.push(letter);
    }
    sendCombo(names);
  });
}

// Clipboard: "Send" puts the text in the guest's clipboard; "Type" types it as key presses
// (for consoles without a clipboard, like a text terminal or a BIOS screen).
function typeText(text) {
  if (!rfb) return;
  for (const ch of text) {
    const cp = ch.codePointAt(0);
    let keysym;
    if (ch === '\r') continue;
    if (ch === '\n') keysym = 0xff0d;
    else if (ch === '\t') keysym = 0xff09;
    else if (cp >= 0x20 && cp <= 0x7e) keysym = cp;
    else if (cp >= 0xa0 && cp <= 0xff) keysym = cp;
    else keysym = 0x01000000 + cp;
    rfb.sendKey(keysym, null);
  }
}

document.getElementById('btn-clip-send').addEventListener('click', () => {
  if (rfb) rfb.clipboardPasteFrom(clipText.value);
});
document.getElementById('btn-clip-type').addEventListener('click', () => typeText(clipText.value));

// Native paste (Ctrl-V, Shift-Insert) in the console types the pasted text.  noVNC would
// take the V and cancel the browser's paste: the key stops here, the browser pastes, and
// the modifiers the guest saw go down are let go before the text is typed.
let pasteModifiers = null;
screen.addEventListener('keydown', (ev) => {
  if (!rfb || !pasteTypes.checked) return;
  const ctrlV = (ev.ctrlKey || ev.metaKey) && !ev.altKey && ev.code === 'KeyV';
  const shiftInsert = ev.shiftKey && !ev.ctrlKey && ev.code === 'Insert';
  if (!ctrlV && !shiftInsert) return;
  pasteModifiers = { ctrl: ev.ctrlKey, shift: ev.shiftKey, meta: ev.metaKey, ctrlV };
  ev.stopPropagation();
}, true);

screen.addEventListener('paste', (ev) => {
  if (!rfb || pasteModifiers === null) return;
  ev.preventDefault();
  const mods = pasteModifiers;
  pasteModifiers = null;
  const text = ev.clipboardData ? ev.clipboardData.getData('text/plain') : '';
  if (!text) {  // nothing to type (an image?): the guest gets its own Ctrl-V
    if (mods.ctrlV) rfb.sendKey(0x76, 'KeyV');
    else rfb.sendKey(KeyTable.XK_Insert, 'Insert');
    return;
  }
  const held = [];
  if (mods.ctrl) held.push('Control_L', 'Control_R');
  if (mods.shift) held.push('Shift_L', 'Shift_R');
  if (mods.meta) held.push('Super_L');
  for (const [keysym, code] of held.map(keyOf)) rfb.sendKey(keysym, code, false);
  typeText(text);
});

setKeysEnabled(false);
session.connect();
