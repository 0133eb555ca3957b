// Shared helpers for the k6 scripts of this folder (SPEC sections 1-3 and 5).
//
// Environment (k6 reads the process environment, or pass `-e NAME=value`):
//   BASE_URL             gateway API, default http://127.0.0.1:8080 (the endpoint is `/`)
//   API_KEY              a partner key (`bin/gateway keys create --partner NAME`)
//   RUN_ID               prefix of every id the scripts create; default: random per run,
//                        so reruns against the same database never collide
//   RENEWAL_WINDOW_DAYS  the workers' renewal window (default 15, as the service's);
//                        scripts/load.sh starts its workers with 400 and exports it,
//                        so the scripts know which renewals must be accepted
//   HTTP_VERB            GET or POST for call() (default POST; smoke.js tries both)
//
// scripts/load.sh starts an isolated stack and sets all of these.
import http from 'k6/http';
import { check } from 'k6';

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/*$/, '/');
export const API_KEY = __ENV.API_KEY || '';
export const WINDOW_DAYS = intEnv('RENEWAL_WINDOW_DAYS', 15);
export const HTTP_VERB = (__ENV.HTTP_VERB || 'POST').toUpperCase();
export const DAY = 86400;

// Trend stats printed in the end-of-test summary (p(99) included).
export const SUMMARY_TREND_STATS = ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'];

export function intEnv(name, def) {
  const v = __ENV[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`${name}=${v}: not a number`);
  return n;
}

export function strEnv(name, def) {
  const v = __ENV[name];
  return v === undefined || v === '' ? def : v;
}

// Run prefix: [A-Za-z0-9] only, short, so that ids stay within 64 chars of
// A-Za-z0-9._:- . Each VU evaluates this module in its own runtime, so without
// RUN_ID every VU gets its own random prefix; the VU number and a per-VU counter
// are part of every id as well.
const RUN = (__ENV.RUN_ID || Date.now().toString(36).slice(-6) + Math.random().toString(36).slice(2, 6)).replace(/[^A-Za-z0-9]/g, '');
let seq = 0;

// uid('c') -> "c-<run>-<vu>-<iter>-<n>": unique within a run and across runs.
// __VU/__ITER are 0 in setup() and teardown(); the counter keeps those unique too.
export function uid(kind) {
  seq++;
  const vu = typeof __VU === 'number' ? __VU : 0;
  const it = typeof __ITER === 'number' ? __ITER : 0;
  return `${kind}-${RUN}-${vu}-${it}-${seq}`;
}

export function uniqueEmail(kind) {
  return `${uid(kind || 'u')}@load.example.com`.toLowerCase();
}

// call sends {"method": method, "params": params} to `/` with the API key.
// headers are added to the request (e.g. {'Idempotency-Key': 'k1'}). opts:
//   verb     GET or POST (default HTTP_VERB)
//   expect   statuses that are not an http_req_failed (default: 2xx only)
//   tags     extra tags; every request is tagged name=<method>
//   timeout  request timeout (default 10s: above the 4 s RPC deadline)
export function call(method, params, headers, opts) {
  const o = opts || {};
  const h = Object.assign({ 'Content-Type': 'application/json', 'x-api-key': API_KEY }, headers || {});
  const p = { headers: h, tags: Object.assign({ name: method }, o.tags || {}), timeout: o.timeout || '10s' };
  if (o.expect) p.responseCallback = http.expectedStatuses(...o.expect);
  const body = JSON.stringify({ method: method, params: params === undefined ? {} : params });
  return http.request(o.verb || HTTP_VERB, BASE_URL, body, p);
}

// json parses a response body; null when it is not JSON.
export function json(res) {
  try {
    return JSON.parse(res.body);
  } catch (e) {
    return null;
  }
}

export function errCode(body) {
  return body && body.error ? body.error.code : undefined;
}

export function replayed(res) {
  return res.headers['Idempotent-Replayed'] === 'true';
}

// isError checks a SPEC error answer: status, error.code, and field when given.
export function isError(res, status, code, field) {
  const b = json(res);
  const checks = {};
  checks[`${status} ${code}`] = () => res.status === status && errCode(b) === code;
  checks[`${code}: message and requestId`] = () =>
    !!b && !!b.error && typeof b.error.message === 'string' && b.error.message.length > 0 && typeof b.requestId === 'string';
  if (field) checks[`${code}: field ${field}`] = () => !!b && !!b.error && b.error.field === field;
  return check(res, checks);
}

// Shape checks of the SPEC section 2 resources. They return a check map.
export function customerChecks(id, name, email) {
  return {
    'customer: 200': (r) => r.status === 200,
    'customer: remoteId': (r) => (json(r) || {}).remoteId === id,
    'customer: id is an integer': (r) => Number.isInteger((json(r) || {}).id),
    'customer: name': (r) => name === undefined || (json(r) || {}).name === name,
    'customer: partner, createdAt, isActive': (r) => {
      const b = json(r) || {};
      return Number.isInteger(b.partner) && Number.isInteger(b.createdAt) && b.isActive === true;
    },
    'customer: admin.email': (r) => email === undefined || ((json(r) || {}).admin || {}).email === email,
  };
}

export const STATUSES = ['active', 'suspended', 'cancelled', 'expired'];

// pageShape: a page of a list, {"data": [...], "nextCursor": string|null},
// of at most limit rows, each of the shape rowShape checks.
export function pageShape(b, limit, rowShape) {
  return (
    !!b && Array.isArray(b.data) && b.data.length <= limit && b.data.every(rowShape) &&
    (b.nextCursor === null || (typeof b.nextCursor === 'string' && b.data.length === limit))
  );
}

export function orderShape(b) {
  return (
    !!b &&
    typeof b.id === 'string' &&
    typeof b.customer === 'string' &&
    typeof b.product === 'string' &&
    Number.isInteger(b.licenses) &&
    (b.duration === 'monthly' || b.duration === 'yearly') &&
    STATUSES.indexOf(b.status) >= 0 &&
    Number.isInteger(b.termStart) &&
    Number.isInteger(b.termEnd) &&
    b.termEnd > b.termStart &&
    Number.isInteger(b.createdAt) &&
    Number.isInteger(b.updatedAt) &&
    Array.isArray(b.renewals)
  );
}

export function orderChecks(id, status) {
  return {
    'order: 200': (r) => r.status === 200,
    'order: shape': (r) => orderShape(json(r)),
    'order: id': (r) => (json(r) || {}).id === id,
    'order: status': (r) => status === undefined || (json(r) || {}).status === status,
  };
}

// renewalAccepted tells whether a renewal of an order with this termEnd must be
// accepted now (SPEC: refused while more than the window is left).
export function renewalAccepted(termEnd) {
  return termEnd - Date.now() / 1000 <= WINDOW_DAYS * DAY;
}

// Near the window's edge (clock skew between k6 and the worker, seconds of
// queueing) either answer is right.
export function renewalAmbiguous(termEnd) {
  return Math.abs(termEnd - Date.now() / 1000 - WINDOW_DAYS * DAY) < 120;
}

export function sameJSON(a, b) {
  return JSON.stringify(canon(a)) === JSON.stringify(canon(b));
}

function canon(v) {
  if (Array.isArray(v)) return v.map(canon);
  if (v && typeof v === 'object') {
    const o = {};
    Object.keys(v)
      .sort()
      .forEach((k) => (o[k] = canon(v[k])));
    return o;
  }
  return v;
}
