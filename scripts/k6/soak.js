// Soak: the realistic mix (mix.js) at a long, low constant rate, to find what
// only time shows: leaks (memory, connections, goroutines), a growing queue,
// latency that creeps up as tables and Redis grow, idempotency records piling up.
//
//   DURATION=2h scripts/load.sh scripts/k6/soak.js
//   RATE=30 DURATION=30m scripts/load.sh scripts/k6/soak.js
//
// Environment: RATE (default 50 per second), DURATION (default 30m), WARMUP
// (default 10s), VUS (default 20), MAX_VUS (default 200), P95_MS / P99_MS
// (createCustomer, default 250 / 500 ms), MAX_PENDING (202s tolerated, default 0).
// Thresholds as load.js, and the latency thresholds hold over the whole soak,
// so a slow creep fails it. Watch the processes' /metrics (ports printed by
// scripts/load.sh; KEEP_LOGS=1 keeps their logs) during a long soak.
import { mixedIteration, mixThresholds, mixSummary, warmupScenarios, WARMUP, seconds, intEnv, strEnv } from './mix.js';

const RATE = intEnv('RATE', 50);
const DURATION = strEnv('DURATION', '30m');

export const options = Object.assign({
  scenarios: Object.assign(warmupScenarios(RATE), {
    soak: {
      executor: 'constant-arrival-rate',
      startTime: WARMUP,
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: intEnv('VUS', 20),
      maxVUs: intEnv('MAX_VUS', 200),
    },
  }),
  thresholds: Object.assign(mixThresholds(intEnv('P95_MS', 250), intEnv('P99_MS', 500), 'soak'), {
    // Listed so that the summary shows the measured scenario's own count and rate.
    'http_reqs{scenario:soak}': ['count>0'],
    [`dropped_iterations{scenario:soak}`]: [`count<${Math.max(1, Math.ceil(RATE * seconds(DURATION) * 0.01))}`],
  }),
}, mixSummary);

export default function () {
  mixedIteration();
}
