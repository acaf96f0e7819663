// drover's page: a thin client of /api/v1. Plain JavaScript, no framework, no build step.
// The session cookie is HttpOnly; the CSRF token the login returns is kept in memory and sent
// as X-CSRF-Token on every change. Live updates come from /api/v1/events (server-sent events).
'use strict';

const API = '/api/v1';
const PAGE = 100;
let csrf = null;
let view = 'overview';
let nodeOffset = 0;
let events = null;

const $ = (sel) => document.querySelector(sel);

function show(el, on) { el.hidden = !on; }

function message(text, kind) {
  const m = $('#message');
  m.textContent = text;
  m.className = kind || '';
  show(m, !!text);
}

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text === null || text === undefined ? '-' : String(text);
  return td;
}

// `needs`: the least role that may use it ('admin', 'operator'); others do not see it.
function button(label, onclick, needs) {
  const b = document.createElement('button');
  b.type = 'button';
  if (needs) b.className = 'needs-' + needs;
  b.textContent = label;
  b.addEventListener('click', onclick);
  return b;
}

async function api(method, path, body, contentType) {
  const headers = {};
  if (csrf && method !== 'GET') headers['X-CSRF-Token'] = csrf;
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = contentType || 'application/json';
    payload = contentType ? body : JSON.stringify(body);
  }
  const resp = await fetch(API + path, { method, headers, body: payload, credentials: 'same-origin' });
  if (resp.status === 401 && path !== '/login') {
    loggedOut();
    throw new Error('logged out');
  }
  const text = await resp.text();
  const data = text ? JSON.parse(text) : null;
  if (!resp.ok) {
    const err = new Error(data && data.error ? data.error : resp.statusText);
    err.field = data && data.field;
    throw err;
  }
  return data;
}

// Shows an API error, marking the form field it names.
function fail(err, form) {
  if (err.message === 'logged out') return;
  message(err.message);
  if (form && err.field && form.elements[err.field]) {
    form.elements[err.field].classList.add('bad');
    form.elements[err.field].focus();
  }
}

function clearBad(form) {
  for (const el of form.elements) el.classList.remove('bad');
}

function formValues(form) {
  const out = {};
  for (const el of form.elements) {
    if (el.name) out[el.name] = el.value.trim() === '' ? null : el.value.trim();
  }
  return out;
}

// A form that adds a record (POST path), or, after the returned `edit(record)`, changes one
// (PATCH path/name; the name is fixed and empty fields clear their value).
function recordForm({ form, submit, cancel, path, kind, fields, reload }) {
  let editing = null;
  const stop = () => {
    editing = null;
    form.reset();
    form.elements.name.disabled = false;
    submit.textContent = 'Add ' + kind;
    show(cancel, false);
  };
  cancel.addEventListener('click', stop);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearBad(form);
    const v = formValues(form);
    try {
      if (editing) {
        const name = editing;
        delete v.name;
        await api('PATCH', `${path}/${encodeURIComponent(name)}`, v);
        message(`saved ${kind} ${name}`, 'info');
      } else {
        await api('POST', path, v);
        message(`added ${kind} ${v.name}`, 'info');
      }
      stop();
      await reload();
    } catch (err) { fail(err, form); }
  });
  return (record) => {
    editing = record.name;
    for (const k of fields) form.elements[k].value = record[k] || '';
    form.elements.name.disabled = true;
    submit.textContent = 'Save ' + record.name;
    show(cancel, true);
  };
}

// ---------------------------------------------------------------------------------------------
// Login

function loggedOut() {
  csrf = null;
  if (events) { events.close(); events = null; }
  show($('#login'), true);
  show($('#nav'), false);
  show($('#who'), false);
  for (const v of document.querySelectorAll('.view')) show(v, false);
  $('#login-password').focus();
}

function loggedIn(session) {
  csrf = session.csrf;
  $('#user').textContent = `${session.user} (${session.role})`;
  // The page hides what this role cannot do (style.css); the API refuses it anyway.
  document.body.dataset.role = session.role;
  show($('#login'), false);
  show($('#nav'), true);
  show($('#who'), true);
  // The live-update stream opens once the first view is drawn, so it does not compete with
  // the requests that view waits for.
  select(view).finally(listen);
}

$('#login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  try {
    const s = await api('POST', '/login', { user: $('#login-user').value, password: $('#login-password').value });
    $('#login-password').value = '';
    message('');
    loggedIn(s);
  } catch (err) { fail(err); }
});

$('#logout').addEventListener('click', async () => {
  try { await api('POST', '/logout'); } catch (err) { /* logged out either way */ }
  loggedOut();
});

// ---------------------------------------------------------------------------------------------
// Views

const loaders = {
  overview: loadOverview,
  nodes: loadNodes,
  discovered: loadDiscovered,
  leases: loadLeases,
  images: loadImages,
  networks: loadNetworks,
  pool: loadPool,
  settings: loadSettings,
  audit: loadAudit,
};

// The last day's changes (the API and local CLI record them; admins only).
async function loadAudit() {
  const since = Math.floor(Date.now() / 1000) - 86400;
  const list = await api('GET', `/audit?since=${since}&limit=1000`);
  fill('#audit', list.items.reverse().map((e) => {
    const tr = document.createElement('tr');
    tr.append(cell(new Date(e.at * 1000).toLocaleString()), cell(e.who), cell(e.from), cell(e.what));
    return tr;
  }));
}

function select(name) {
  view = name;
  for (const b of document.querySelectorAll('#nav button')) b.classList.toggle('active', b.dataset.view === name);
  for (const v of document.querySelectorAll('.view')) show(v, v.id === 'view-' + name);
  return refresh();
}

for (const b of document.querySelectorAll('#nav button')) b.addEventListener('click', () => select(b.dataset.view));

async function refresh() {
  try {
    await loaders[view]();
    if (view === 'nodes' && timelineNode) await showTimeline(timelineNode);
  } catch (err) { fail(err); }
}

function fill(table, rows) {
  const body = $(table + ' tbody');
  body.replaceChildren(...rows);
}

// /health asked for at start, together with /session (see the end of this file).
let earlyHealth = null;

async function loadOverview() {
  const early = earlyHealth;
  earlyHealth = null;
  const h = (early && await early) || await api('GET', '/health');
  fill('#services', h.services.map((s) => {
    const tr = document.createElement('tr');
    const state = cell(s.enabled ? 'running' : 'off');
    state.className = s.enabled ? 'state-on' : 'state-off';
    tr.append(cell(s.name), state, cell(s.detail));
    return tr;
  }));
  const dl = $('#counts');
  dl.replaceChildren();
  const add = (k, v) => {
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd'); dd.textContent = v;
    dl.append(dt, dd);
  };
  // First run: walk a new admin through interface, network, first image and first node.
  const done = { interface: h.services.some((s) => s.name === 'dhcp' && s.enabled), network: h.counts.networks > 0,
    image: h.counts.images > 0, node: h.counts.nodes > 0 };
  for (const li of document.querySelectorAll('#first-run li')) li.classList.toggle('done', done[li.dataset.step]);
  show($('#first-run'), !done.image || !done.node);
  add('nodes', h.counts.nodes);
  add('active leases', h.counts.leases_active);
  add('images', h.counts.images);
  add('networks', h.counts.networks);
  add('groups', h.counts.groups);
  add('version', h.version);
  add('up for', h.uptime_secs + ' s');
  // Compare with the certificate the browser shows before trusting it.
  add('TLS certificate (SHA-256)', h.tls_fingerprint || 'no HTTPS (see [http] https-port)');
  // Retried faults (a failing store refresh, RA socket or feed compaction): the services go
  // on with what they have, so say it here rather than let it pass unseen.
  for (const [name, n] of Object.entries(h.faults || {})) {
    if (n > 0) add(`fault: ${name.replaceAll('_', ' ')} (retried, see the log)`, n);
  }
  performance.mark('drover:overview'); // for bench/web-page.sh
}

async function loadNodes() {
  const q = $('#node-filter').value.trim();
  const params = new URLSearchParams({ limit: PAGE, offset: nodeOffset });
  if (q) params.set('q', q);
  const list = await api('GET', '/nodes?' + params);
  $('#node-count').textContent = `(${list.total} node${list.total === 1 ? '' : 's'})`;
  const last = Math.min(list.offset + list.items.length, list.total);
  $('#nodes-page').textContent = list.total ? `${list.offset + 1}\u2013${last} of ${list.total}` : '';
  $('#nodes-prev').disabled = list.offset === 0;
  $('#nodes-next').disabled = last >= list.total;
  fill('#nodes', list.items.map((n) => {
    const tr = document.createElement('tr');
    tr.dataset.name = n.name;
    const lease = n.lease ? `${n.lease.ip} (${n.lease.state})` : null;
    // A node whose BMC says the chassis is off is off, whatever its last boot said.
    const shown = n.power === 'off' ? 'off' : n.state;
    const state = cell(shown);
    state.className = 'node-' + shown;
    if (n.power) state.dataset.power = n.power;
    if (n.last_event) state.title = `last: ${n.last_event.stage} ${n.last_event.detail}`;
    const actions = document.createElement('td');
    actions.append(button('Timeline', () => showTimeline(n.name)), ' ', button('Edit', () => editNode(n), 'admin'), ' ',
      button('Remove', () => removeNode(n.name), 'admin'));
    tr.append(cell(n.name), state, cell(n.mac), cell(n.ip), cell(n.image), cell(n.group), cell(lease), actions);
    return tr;
  }));
  performance.mark('drover:nodes'); // for bench/web-page.sh
}

let timelineNode = null;

async function showTimeline(name) {
  timelineNode = name;
  try {
    const t = await api('GET', '/nodes/' + encodeURIComponent(name) + '/events');
    $('#timeline-node').textContent = t.node;
    $('#timeline-state').textContent = t.state;
    $('#timeline-state').className = 'node-' + t.state;
    const first = t.last_boot.length ? t.last_boot[0].at_ms : 0;
    fill('#timeline-events', t.last_boot.map((e) => {
      const tr = document.createElement('tr');
      tr.dataset.stage = e.stage;
      tr.append(cell(new Date(e.at_ms).toISOString().replace('T', ' ').replace('Z', '')),
        cell(((e.at_ms - first) / 1000).toFixed(1)), cell(e.stage), cell(e.source), cell(e.detail));
      return tr;
    }));
    show($('#timeline'), true);
  } catch (err) { fail(err); }
}

$('#timeline-close').addEventListener('click', () => { timelineNode = null; show($('#timeline'), false); });

// Power buttons of the open node: POST /power, one result per node (here: one node).
document.querySelectorAll('#power-actions button').forEach((b) => b.addEventListener('click', async () => {
  if (!timelineNode) return;
  const body = { action: b.dataset.power, targets: [timelineNode] };
  if (b.dataset.device) body.device = b.dataset.device;
  const out = $('#power-result');
  out.textContent = '\u2026';
  try {
    const r = (await api('POST', '/power', body)).results[0];
    out.textContent = r.ok ? `${r.node}: ${r.text}` : `${r.node}: ${r.class}: ${r.reason}`;
    out.className = r.ok ? 'ok' : 'bad';
  } catch (err) { out.textContent = ''; fail(err); }
}));

const editNode = recordForm({
  form: $('#node-form'), submit: $('#node-submit'), cancel: $('#node-cancel'),
  path: '/nodes', kind: 'node', fields: ['name', 'mac', 'ip', 'image', 'group'], reload: () => loadNodes(),
});

async function removeNode(name) {
  if (!confirm(`Remove node ${name}?`)) return;
  try {
    await api('DELETE', '/nodes/' + encodeURIComponent(name));
    message(`removed node ${name}`, 'info');
    await loadNodes();
  } catch (err) { fail(err); }
}

$('#csv-import').addEventListener('click', async () => {
  const file = $('#csv-file').files[0];
  if (!file) { message('choose a CSV file first (header: name,mac,ip,image,group)'); return; }
  try {
    const r = await api('POST', '/nodes/import', await file.text(), 'text/csv');
    message(`imported ${r.imported} nodes from ${file.name}`, 'info');
    $('#csv-file').value = '';
    await loadNodes();
  } catch (err) { fail(err); }
});

let filterTimer = null;
$('#node-filter').addEventListener('input', () => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => { nodeOffset = 0; refresh(); }, 200);
});
$('#nodes-prev').addEventListener('click', () => { nodeOffset = Math.max(0, nodeOffset - PAGE); refresh(); });
$('#nodes-next').addEventListener('click', () => { nodeOffset += PAGE; refresh(); });

function ago(unix) {
  const s = unix - Math.floor(Date.now() / 1000);
  return s > 0 ? `in ${s} s` : `${-s} s ago`;
}

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${Math.round(n * 10) / 10} ${units[i]}`;
}

// Machines waiting for adoption (GET /discovered) with an Adopt form per row for admins.
async function loadDiscovered() {
  const list = await api('GET', '/discovered');
  $('#discovered-count').textContent = list.machines.length ? `(${list.machines.length})` : '';
  show($('#discovered-none'), list.machines.length === 0);
  $('#discovered-duplicates').replaceChildren(...list.duplicates.map((d) => {
    const li = document.createElement('li');
    li.textContent = `${d.what} ${d.value} is claimed by ${d.claimed_by.join(', ')}`;
    return li;
  }));
  fill('#discovered', list.machines.map((m) => {
    const inv = m.inventory;
    const dmi = [inv.dmi.vendor, inv.dmi.product].filter(Boolean).join(' ');
    const serial = inv.dmi.serial ? ` (serial ${inv.dmi.serial})` : '';
    const disks = inv.disks.map((d) => `${d.name} ${bytes(d.size_bytes)}`).join(', ');
    const port = inv.nics.filter((n) => n.lldp).map((n) => {
      const sw = n.lldp.system_name || n.lldp.chassis_id;
      return `${n.name}: ${sw} ${n.lldp.port_id}`;
    }).join(', ');
    const form = document.createElement('form');
    form.className = 'inline adopt';
    form.dataset.mac = m.mac;
    for (const [name, hint, required] of [['name', 'node name', true], ['image', 'image', false], ['group', 'group', false]]) {
      const input = document.createElement('input');
      input.name = name;
      input.placeholder = hint;
      input.required = required;
      form.append(input);
    }
    const submit = document.createElement('button');
    submit.type = 'submit';
    submit.textContent = 'Adopt';
    form.append(submit);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearBad(form);
      const v = formValues(form);
      try {
        await api('POST', `/discovered/${encodeURIComponent(m.mac)}/adopt`, v);
        message(`adopted ${m.mac} as ${v.name}`, 'info');
        await loadDiscovered();
      } catch (err) { fail(err, form); }
    });
    const adopt = document.createElement('td');
    adopt.className = 'needs-admin';
    adopt.append(form);
    const tr = document.createElement('tr');
    tr.dataset.mac = m.mac;
    tr.append(cell(m.mac), cell(m.ip), cell(new Date(m.last_ms).toLocaleString()),
      cell((dmi || '-') + serial), cell(`${inv.cpus} × ${inv.cpu_model || 'CPU'}`),
      cell(bytes(inv.memory_kib * 1024)), cell(disks || '-'), cell(port || '-'), adopt);
    return tr;
  }));
}

async function loadLeases() {
  const list = await api('GET', '/leases?limit=1000');
  fill('#leases', list.items.map((l) => {
    const tr = document.createElement('tr');
    tr.append(cell(l.ip), cell(l.mac), cell(l.node), cell(l.status), cell(ago(l.expires)), cell(l.hostname), cell(l.network));
    return tr;
  }));
}

async function loadImages() {
  const list = await api('GET', '/images?limit=1000');
  const histories = await Promise.all(list.items.map((i) => api('GET', `/images/${encodeURIComponent(i.name)}/history`)));
  fill('#images', list.items.flatMap((i, k) => {
    const tr = document.createElement('tr');
    tr.dataset.name = i.name;
    const actions = document.createElement('td');
    actions.append(
      button('Edit command line', async () => {
        const cmdline = prompt(`Kernel command line of ${i.name}`, i.cmdline);
        if (cmdline === null) return;
        try { await api('PATCH', '/images/' + encodeURIComponent(i.name), { cmdline }); await loadImages(); } catch (err) { fail(err); }
      }, 'admin'),
      ' ',
      button('Remove', async () => {
        if (!confirm(`Remove image ${i.name}?`)) return;
        try { await api('DELETE', '/images/' + encodeURIComponent(i.name)); await loadImages(); } catch (err) { fail(err); }
      }, 'admin'),
    );
    tr.append(cell(i.name), cell(i.boot), cell(`${i.kernel.size} bytes`), cell(i.cmdline), cell(i.nodes), actions);
    return [tr, versionsRow(i, histories[k])];
  }));
}

// The row under an image: its versions, newest first, with their sizes (SIZE: the files;
// NEW: bytes no earlier version stored; SHARED: bytes an earlier version has too), the nodes
// that boot each (pinned, or following the latest), and for admins a Rollback button on the
// older ones (a rollback is recorded as a new version).
function versionsRow(image, history) {
  const table = document.createElement('table');
  table.className = 'image-versions';
  table.dataset.image = image.name;
  const head = document.createElement('tr');
  for (const h of ['version', 'made', 'by', 'how', 'size', 'new', 'shared', 'nodes', '']) {
    const th = document.createElement('th'); th.textContent = h; head.append(th);
  }
  table.createTHead().append(head);
  const body = table.createTBody();
  for (const v of [...history].reverse()) {
    const r = document.createElement('tr');
    r.dataset.version = v.number;
    const latest = v.number === image.version;
    const figure = (k) => (v.stored ? bytes(v.stored[k]) : '-');
    const actions = document.createElement('td');
    if (!latest) {
      actions.append(button('Rollback', async () => {
        if (!confirm(`Make version ${v.number}'s files the latest of ${image.name}?`)) return;
        try {
          await api('POST', `/images/${encodeURIComponent(image.name)}/rollback`, { version: v.number });
          await loadImages();
        } catch (err) { fail(err); }
      }, 'admin'));
    }
    r.append(cell(latest ? `${v.number} (latest)` : v.number),
      cell(v.created_ms ? new Date(v.created_ms).toLocaleString() : '-'), cell(v.by || '-'), cell(v.what),
      cell(figure('logical')), cell(figure('new')), cell(figure('shared')),
      cell((v.nodes || []).join(', ') || '-'), actions);
    body.append(r);
  }
  const tr = document.createElement('tr');
  tr.className = 'versions';
  const td = document.createElement('td');
  td.colSpan = 6;
  td.append(table);
  tr.append(td);
  return tr;
}

async function loadNetworks() {
  const list = await api('GET', '/networks?limit=1000');
  fill('#networks', list.items.map((n) => {
    const tr = document.createElement('tr');
    const actions = document.createElement('td');
    actions.append(button('Edit', () => editNetwork(n), 'admin'), ' ', button('Remove', async () => {
      if (!confirm(`Remove network ${n.name}?`)) return;
      try { await api('DELETE', '/networks/' + encodeURIComponent(n.name)); await loadNetworks(); } catch (err) { fail(err); }
    }, 'admin'));
    tr.append(cell(n.name), cell(n.subnet), cell(n.range), cell(n.gateway), cell(n.domain), actions);
    return tr;
  }));
}

const editNetwork = recordForm({
  form: $('#network-form'), submit: $('#network-submit'), cancel: $('#network-cancel'),
  path: '/networks', kind: 'network', fields: ['name', 'subnet', 'range', 'gateway', 'domain'],
  reload: () => loadNetworks(),
});

for (const b of document.querySelectorAll('#first-run [data-go]')) b.addEventListener('click', () => select(b.dataset.go));

// ---------------------------------------------------------------------------------------------
// Settings: GET /config shows every key with its source; POST /config sets or (value null)
// removes keys, checked by the server as `drover check-config` checks the file.

// A value as typed: JSON where it parses (true, 8080, ["eth0"]), else the text itself.
function settingValue(text) {
  try { return JSON.parse(text); } catch (e) { return text; }
}

function outcomeText(o) {
  const when = o.takes === 'live' ? 'applied live: the services it feeds restart alone'
    : 'takes effect at the next restart of drover serve';
  return `${o.key}: ${o.removed ? 'back to the file\'s value' : (o.scope === 'member' ? 'set for this member' : 'set for the pool')}; ${when}`;
}

async function changeSettings(changes, form) {
  if (form) clearBad(form);
  try {
    const r = await api('POST', '/config', { changes });
    message(r.outcomes.map(outcomeText).join('. '), 'info');
    if (form) form.reset();
    await loadSettings();
  } catch (err) {
    fail(err);
    // The server names the key at fault; here that is the value typed for it.
    if (form && err.field) form.elements[err.field === form.elements.key.value.trim() ? 'value' : 'key'].classList.add('bad');
  }
}

async function loadSettings() {
  const c = await api('GET', '/config');
  $('#settings-problem').textContent = c.problem ? `The store's settings are not in force (the server keeps what runs): ${c.problem}` : '';
  show($('#settings-problem'), !!c.problem);
  // Saved but not in force until drover serve restarts; the server says which (until then).
  const pending = c.restart_pending || [];
  $('#settings-restart').textContent = pending.length
    ? `Restart pending: ${pending.join(', ')} saved; drover serve runs with the old value until it restarts.` : '';
  show($('#settings-restart'), pending.length > 0);
  fill('#settings', c.settings.map((r) => {
    const tr = document.createElement('tr');
    tr.dataset.key = r.key;
    const actions = document.createElement('td');
    actions.append(button('Edit', () => {
      const f = $('#setting-form');
      f.elements.key.value = r.key;
      f.elements.value.value = JSON.stringify(r.value);
      f.elements.value.focus();
    }, 'admin'));
    if (r.source === 'pool' || r.source === 'member') {
      actions.append(' ', button('Reset', () => changeSettings([{ key: r.key, value: null }]), 'admin'));
    }
    tr.append(cell(r.key), cell(JSON.stringify(r.value)), cell(r.source), cell(r.takes), actions);
    return tr;
  }));
}

$('#setting-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const f = e.target;
  changeSettings([{ key: f.elements.key.value.trim(), value: settingValue(f.elements.value.value.trim()) }], f);
});

// ---------------------------------------------------------------------------------------------
// Pool: GET /pool, the same as `drover pool status --json`; membership changes are not store
// changes, so the view also refreshes itself every few seconds while it is shown.

function span(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min`;
  if (s < 172800) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

async function loadPool() {
  let p;
  try {
    p = await api('GET', '/pool');
  } catch (err) {
    if (err.message === 'logged out') throw err;
    $('#pool-absent').textContent = err.message;
    show($('#pool-absent'), true);
    show($('#pool-present'), false);
    $('#pool-note').textContent = '';
    return;
  }
  show($('#pool-absent'), false);
  show($('#pool-present'), true);
  const now = p.updated_ms;
  const since = (ms) => (ms ? `${span(now - ms)} ago` : null);
  $('#pool-note').textContent = `(${1 + p.members.length} members, ${p.roster.length} on the roster; ` +
    `${p.majority ? 'this member sees a majority' : 'no majority in sight'})`;
  const all = [Object.assign({ me: true }, p.me), ...p.members];
  fill('#pool-members', all.map((m) => {
    const tr = document.createElement('tr');
    tr.dataset.addr = m.addr;
    tr.dataset.state = m.state;
    let health = m.me ? 'alive (this member)' : m.state;
    if (!m.me && m.down_since_ms && (m.state === 'down' || m.state === 'left')) health += ` for ${span(now - m.down_since_ms)}`;
    const state = cell(health);
    state.className = 'pool-' + m.state;
    const s = m.summary;
    const age = m.summary_age_ms || 0;
    const serves = s ? s.services.map((v) => (v.floating ? `${v.name}@${v.addrs.join(',')}` : v.name)).join(' ') : null;
    tr.append(cell(m.addr), cell(m.id.toString(16).padStart(16, '0')), state, cell(m.me ? '-' : since(m.last_heard_ms)),
      cell(s && s.version), cell(s && span(s.uptime_secs * 1000 + age)),
      cell(s && s.dhcp && s.dhcp.addresses), cell(s && s.dhcp && s.dhcp.leases), cell(s && s.nfs_clients),
      cell(s && `${s.blobs} (${Math.round(s.blob_bytes / 1048576)} MiB)`), cell(serves || (s ? '-' : 'no summary yet')),
      cell(s && `${span(age)} ago`));
    return tr;
  }));
  fill('#pool-lag', p.members.filter((m) => m.lag).map((m) => {
    const l = m.lag;
    const tr = document.createElement('tr');
    tr.dataset.addr = m.addr;
    let behind = null;
    if (l.behind_ms === 0) behind = '0 (has all it wrote)';
    else if (l.behind_ms) behind = `${l.behind_ms} ms of its writes`;
    else if (!l.newest_here && l.newest_there) behind = 'nothing of it yet';
    tr.append(cell(m.addr), cell(since(l.last_ms)), cell(l.carried), cell(l.merged), cell(l.completed), cell(l.failed), cell(behind));
    return tr;
  }));
}

setInterval(() => { if (view === 'pool' && !$('#nav').hidden) refresh(); }, 2000);

// ---------------------------------------------------------------------------------------------
// Live updates: any change to the store refreshes the view on screen (at most every 300 ms).

let pending = null;
function listen() {
  if (events) return;
  events = new EventSource(API + '/events');
  events.addEventListener('open', () => $('#live').classList.add('on'));
  events.addEventListener('error', () => $('#live').classList.remove('on'));
  events.addEventListener('change', () => {
    if (pending) return;
    pending = setTimeout(() => { pending = null; refresh(); }, 300);
  });
}

// ---------------------------------------------------------------------------------------------
// Start: logged in already (the cookie survives reloads)?

// The overview's data is asked for together with the session rather than after it: one round
// trip less before the first view is drawn. Logged out, it is a 401 and is dropped.
(async () => {
  earlyHealth = fetch(API + '/health', { credentials: 'same-origin' })
    .then((r) => (r.ok ? r.json() : null)).catch(() => null);
  try {
    loggedIn(await api('GET', '/session'));
  } catch (err) {
    earlyHealth = null;
    loggedOut();
  }
})();
