// The OneOffice partner console. It calls the public API from the same
// origin, with the key in the x-api-key header only; the key lives in this
// tab's sessionStorage. Every value from the API is put in the page as text
// (textContent, text nodes), never parsed as HTML.
'use strict';

const KEY = 'oneoffice.key';
const METHODS = ['createCustomer', 'createFirstOrder', 'createRenewalOrder', 'cancelOrder', 'suspendOrder',
  'resumeOrder', 'updateOrder', 'createUser', 'deleteUser', 'resetUser', 'replayEvent'];
const $ = (id) => document.getElementById(id);
const state = { mode: 'live', readOnly: false, view: 'requests' };

// el makes an element; children that are strings become text nodes.
function el(tag, cls, ...children) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return e;
}

function when(sec) {
  if (sec === null || sec === undefined) return '-';
  return new Date(sec * 1000).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
}

function say(text, info) {
  const m = $('message');
  m.textContent = text || '';
  m.className = info ? 'info' : '';
  m.hidden = !text;
}

class APIError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

// call calls one API method and returns its answer; it reads the key's kind
// from the OneOffice-Key header (live or test, read-only), live when absent.
async function call(method, params) {
  const key = sessionStorage.getItem(KEY);
  if (!key) throw new APIError(401, 'unauthorized', 'no key');
  const r = await fetch('/', {
    method: 'POST', cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer',
    headers: { 'content-type': 'application/json', 'x-api-key': key },
    body: JSON.stringify({ method, params }),
  });
  const kind = (r.headers.get('OneOffice-Key') || '').toLowerCase();
  if (r.status !== 401) setKind(kind);
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) {
    const e = (body && body.error) || {};
    throw new APIError(r.status, e.code || 'error', (e.code ? e.code + ': ' : '') + (e.message || 'HTTP ' + r.status));
  }
  return body;
}

function setKind(kind) {
  const parts = kind.split(',').map((s) => s.trim());
  state.mode = parts.includes('test') ? 'test' : 'live';
  state.readOnly = parts.includes('read-only');
  const mode = $('mode');
  mode.textContent = state.mode === 'test' ? 'TEST' : 'LIVE';
  mode.className = 'badge ' + state.mode;
  mode.hidden = false;
  $('readonly').hidden = !state.readOnly;
  for (const b of document.querySelectorAll('button.replay')) b.hidden = state.readOnly;
}

// failed shows an error; a refused key returns to the login.
function failed(err) {
  if (err instanceof APIError && err.status === 401) {
    signOut('The key was refused: ' + err.message);
    return;
  }
  say(err.message || String(err));
}

function show(view) {
  state.view = view;
  for (const v of ['login', 'requests', 'detail', 'events']) $(v).hidden = v !== view;
  $('nav').hidden = view === 'login';
  $('nav-requests').setAttribute('aria-current', view === 'requests' || view === 'detail' ? 'page' : 'false');
  $('nav-events').setAttribute('aria-current', view === 'events' ? 'page' : 'false');
}

// whoAmI shows the key's partner by its name.
async function whoAmI() {
  try {
    const p = await call('getPartner', {});
    $('partner').textContent = p.name;
    $('partner').hidden = false;
  } catch (err) { failed(err); }
}

function signOut(why) {
  sessionStorage.removeItem(KEY);
  $('partner').textContent = '';
  $('partner').hidden = true;
  $('mode').hidden = true;
  $('readonly').hidden = true;
  show('login');
  say(why || '', !why);
}

// walk reads every page of a list (at most max rows) and returns the rows.
async function walk(method, params, max) {
  const rows = [];
  let cursor = null;
  do {
    const p = Object.assign({ limit: 100 }, params);
    if (cursor) p.cursor = cursor;
    const page = await call(method, p);
    rows.push(...page.data);
    cursor = page.nextCursor;
  } while (cursor && rows.length < max);
  return rows;
}

const since = (select) => Math.floor(Date.now() / 1000) - Number($(select).value);

// The requests view: the newest first.
async function loadRequests() {
  say('');
  const params = { since: since('f-since') };
  if ($('f-method').value) params.method = $('f-method').value;
  if ($('f-status').value) params.status = $('f-status').value;
  const list = $('r-list');
  try {
    const rows = (await walk('listRequests', params, 1000)).reverse().slice(0, 100);
    list.replaceChildren();
    if (rows.length === 0) list.append(el('li', 'muted', 'No request in this period.'));
    for (const r of rows) {
      const li = el('li', 'card clickable',
        el('div', 'row', el('span', 'method', r.method), el('span', 'st ' + r.status, r.status),
          el('span', '', 'HTTP ' + (r.response ? r.response.status : '-')), el('span', 'muted', when(r.createdAt))),
        el('div', 'muted', 'request id ', el('code', 'rid', r.requestId)));
      li.tabIndex = 0;
      li.dataset.requestId = r.requestId;
      li.addEventListener('click', () => openRequest(r.requestId));
      li.addEventListener('keydown', (e) => { if (e.key === 'Enter') openRequest(r.requestId); });
      list.append(li);
    }
  } catch (err) { failed(err); }
}

// One request's detail, with its events.
async function openRequest(id) {
  say('');
  show('detail');
  $('d-id').textContent = id;
  $('d-fields').replaceChildren();
  $('d-body').textContent = '';
  $('d-events').replaceChildren();
  try {
    const r = await call('getRequest', { id });
    const f = $('d-fields');
    for (const [k, v] of [['Request id', r.requestId], ['Method', r.method], ['Status', r.status],
      ['HTTP status', r.response ? String(r.response.status) : '-'], ['Trace id', r.traceId || '-'],
      ['Created', when(r.createdAt)], ['Completed', when(r.completedAt)]]) {
      f.append(el('dt', '', k), el('dd', '', v));
    }
    $('d-body').textContent = r.response ? JSON.stringify(r.response.body, null, 2) : '(pending)';
    await loadEventsOf(id);
  } catch (err) { failed(err); }
}

async function loadEventsOf(id) {
  const list = $('d-events');
  const rows = await walk('listEvents', { requestId: id }, 100);
  list.replaceChildren();
  if (rows.length === 0) list.append(el('li', 'muted', 'No webhook event for this request.'));
  for (const e of rows) list.append(eventCard(e, false));
}

// The events view: the newest first.
async function loadEvents() {
  say('');
  const params = { since: since('f-esince') };
  if ($('f-type').value) params.type = $('f-type').value;
  const list = $('e-list');
  try {
    const rows = (await walk('listEvents', params, 1000)).reverse().slice(0, 100);
    list.replaceChildren();
    if (rows.length === 0) list.append(el('li', 'muted', 'No event in this period.'));
    for (const e of rows) list.append(eventCard(e, true));
  } catch (err) { failed(err); }
}

function attemptsTable(attempts) {
  if (!attempts.length) return el('p', 'muted', 'No delivery attempt yet.');
  const t = el('table', 'attempts', el('thead', '', el('tr', '', el('th', '', '#'), el('th', '', 'At'),
    el('th', '', 'Status'), el('th', '', 'Duration'))));
  const body = el('tbody');
  attempts.forEach((a, i) => {
    const ok = a.status !== null && a.status >= 200 && a.status < 300;
    body.append(el('tr', 'attempt', el('td', '', String(i + 1)), el('td', '', when(a.at)),
      el('td', 'st ' + (ok ? 'ok' : 'bad'), a.status === null ? (a.error || 'no answer') : String(a.status)),
      el('td', '', a.durationMs + ' ms')));
  });
  t.append(body);
  return t;
}

function eventCard(e, linkRequest) {
  const li = el('li', 'card event');
  li.dataset.eventId = e.id;
  const rid = e.requestId === null ? null : el('code', 'rid', e.requestId);
  if (rid && linkRequest) {
    const open = el('button', 'link', 'Open request');
    open.type = 'button';
    open.addEventListener('click', () => openRequest(e.requestId));
    li.dataset.requestId = e.requestId;
    li.append(el('div', 'row', el('span', 'method', e.type), el('span', 'st ' + e.status, e.status),
      el('span', 'muted', when(e.occurredAt))), el('div', 'muted', 'event ', el('code', '', e.id)),
    el('div', 'row muted', 'request ', rid, open));
  } else {
    li.append(el('div', 'row', el('span', 'method', e.type), el('span', 'st ' + e.status, e.status),
      el('span', 'muted', when(e.occurredAt))), el('div', 'muted', 'event ', el('code', '', e.id)));
  }
  li.append(attemptsTable(e.attempts));
  const replay = el('button', 'replay', 'Replay');
  replay.type = 'button';
  replay.hidden = state.readOnly;
  const note = el('span', 'replay-state muted');
  replay.addEventListener('click', () => replayEvent(e, li, replay, note, linkRequest));
  li.append(el('div', 'row', replay, note));
  return li;
}

// replayEvent asks for the event to be sent again, then waits for its new
// attempt to show in listEvents (up to 30 s) and redraws the card.
async function replayEvent(e, li, button, note, linkRequest) {
  button.disabled = true;
  note.textContent = 'Replaying…';
  try {
    const r = await call('replayEvent', { id: e.id });
    note.textContent = 'Queued at ' + when(r.queuedAt) + '; waiting for the attempt…';
    const before = e.attempts.length;
    for (let i = 0; i < 60; i++) {
      await new Promise((ok) => setTimeout(ok, 500));
      const page = await call('listEvents', e.requestId === null ? { since: e.occurredAt } : { requestId: e.requestId });
      const now = page.data.find((x) => x.id === e.id);
      if (now && now.attempts.length > before && now.attempts[now.attempts.length - 1].at >= r.queuedAt) {
        const card = eventCard(now, linkRequest);
        const a = now.attempts[now.attempts.length - 1];
        card.querySelector('.replay-state').textContent = 'Sent again: ' +
          (a.status === null ? (a.error || 'no answer') : 'HTTP ' + a.status) + ' in ' + a.durationMs + ' ms';
        li.replaceWith(card);
        return;
      }
    }
    note.textContent = 'Queued; no attempt yet (the endpoint may be slow): refresh later.';
  } catch (err) {
    note.textContent = '';
    failed(err);
  }
  button.disabled = false;
}

async function start() {
  for (const m of METHODS) $('f-method').append(el('option', '', m));
  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const key = $('key').value.trim();
    $('key').value = '';
    if (!key) return;
    sessionStorage.setItem(KEY, key);
    say('');
    show('requests');
    await Promise.all([whoAmI(), loadRequests()]);
  });
  $('nav-requests').addEventListener('click', () => { show('requests'); loadRequests(); });
  $('nav-events').addEventListener('click', () => { show('events'); loadEvents(); });
  $('signout').addEventListener('click', () => signOut());
  $('d-back').addEventListener('click', () => { show('requests'); loadRequests(); });
  $('r-refresh').addEventListener('click', loadRequests);
  $('e-refresh').addEventListener('click', loadEvents);
  for (const id of ['f-method', 'f-status', 'f-since']) $(id).addEventListener('change', loadRequests);
  for (const id of ['f-type', 'f-esince']) $(id).addEventListener('change', loadEvents);
  if (sessionStorage.getItem(KEY)) {
    show('requests');
    await Promise.all([whoAmI(), loadRequests()]);
  } else {
    show('login');
  }
}

document.addEventListener('DOMContentLoaded', start);
