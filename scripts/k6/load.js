// Load: a constant arrival rate of the realistic partner mix (see mix.js: create
// customers and orders, renewals accepted and refused, suspend/resume, reads,
// users created and deleted). One iteration = one request, so RATE is requests/s.
//
//   scripts/load.sh scripts/k6/load.js                       (200/s for 60s)
//   RATE=300 DURATION=30s scripts/load.sh scripts/k6/load.js
//
// Environment: RATE (default 200 per second), DURATION (default 60s, measured),
// WARMUP (default 10s ramp from 10/s to RATE before it; 0s: none), VUS
// (pre-allocated, default 100), MAX_VUS (default 400), P95_MS / P99_MS
// (createCustomer latency thresholds, default 250 / 500 ms), MAX_PENDING (202
// pending answers tolerated, default 0), plus lib.js's BASE_URL, API_KEY,
// RENEWAL_WINDOW_DAYS.
// Renewals: scripts/load.sh starts the workers with RENEWAL_WINDOW_DAYS=400, so a
// yearly order renews once and is then refused, a monthly one renews about twelve
// times; each answer, 200 or 422 renewal_too_early, is checked against what the
// order's termEnd and the window require.
//
// Thresholds: http_req_failed < 1% (422 renewal_too_early is an expected status),
// checks > 99%, createCustomer p(95) and p(99) over the measured scenario `load`
// (the warm-up excluded), no 202 pending, < 1% of the iterations dropped for want
// of VUs in the measured scenario (a sign that k6 or the service cannot keep
// the rate).
import { mixedIteration, mixThresholds, mixSummary, warmupScenarios, WARMUP, seconds, intEnv, strEnv } from './mix.js';

const RATE = intEnv('RATE', 200);
const DURATION = strEnv('DURATION', '60s');

export const options = Object.assign({
  scenarios: Object.assign(warmupScenarios(RATE), {
    load: {
      executor: 'constant-arrival-rate',
      startTime: WARMUP,
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: intEnv('VUS', 100),
      maxVUs: intEnv('MAX_VUS', 400),
    },
  }),
  thresholds: Object.assign(mixThresholds(intEnv('P95_MS', 250), intEnv('P99_MS', 500), 'load'), {
    // Listed so that the summary shows the measured scenario's own count and rate.
    'http_reqs{scenario:load}': ['count>0'],
    [`dropped_iterations{scenario:load}`]: [`count<${Math.max(1, Math.ceil(RATE * seconds(DURATION) * 0.01))}`],
  }),
}, mixSummary);

export default function () {
  mixedIteration();
}
