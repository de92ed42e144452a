// BullMQ's no-op throughput, the peer of tests/src/bin/bench_noop.rs
// (issue 15): N jobs are added with addBulk while no worker runs, then one
// Worker with a no-op processor drains them. jobs/s = N / (worker created →
// its N-th `completed` event, i.e. the job moved to completed in Redis),
// the definition bench_noop uses (worker start → N-th job acknowledged).
//
// Env: BENCH_NOOP_JOBS (50000), BENCH_NOOP_CONCURRENCY (50), TEST_REDIS_URL
// or REDIS_URL (redis://127.0.0.1:6379/0). Keys go under a prefix of their
// own (bullmq's `prefix` option) and the queue is obliterated afterwards.
// Prints one line: `bench_noop queue=bullmq jobs=… jobs_per_sec=…`.
//
// Options are BullMQ's defaults but for concurrency. Completed jobs are kept
// (no removeOnComplete): our queue keeps a done job too (id in `done`, its
// data and meta) until the trim a day later, so both write the same kind of
// record per job.
import { randomBytes, randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { Queue, Worker } from 'bullmq';

const jobs = count('BENCH_NOOP_JOBS', 50000);
const concurrency = count('BENCH_NOOP_CONCURRENCY', 50);
const connection = connectionOptions(process.env.TEST_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0');
const prefix = `aivbench-bullmq-${randomBytes(6).toString('hex')}`;
const version = createRequire(import.meta.url)('bullmq/package.json').version;
// Added per addBulk call: one call for 50,000 jobs holds them all in memory twice.
const BULK = 1000;
const DRAIN_LIMIT_MS = 600_000;

function count(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name}: expected a count, got ${JSON.stringify(raw)}`);
  return n;
}

// ioredis options from a redis:// URL (BullMQ passes them to ioredis).
function connectionOptions(raw) {
  const url = new URL(raw);
  return {
    host: url.hostname || '127.0.0.1',
    port: Number(url.port || 6379),
    db: Number(url.pathname.slice(1) || 0),
    username: decodeURIComponent(url.username) || undefined,
    password: decodeURIComponent(url.password) || undefined,
  };
}

const queue = new Queue('noop', { connection, prefix });
let worker;
try {
  console.error(`pushing ${jobs} no-op jobs (no worker running)`);
  for (let added = 0; added < jobs; added += BULK) {
    const batch = Array.from({ length: Math.min(BULK, jobs - added) }, () => ({
      name: 'turn',
      // Shaped like our turn job's payload.
      data: { turn_id: randomUUID(), session_id: randomUUID(), request_id: 'bench-noop' },
    }));
    await queue.addBulk(batch);
  }

  let completed = 0;
  let failed = 0;
  let finish;
  const drained = new Promise((resolve) => (finish = resolve));
  const started = performance.now();
  worker = new Worker('noop', async () => {}, { connection, prefix, concurrency });
  worker.on('completed', () => {
    completed += 1;
    if (completed + failed === jobs) finish();
  });
  worker.on('failed', () => {
    failed += 1;
    if (completed + failed === jobs) finish();
  });
  worker.on('error', (e) => console.error('worker error:', e));
  const limit = setTimeout(() => finish(), DRAIN_LIMIT_MS);
  await drained;
  clearTimeout(limit);
  const seconds = (performance.now() - started) / 1000;
  if (completed !== jobs) throw new Error(`${completed} of ${jobs} jobs completed (${failed} failed)`);

  const rate = jobs / seconds;
  console.error(`bullmq ${version}: ${jobs} no-op jobs in ${seconds.toFixed(2)} s, concurrency ${concurrency}`);
  console.log(
    `bench_noop queue=bullmq version=${version} jobs=${jobs} concurrency=${concurrency} seconds=${seconds.toFixed(3)} jobs_per_sec=${rate.toFixed(0)}`,
  );
} finally {
  await worker?.close();
  await queue.obliterate({ force: true });
  await queue.close();
}
