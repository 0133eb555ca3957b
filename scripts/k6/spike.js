// Spike: the realistic mix (mix.js) at a base rate, a sudden spike to a high
// rate, and back; then checks that the service recovered.
//
//   scripts/load.sh scripts/k6/spike.js
//   BASE=50 PEAK=800 HOLD=20s scripts/load.sh scripts/k6/spike.js
//
// Three scenarios, one after the other (all rates are requests/s):
//   base      BASE (default 50) for BASE_FOR (default 10s): warm-up and reference
//   spike     ramping-arrival-rate BASE -> PEAK (default 500) in RAMP (default 5s),
//             PEAK for HOLD (default 10s), back to BASE in RAMP
//   recovery  BASE for RECOVERY (default 15s) right after the spike
// Thresholds: http_req_failed < 1% and checks > 99% over the whole run (a 202
// pending counts as a failed check; MAX_PENDING, default 0, tolerates some),
// createCustomer p(99) during the spike below SPIKE_P99_MS (default 3000, under
// the 4 s RPC deadline), and p(95) of all requests during recovery below
// RECOVERY_P95_MS (default 250): the queue drained and latency came back.
import { mixedIteration, mixSummary, seconds, intEnv, strEnv } from './mix.js';

const BASE = intEnv('BASE', 50);
const PEAK = intEnv('PEAK', 500);
const BASE_FOR = strEnv('BASE_FOR', '10s');
const RAMP = strEnv('RAMP', '5s');
const HOLD = strEnv('HOLD', '10s');
const RECOVERY = strEnv('RECOVERY', '15s');
const VUS = intEnv('VUS', 100);
const MAX_VUS = intEnv('MAX_VUS', 600);
const spikeStart = seconds(BASE_FOR);
const recoveryStart = spikeStart + 2 * seconds(RAMP) + seconds(HOLD);

export const options = Object.assign({
  scenarios: {
    base: {
      executor: 'constant-arrival-rate', rate: BASE, timeUnit: '1s', duration: BASE_FOR,
      preAllocatedVUs: Math.min(VUS, 50), maxVUs: MAX_VUS,
    },
    spike: {
      executor: 'ramping-arrival-rate', startTime: `${spikeStart}s`, startRate: BASE, timeUnit: '1s',
      stages: [
        { target: PEAK, duration: RAMP },
        { target: PEAK, duration: HOLD },
        { target: BASE, duration: RAMP },
      ],
      preAllocatedVUs: VUS, maxVUs: MAX_VUS,
    },
    recovery: {
      executor: 'constant-arrival-rate', startTime: `${recoveryStart}s`, rate: BASE, timeUnit: '1s',
      duration: RECOVERY, preAllocatedVUs: Math.min(VUS, 50), maxVUs: MAX_VUS,
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    pending_202: [`count<=${intEnv('MAX_PENDING', 0)}`],
    'http_req_duration{name:createCustomer,scenario:base}': ['p(99)<4000'],
    'http_req_duration{name:createCustomer,scenario:spike}': [`p(99)<${intEnv('SPIKE_P99_MS', 3000)}`],
    'http_req_duration{scenario:recovery}': [`p(95)<${intEnv('RECOVERY_P95_MS', 250)}`],
    'http_reqs{scenario:spike}': ['count>0'],
  },
}, mixSummary);

export default function () {
  mixedIteration();
}
