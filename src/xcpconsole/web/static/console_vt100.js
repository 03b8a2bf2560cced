// Text console: xterm.js over the gateway's WebSocket (raw terminal bytes both ways).
import { Terminal } from '/static/vendor/xterm/lib/xterm.mjs';
import { FitAddon } from '/static/vendor/xterm-addon-fit/lib/addon-fit.mjs';
import { ConsoleSession, wireFullscreen } from './common.js';

// The guest writes for an 80-column terminal and is never told our size: on a narrow
// window the font shrinks down to MIN_FONT, then the terminal scrolls sideways.
const MIN_COLS = 80;
const FONT = 15;
const MIN_FONT = 9;

const term = new Terminal({ convertEol: false, scrollback: 5000, cursorBlink: true,
                            fontSize: FONT });
const fit = new FitAddon();
term.loadAddon(fit);
const box = document.getElementById('terminal');
term.open(box);
window.xcpTerm = term;
wireFullscreen(box);

function setFont(size) {
  if (term.options.fontSize !== size) term.options.fontSize = size;
}

function fitTerminal() {
  let size = FONT;
  setFont(size);
  let dims = fit.proposeDimensions();
  while (dims && dims.cols < MIN_COLS && size > MIN_FONT) {
    size -= 1;
    setFont(size);
    dims = fit.proposeDimensions();
  }
  if (!dims || !Number.isFinite(dims.cols) || !Number.isFinite(dims.rows)) return;
  const cols = Math.max(MIN_COLS, dims.cols);
  if (cols !== term.cols || dims.rows !== term.rows) term.resize(cols, Math.max(2, dims.rows));
  box.classList.toggle('scrolls', dims.cols < MIN_COLS);
}

fitTerminal();
window.addEventListener('resize', fitTerminal);

const encoder = new TextEncoder();
let ws = null;
const session = new ConsoleSession(open);

term.onData((data) => {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(data));
});
term.onBinary((data) => {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  ws.send(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff));
});

function open(url) {
  const sock = new WebSocket(url, ['binary']);
  sock.binaryType = 'arraybuffer';
  ws = sock;
  sock.onopen = () => {
    session.opened();
    term.focus();
  };
  sock.onmessage = (ev) => {
    if (ev.data instanceof ArrayBuffer) term.write(new Uint8Array(ev.data));
  };
  sock.onclose = (ev) => {
    if (ws !== sock) return;
    ws = null;
    session.closed(ev.reason || 'Console closed');
  };
}

session.connect();
