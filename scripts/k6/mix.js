// The realistic partner traffic mix shared by load.js, spike.js and soak.js.
// One iteration = one API call, so an arrival rate of N/s is N requests/s.
//
// Every VU keeps its own customers, orders and users (created earlier by that VU)
// and picks a weighted action:
//   createCustomer 20  createFirstOrder 18  createRenewalOrder 14  suspend/resume 14
//   getOrder 14  getCustomer 5  updateOrder 5  createUser 5  deleteUser 4  cancelOrder 1
// An action whose resource the VU does not have yet falls back to creating it.
//
// Renewals: half of the orders are monthly, half yearly. Whether a renewal must be
// accepted (200) or refused (422 renewal_too_early) is computed from the order's
// termEnd and RENEWAL_WINDOW_DAYS (scripts/load.sh: 400). With 400, a yearly order
// renews once (365 -> 730 days left) and is refused from then on; a monthly order
// renews ~12 times before it is refused. So both outcomes occur all along a run
// (counters renewals_accepted / renewals_refused in the summary). With the service
// default window (15) every renewal in a short run is refused, which is also
// checked. 422 renewal_too_early is an expected status (not an http_req_failed).
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import {
  call, json, errCode, uid, uniqueEmail, orderShape, renewalAccepted, renewalAmbiguous,
  intEnv, strEnv, SUMMARY_TREND_STATS,
} from './lib.js';

export const pending = new Counter('pending_202');
export const renewalsAccepted = new Counter('renewals_accepted');
export const renewalsRefused = new Counter('renewals_refused');
export const unexpected = new Counter('unexpected_answers');

const PRODUCTS = ['oo-lite', 'oo-std', 'oo-ent', 'erp-std', 'erp-admin', 'erp-lim'];
const CAP = 200; // per-VU pool size

const customers = [];
const orders = []; // {id, duration, termEnd, status, renewals}
const users = [];

const WEIGHTS = [
  ['createCustomer', 20],
  ['createFirstOrder', 18],
  ['createRenewalOrder', 14],
  ['suspendResume', 14],
  ['getOrder', 14],
  ['getCustomer', 5],
  ['updateOrder', 5],
  ['createUser', 5],
  ['deleteUser', 4],
  ['cancelOrder', 1],
];
const TOTAL = WEIGHTS.reduce((s, w) => s + w[1], 0);

function pick(a) {
  return a[Math.floor(Math.random() * a.length)];
}

function push(pool, v) {
  pool.push(v);
  if (pool.length > CAP) pool.splice(0, pool.length - CAP);
}

function chooseAction() {
  let r = Math.random() * TOTAL;
  for (const [name, w] of WEIGHTS) {
    if ((r -= w) < 0) return name;
  }
  return 'createCustomer';
}

// expectOK checks the status; a 202 (worker did not answer within the RPC
// deadline) is counted apart and fails the check.
function expectStatus(res, method, want) {
  if (res.status === 202) pending.add(1, { name: method });
  const ok = check(res, { [`${method}: ${want.join(' or ')}`]: (r) => want.indexOf(r.status) >= 0 });
  if (!ok) {
    unexpected.add(1, { name: method, status: String(res.status) });
    if (__ENV.VERBOSE_ERRORS) console.warn(`${method} -> ${res.status} ${res.body}`);
  }
  return ok;
}

function createCustomer() {
  const id = uid('c');
  const res = call('createCustomer', { id: id, name: `Load ${id}`, admin: { email: `admin@${id.toLowerCase()}.example.com` } });
  if (expectStatus(res, 'createCustomer', [200])) {
    const b = json(res) || {};
    check(b, { 'createCustomer: remoteId and id': (x) => x.remoteId === id && Number.isInteger(x.id) && x.isActive === true });
    push(customers, id);
  }
}

function createFirstOrder() {
  if (customers.length === 0) return createCustomer();
  const id = uid('o');
  const duration = Math.random() < 0.5 ? 'monthly' : 'yearly';
  const res = call('createFirstOrder', {
    customer: pick(customers), id: id, product: pick(PRODUCTS), licenses: 1 + Math.floor(Math.random() * 500), duration: duration,
  });
  if (expectStatus(res, 'createFirstOrder', [200])) {
    const b = json(res);
    check(b, { 'createFirstOrder: active order': (x) => orderShape(x) && x.id === id && x.status === 'active' && x.renewals.length === 0 });
    if (b && orderShape(b)) push(orders, { id: id, duration: duration, termEnd: b.termEnd, status: 'active', renewals: 0 });
  }
}

function withOrder(fn) {
  if (orders.length === 0) return createFirstOrder();
  return fn(pick(orders));
}

function createRenewalOrder() {
  return withOrder((o) => {
    const accept = renewalAccepted(o.termEnd);
    const either = renewalAmbiguous(o.termEnd);
    const res = call('createRenewalOrder', { parent: o.id, id: uid('r') }, {}, { expect: [200, 422] });
    const want = either ? [200, 422] : accept ? [200] : [422];
    if (!expectStatus(res, 'createRenewalOrder', want)) return;
    const b = json(res);
    if (res.status === 200) {
      renewalsAccepted.add(1);
      check(b, {
        'createRenewalOrder: one more renewal, termEnd later': (x) =>
          orderShape(x) && x.id === o.id && x.renewals.length === o.renewals + 1 && x.termEnd > o.termEnd,
      });
      if (orderShape(b)) {
        o.termEnd = b.termEnd;
        o.renewals = b.renewals.length;
      }
    } else {
      renewalsRefused.add(1);
      check(b, { 'createRenewalOrder: 422 is renewal_too_early': (x) => errCode(x) === 'renewal_too_early' });
    }
  });
}

function suspendResume() {
  return withOrder((o) => {
    const method = o.status === 'suspended' ? 'resumeOrder' : 'suspendOrder';
    const want = method === 'resumeOrder' ? 'active' : 'suspended';
    const res = call(method, { id: o.id });
    if (expectStatus(res, method, [200])) {
      check(json(res), { [`${method}: status ${want}`]: (x) => orderShape(x) && x.id === o.id && x.status === want });
      o.status = want;
    }
  });
}

function getOrder() {
  return withOrder((o) => {
    const res = call('getOrder', { id: o.id });
    if (expectStatus(res, 'getOrder', [200])) {
      check(json(res), {
        'getOrder: as last seen': (x) => orderShape(x) && x.id === o.id && x.status === o.status && x.termEnd === o.termEnd,
      });
    }
  });
}

function getCustomer() {
  if (customers.length === 0) return createCustomer();
  const id = pick(customers);
  const res = call('getCustomer', { id: id });
  if (expectStatus(res, 'getCustomer', [200])) check(json(res), { 'getCustomer: remoteId': (x) => !!x && x.remoteId === id });
}

function updateOrder() {
  return withOrder((o) => {
    const licenses = 1 + Math.floor(Math.random() * 1000);
    const res = call('updateOrder', { id: o.id, licenses: licenses });
    if (expectStatus(res, 'updateOrder', [200])) {
      check(json(res), { 'updateOrder: licenses': (x) => orderShape(x) && x.licenses === licenses });
    }
  });
}

function cancelOrder() {
  return withOrder((o) => {
    const res = call('cancelOrder', { id: o.id });
    if (expectStatus(res, 'cancelOrder', [200])) {
      check(json(res), { 'cancelOrder: cancelled': (x) => orderShape(x) && x.status === 'cancelled' });
      orders.splice(orders.indexOf(o), 1);
    }
  });
}

function createUser() {
  const email = uniqueEmail('u');
  const res = call('createUser', { email: email, displayName: 'Load user' });
  if (expectStatus(res, 'createUser', [200])) {
    check(json(res), { 'createUser: email, isActive': (x) => !!x && x.email === email && x.isActive === true });
    push(users, email);
  }
}

function deleteUser() {
  if (users.length === 0) return createUser();
  const email = users.shift();
  const res = call('deleteUser', { email: email });
  if (expectStatus(res, 'deleteUser', [200])) check(json(res), { 'deleteUser: deleted': (x) => !!x && x.deleted === true });
}

const ACTIONS = {
  createCustomer, createFirstOrder, createRenewalOrder, suspendResume, getOrder,
  getCustomer, updateOrder, createUser, deleteUser, cancelOrder,
};

export function mixedIteration() {
  ACTIONS[chooseAction()]();
}

// Go-style duration ("90s", "2m", "1h30m") in seconds, for thresholds.
export function seconds(d) {
  let s = 0;
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let m;
  let matched = false;
  while ((m = re.exec(d)) !== null) {
    matched = true;
    s += Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2]];
  }
  if (d === '0' || d === '') return 0;
  if (!matched) throw new Error(`bad duration ${d}`);
  return s;
}

// Thresholds shared by the mixed-traffic scripts. Expected 4xx (422
// renewal_too_early) are excluded from http_req_failed per request.
// Latency thresholds apply to the requests of the scenario named `scenario`
// (not to a warm-up); http_req_failed, checks and pending_202 to all requests.
export function mixThresholds(p95, p99, scenario) {
  return {
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    [`http_req_duration{name:createCustomer,scenario:${scenario}}`]: [`p(95)<${p95}`, `p(99)<${p99}`],
    // Below the 4 s RPC deadline; listed so the summary shows each method's latency.
    'http_req_duration{name:createFirstOrder}': ['p(99)<4000'],
    'http_req_duration{name:createRenewalOrder}': ['p(99)<4000'],
    'http_req_duration{name:getOrder}': ['p(99)<4000'],
    'http_req_duration{name:suspendOrder}': ['p(99)<4000'],
    'http_req_duration{name:createUser}': ['p(99)<4000'],
    pending_202: [`count<=${intEnv('MAX_PENDING', 0)}`],
  };
}

// warmupScenario ramps from 10/s to `rate` over WARMUP (default 10s; 0s: none)
// before the measured scenario, which then starts at startTime(): a stack just
// started (empty connection pools, cold caches, k6's own JIT) answers its first
// seconds of traffic up to ~1.5 s slower, which is not its steady state.
export const WARMUP = strEnv('WARMUP', '10s');

export function warmupScenarios(rate) {
  if (seconds(WARMUP) === 0) return {};
  return {
    warmup: {
      executor: 'ramping-arrival-rate',
      startRate: Math.min(10, rate),
      timeUnit: '1s',
      stages: [{ target: rate, duration: WARMUP }],
      preAllocatedVUs: intEnv('VUS', 100),
      maxVUs: intEnv('MAX_VUS', 400),
    },
  };
}

export const mixSummary = { summaryTrendStats: SUMMARY_TREND_STATS };
export { strEnv, intEnv };
