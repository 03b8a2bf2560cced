// Text console: xterm.js over the gateway's WebSocket (raw terminal bytes both ways).
import { Terminal } from '/static/vendor/xterm/lib/xterm.mjs';
import { FitAddon } from '/static/vendor/xterm-addon-fit/lib/addon-fit.mjs';
import { setState, nextConsoleUrl, Reconnector, wireFullscreen } from './common.js';

const term = new Terminal({ convertEol: false, scrollback: 5000, cursorBlink: true });
const fit = new FitAddon();
term.loadAddon(fit);
const box = document.getElementById('terminal');
term.open(box);
fit.fit();
window.addEventListener('resize', () => fit.fit());
window.xcpTerm = term;
wireFullscreen(box);

const encoder = new TextEncoder();
let ws = null;
const reconnector = new Reconnector(connect);

term.onData((data) => {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(data));
});
term.onBinary((data) => {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  ws.send(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff));
});

async function connect() {
  const url = await nextConsoleUrl(reconnector);
  if (url === null) return;
  const sock = new WebSocket(url, ['binary']);
  sock.binaryType = 'arraybuffer';
  ws = sock;
  sock.onopen = () => {
    reconnector.succeeded();
    setState('connected', 'Connected');
    term.focus();
  };
  sock.onmessage = (ev) => {
    if (ev.data instanceof ArrayBuffer) term.write(new Uint8Array(ev.data));
  };
  sock.onclose = (ev) => {
    if (ws !== sock) return;
    ws = null;
    reconnector.schedule(ev.reason || 'Console closed');
  };
}

connect();
