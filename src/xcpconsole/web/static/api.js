// What every page script shares: JSON requests to the gateway, power actions with their
// confirmation dialog, the message line, the drop-down menus.

export class HttpError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// GET or POST `url` (same origin; POSTs carry the CSRF header): the JSON answer, or an
// HttpError with the gateway's message.  A signed-out user goes to the sign-in page.
export async function requestJson(url, { method = 'GET', csrf = '' } = {}) {
  const headers = method === 'GET' ? {} : { 'X-CSRF-Token': csrf };
  const resp = await fetch(url, { method, credentials: 'same-origin', headers });
  if (resp.status === 401 || (resp.redirected && new URL(resp.url).pathname === '/login')) {
    window.location.href = '/login';
    throw new HttpError('signed out', 401, {});
  }
  let body = {};
  try { body = await resp.json(); } catch (e) { /* not JSON */ }
  if (!resp.ok) {
    throw new HttpError(body.error || `${resp.status} ${resp.statusText}`, resp.status, body);
  }
  return body;
}

export function powerUrl(uuid, action) {
  return `/vms/${encodeURIComponent(uuid)}/power/${encodeURIComponent(action)}`;
}

// The one message line of a page (power actions' progress and the host's refusals).
export function showMessage(text, kind = 'info') {
  const box = document.getElementById('message');
  if (!box) return;
  document.getElementById('message-text').textContent = text;
  box.dataset.kind = kind;
  box.hidden = !text;
}

const closeMessage = document.getElementById('message-close');
if (closeMessage) closeMessage.addEventListener('click', () => showMessage(''));

// Ask before a destructive action: resolves true when confirmed.
export function askConfirm(question, warning) {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = question;
  document.getElementById('confirm-warning').textContent = warning || '';
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
  });
}

// Run the power action of `button` (a .power-action) on VM `uuid` named `name`: confirmed
// first when it has a warning.  Resolves to the gateway's answer ({power_state, actions}),
// or null when cancelled or refused (the refusal is shown on the message line).
export async function runPowerAction(button, uuid, name, csrf) {
  const label = button.textContent.trim();
  if (button.dataset.confirm && !(await askConfirm(`${label} “${name}”?`,
                                                   button.dataset.confirm))) {
    return null;
  }
  showMessage(`${button.dataset.doing || label} “${name}”…`, 'busy');
  try {
    const body = await requestJson(powerUrl(uuid, button.dataset.action),
                                   { method: 'POST', csrf });
    showMessage('');
    return body;
  } catch (err) {
    if (err.status !== 401) showMessage(err.message, 'error');
    return null;
  }
}

// <details class="menu">: one open at a time, closed by a click elsewhere or on an item.
export function closeMenus(except = null) {
  for (const menu of document.querySelectorAll('details.menu[open]')) {
    if (menu !== except) menu.open = false;
  }
}

document.addEventListener('click', (ev) => {
  const menu = ev.target.closest('details.menu');
  closeMenus(menu);
  if (menu && ev.target.closest('button') && menu.dataset.keepOpen === undefined) {
    menu.open = false;
  }
});
