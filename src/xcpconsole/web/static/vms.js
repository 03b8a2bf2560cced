// VM list: the rows follow /api/vms in place (power state, host, details, which console
// links and power buttons show, thumbnails once they exist), a filter by name, and power
// actions.  The rows' data-* attributes drive the CSS; this script never builds markup:
// new rows are clones of the page's <template>.
import { requestJson, runPowerAction } from './api.js';

const REFRESH_MS = 5000;
const FIRST_REFRESH_MS = 1500;  // the first thumbnails are taken while the page loads
const main = document.querySelector('main.vms');
const tbody = document.querySelector('#vm-table > tbody');
const template = document.getElementById('vm-row-template');
const filter = document.getElementById('vm-filter');
const noMatch = document.getElementById('vm-no-match');
const count = document.getElementById('vm-count');
const NO_MATCH = noMatch.textContent;
const NO_VMS = 'No virtual machines visible.';

let timer = null;

function rows() {
  return [...tbody.querySelectorAll('tr.vm')];
}

function setText(el, text) {
  if (el && el.textContent !== text) el.textContent = text;
}

function newRow(vm) {
  const row = template.content.querySelector('tr.vm').cloneNode(true);
  row.dataset.vm = vm.uuid;
  for (const link of row.querySelectorAll('a.console-link')) {
    link.href = `/vms/${encodeURIComponent(vm.uuid)}/console/${link.dataset.protocol}`;
  }
  return row;
}

// The shown image changes only once the next one has loaded (no blank box, no jump:
// the box has a fixed size); nothing is asked for before the server has a picture.
function setThumbnail(row, url) {
  const box = row.querySelector('.thumb-box');
  const wanted = url || '';
  const shown = box.querySelector('img.thumbnail');
  if (!wanted) {
    if (shown) shown.remove();
    delete box.dataset.src;
    return;
  }
  if (box.dataset.src === wanted || (shown && shown.getAttribute('src') === wanted)) return;
  box.dataset.src = wanted;
  const next = new Image();
  next.className = 'thumbnail';
  next.alt = '';
  next.width = 160;
  next.onload = () => {
    if (box.dataset.src !== wanted) return;
    const current = box.querySelector('img.thumbnail');
    if (current) current.replaceWith(next);
    else box.append(next);
  };
  next.src = wanted;
}

function setPowerState(row, state) {
  row.dataset.powerState = state;
  const badge = row.querySelector('td.power .state');
  setText(badge, state);
  badge.className = `state state-${state.toLowerCase()}`;
}

function fillRow(row, vm) {
  row.dataset.name = vm.name;
  row.dataset.host = vm.host;
  row.dataset.consoles = vm.consoles.join(' ');
  setPowerState(row, vm.power_state);
  setText(row.querySelector('td.name'), vm.name);
  setText(row.querySelector('td.host'), vm.host);
  for (const key of ['memory', 'vcpus', 'uptime']) {
    setText(row.querySelector(`td.details .${key}`), vm.details[key]);
  }
  setThumbnail(row, vm.thumbnail);
}

function update(vms) {
  const stale = new Map(rows().map((row) => [row.dataset.vm, row]));
  vms.forEach((vm, i) => {
    let row = stale.get(vm.uuid);
    if (row) stale.delete(vm.uuid);
    else row = newRow(vm);
    fillRow(row, vm);
    if (tbody.children[i] !== row) tbody.insertBefore(row, tbody.children[i] || null);
  });
  for (const row of stale.values()) row.remove();
  applyFilter();
}

function applyFilter() {
  const query = filter.value.trim().toLowerCase();
  const all = rows();
  let shown = 0;
  for (const row of all) {
    const match = !query || row.dataset.name.toLowerCase().includes(query);
    row.hidden = !match;
    if (match) shown += 1;
  }
  const empty = main.querySelector('p.empty');
  if (empty) empty.hidden = all.length > 0;
  noMatch.textContent = all.length ? NO_MATCH : NO_VMS;
  noMatch.hidden = shown > 0 || (all.length === 0 && empty !== null);
  const total = `${all.length} VM${all.length === 1 ? '' : 's'}`;
  count.textContent = query ? `${shown} of ${total}` : total;
}

function rememberFilter() {
  const url = new URL(window.location.href);
  if (filter.value) url.searchParams.set('q', filter.value);
  else url.searchParams.delete('q');
  window.history.replaceState(null, '', url);
}

async function refresh() {
  clearTimeout(timer);
  try {
    update(await requestJson('/api/vms'));
    window.xcpListUpdates = (window.xcpListUpdates || 0) + 1;  // tests watch this
  } catch (err) {
    /* the host is busy or gone for a moment: try again later */
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

tbody.addEventListener('click', async (ev) => {
  const button = ev.target.closest('.power-action');
  const row = button && button.closest('tr.vm');
  if (!row || row.dataset.busy !== undefined) return;
  row.dataset.busy = '';
  try {
    const body = await runPowerAction(button, row.dataset.vm, row.dataset.name,
                                      main.dataset.csrf);
    if (body && body.power_state) setPowerState(row, body.power_state);
  } finally {
    delete row.dataset.busy;
  }
  refresh();
});

filter.value = new URL(window.location.href).searchParams.get('q') || '';
filter.addEventListener('input', () => { applyFilter(); rememberFilter(); });
applyFilter();
timer = setTimeout(refresh, FIRST_REFRESH_MS);
