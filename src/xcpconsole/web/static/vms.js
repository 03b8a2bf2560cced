// VM list: refresh power states, hosts (a migration) and thumbnails without reloading by hand.
const REFRESH_MS = 5000;

function refreshThumbnails() {
  for (const img of document.querySelectorAll('img.thumbnail')) {
    const base = img.src.split('?')[0];
    const next = new Image();
    next.onload = () => { img.src = next.src; img.classList.remove('missing'); };
    next.onerror = () => { img.classList.add('missing'); };
    next.src = `${base}?t=${Date.now()}`;
  }
}

async function refreshStates() {
  const resp = await fetch('/api/vms', { credentials: 'same-origin' });
  if (resp.status === 401) { window.location.href = '/login'; return; }
  if (!resp.ok) return;
  const vms = await resp.json();
  let changed = false;
  for (const vm of vms) {
    const row = document.querySelector(`tr.vm[data-vm="${CSS.escape(vm.uuid)}"]`);
    if (!row) { changed = true; continue; }
    if (row.dataset.powerState !== vm.power_state || row.dataset.host !== vm.host) changed = true;
  }
  if (changed) window.location.reload();
}

for (const img of document.querySelectorAll('img.thumbnail')) {
  img.addEventListener('error', () => img.classList.add('missing'));
}
setInterval(() => { refreshThumbnails(); refreshStates().catch(() => {}); }, REFRESH_MS);
