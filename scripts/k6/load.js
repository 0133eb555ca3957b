// Load: a constant arrival rate of the realistic partner mix (see mix.js: create
// customers and orders, renewals accepted and refused, suspend/resume, reads,
// users created and deleted). One iteration = one request, so RATE is requests/s.
//
//   scripts/load.sh scripts/k6/load.js                       (200/s for 60s)
//   RATE=300 DURATION=30s scripts/load.sh scripts/k6/load.js
//
// Environment: RATE (default 200 per second), DURATION (default 60s), VUS
// (pre-allocated, default 50), MAX_VUS (default 400), P95_MS / P99_MS (createCustomer
// latency thresholds, default 250 / 500 ms), MAX_PENDING (tolerated 202s, default 0),
// plus lib.js's BASE_URL, API_KEY, RENEWAL_WINDOW_DAYS.
// Renewals: scripts/load.sh starts the workers with RENEWAL_WINDOW_DAYS=400, so a
// yearly order renews once and is then refused, a monthly one renews about twelve
// times; both 200 and 422 renewal_too_early are checked against the order's termEnd.
//
// Thresholds: http_req_failed < 1% (422 renewal_too_early is an expected status),
// checks > 99%, createCustomer p(95) and p(99), no 202 pending, < 1% of the
// iterations dropped for want of VUs.
import { mixedIteration, mixThresholds, mixSummary, seconds, intEnv, strEnv } from './mix.js';

const RATE = intEnv('RATE', 200);
const DURATION = strEnv('DURATION', '60s');

export const options = Object.assign({
  scenarios: {
    load: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: intEnv('VUS', 50),
      maxVUs: intEnv('MAX_VUS', 400),
    },
  },
  thresholds: Object.assign(mixThresholds(intEnv('P95_MS', 250), intEnv('P99_MS', 500)), {
    dropped_iterations: [`count<${Math.max(1, Math.ceil(RATE * seconds(DURATION) * 0.01))}`],
  }),
}, mixSummary);

export default function () {
  mixedIteration();
}
