// Idempotency storm (SPEC section 3): many VUs send the very same calls at the
// same moment, and nothing may be provisioned twice.
//
//   scripts/load.sh scripts/k6/idempotency.js
//   VUS=80 PAR=4 ITERATIONS=3 scripts/load.sh scripts/k6/idempotency.js
//
// setup() creates a customer with two yearly orders P and Q. Then VUS (default 40)
// VUs each fire, ITERATIONS times (default 3), one http.batch of PAR (default 3)
// copies of each of four storms, all in parallel:
//   customer  createCustomer {id: X, same params}, no header (derived key customer:X)
//   order     createFirstOrder {id: O, ...} with header Idempotency-Key K1
//   renewal   createRenewalOrder {parent: P, id: R} (derived key order:R); with the
//             window of scripts/load.sh (RENEWAL_WINDOW_DAYS=400) it is accepted,
//             with a window under 366 days every answer is 422 renewal_too_early
//   suspend   suspendOrder {id: Q} with header Idempotency-Key K2 (a keyed
//             non-create call: replayed too)
// Every answer must be the storm's result (200, or that 422) or 409
// request_in_progress. A 409 is retried like a partner would (every 50 ms, up to
// 10 s) until the result comes. Of all the result answers of a storm exactly one
// is the original (no Idempotent-Replayed header: threshold storm_originals
// count==1 per storm), every other one carries Idempotent-Replayed: true; within a
// VU all of them are the same bytes, and each is the same JSON as what the
// database holds then (getCustomer / getOrder right after), so the internal
// customer `id` is the same in every 200 answer across all VUs.
// teardown() checks the database side: getCustomer X is the one customer with
// that id, order P has exactly one renewal (R) (none when refused), order O exists
// once with no renewal, order Q is suspended; and the mismatches: createCustomer X
// with another name is 409 already_exists, K1 with other params is 422
// idempotency_key_reused.
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';
import {
  call, batchEntry, json, errCode, replayed, uid, sameJSON, orderShape, renewalAccepted,
  intEnv, runPrefix, SUMMARY_TREND_STATS,
} from './lib.js';

const VUS = intEnv('VUS', 40);
const PAR = intEnv('PAR', 3);
const ITERATIONS = intEnv('ITERATIONS', 3);
const STORMS = ['customer', 'order', 'renewal', 'suspend'];

const originals = new Counter('storm_originals');
const replays = new Counter('storm_replays');
const inProgress = new Counter('storm_in_progress_409');
const bad = new Counter('storm_unexpected');

const thresholds = {
  checks: ['rate==1'],
  http_req_failed: ['rate==0'],
  storm_unexpected: ['count==0'],
};
for (const s of STORMS) thresholds[`storm_originals{storm:${s}}`] = ['count==1'];

export const options = {
  setupTimeout: '30s',
  teardownTimeout: '30s',
  batch: 4 * PAR,
  batchPerHost: 4 * PAR,
  scenarios: {
    storm: { executor: 'per-vu-iterations', vus: VUS, iterations: ITERATIONS, maxDuration: '60s' },
  },
  thresholds: thresholds,
  summaryTrendStats: SUMMARY_TREND_STATS,
};

export function setup() {
  const base = uid('c');
  const c = call('createCustomer', { id: base, name: 'Storm base', admin: { email: 'storm@example.com' } });
  const P = uid('o');
  const Q = uid('o');
  const p = call('createFirstOrder', { customer: base, id: P, product: 'oo-std', licenses: 5, duration: 'yearly' });
  const q = call('createFirstOrder', { customer: base, id: Q, product: 'oo-std', licenses: 5, duration: 'yearly' });
  const ok = check(null, {
    'setup: customer and orders created': () => c.status === 200 && p.status === 200 && q.status === 200,
  });
  if (!ok) throw new Error(`setup failed: ${c.status} ${p.status} ${q.status} ${p.body}`);
  const X = uid('storm');
  return {
    X: X,
    customerParams: { id: X, name: 'Storm Company', admin: { email: 'storm-admin@example.com', displayName: 'Storm Admin' } },
    O: uid('o'),
    base: base,
    K1: `storm-${runPrefix()}-order`,
    P: P,
    R: uid('r'),
    renewalAccepted: renewalAccepted(json(p).termEnd),
    Q: Q,
    K2: `storm-${runPrefix()}-suspend`,
  };
}

function requests(d) {
  return {
    customer: ['createCustomer', d.customerParams, {}],
    order: ['createFirstOrder', { customer: d.base, id: d.O, product: 'erp-std', licenses: 7, duration: 'monthly' }, { 'Idempotency-Key': d.K1 }],
    renewal: ['createRenewalOrder', { parent: d.P, id: d.R }, {}],
    suspend: ['suspendOrder', { id: d.Q }, { 'Idempotency-Key': d.K2 }],
  };
}

function resultStatus(d, storm) {
  return storm === 'renewal' && !d.renewalAccepted ? 422 : 200;
}

function expectFor(d, storm) {
  return [resultStatus(d, storm), 409];
}

// The database's view of a storm's resource, read after the VU's answers.
function truth(d, storm) {
  switch (storm) {
    case 'customer':
      return json(call('getCustomer', { id: d.X }));
    case 'order':
      return json(call('getOrder', { id: d.O }));
    case 'renewal':
      return json(call('getOrder', { id: d.P }));
    default:
      return json(call('getOrder', { id: d.Q }));
  }
}

const firstBody = {}; // per VU: the first result body seen for each storm

export default function (d) {
  const reqs = requests(d);
  const entries = [];
  const which = [];
  for (let i = 0; i < PAR; i++) {
    for (const s of STORMS) {
      const [m, p, h] = reqs[s];
      entries.push(batchEntry(m, p, h, { expect: expectFor(d, s), tags: { storm: s } }));
      which.push(s);
    }
  }
  const answers = http.batch(entries);
  const results = {};
  answers.forEach((res, i) => {
    const s = which[i];
    const [m, p, h] = reqs[s];
    let r = res;
    for (let tries = 0; r.status === 409 && errCode(json(r)) === 'request_in_progress' && tries < 200; tries++) {
      inProgress.add(1, { storm: s });
      sleep(0.05);
      r = call(m, p, h, { expect: expectFor(d, s), tags: { storm: s } });
    }
    const want = resultStatus(d, s);
    const ok = check(r, {
      [`${s}: result status ${want} (after any 409 request_in_progress)`]: (x) => x.status === want,
    });
    if (!ok) {
      bad.add(1, { storm: s });
      console.warn(`${s}: ${r.status} ${r.body}`);
      return;
    }
    if (replayed(r)) replays.add(1, { storm: s });
    else originals.add(1, { storm: s });
    if (firstBody[s] === undefined) firstBody[s] = r.body;
    check(r, { [`${s}: same bytes as every other answer in this VU`]: (x) => x.body === firstBody[s] });
    if (want === 422) {
      check(r, { [`${s}: 422 renewal_too_early`]: (x) => errCode(json(x)) === 'renewal_too_early' });
    }
    results[s] = json(r);
  });
  // The answers against the database (reads are never replayed).
  for (const s of STORMS) {
    if (!results[s]) continue;
    const db = truth(d, s);
    if (s === 'renewal' && resultStatus(d, s) === 422) {
      check(db, { 'renewal: refused, no renewal stored': (x) => orderShape(x) && x.renewals.length === 0 });
      continue;
    }
    check(results[s], { [`${s}: the answer is what the database holds`]: (x) => sameJSON(x, db) });
  }
  if (results.customer) {
    check(results.customer, {
      'customer: internal id and remoteId as in the database': (x) => Number.isInteger(x.id) && x.remoteId === d.X,
    });
  }
}

export function teardown(d) {
  const c = call('getCustomer', { id: d.X });
  check(c, {
    'teardown: getCustomer X is one customer with that remoteId': (r) =>
      r.status === 200 && (json(r) || {}).remoteId === d.X && Number.isInteger((json(r) || {}).id),
  });
  const o = json(call('getOrder', { id: d.O }));
  check(o, { 'teardown: order O exists once, no renewal': (x) => orderShape(x) && x.id === d.O && x.renewals.length === 0 && x.licenses === 7 });
  const p = json(call('getOrder', { id: d.P }));
  const n = d.renewalAccepted ? 1 : 0;
  check(p, {
    [`teardown: order P has exactly ${n} renewal(s)`]: (x) => orderShape(x) && x.renewals.length === n && (n === 0 || x.renewals[0].id === d.R),
  });
  const q = json(call('getOrder', { id: d.Q }));
  check(q, { 'teardown: order Q suspended': (x) => orderShape(x) && x.status === 'suspended' });
  // Replayed once more, now that every storm is over.
  const again = call('createCustomer', d.customerParams);
  check(again, {
    'teardown: createCustomer X again is a replay of the same customer': (r) =>
      r.status === 200 && replayed(r) && (json(r) || {}).id === (json(c) || {}).id,
  });
  const other = call('createCustomer', Object.assign({}, d.customerParams, { name: 'Another' }), {}, { expect: [409] });
  check(other, { 'teardown: createCustomer X, other params: 409 already_exists': (r) => r.status === 409 && errCode(json(r)) === 'already_exists' });
  const reused = call('createFirstOrder', { customer: d.base, id: uid('o'), product: 'erp-std', licenses: 8, duration: 'monthly' },
    { 'Idempotency-Key': d.K1 }, { expect: [422] });
  check(reused, {
    'teardown: K1 with other params: 422 idempotency_key_reused': (r) => r.status === 422 && errCode(json(r)) === 'idempotency_key_reused',
  });
}
