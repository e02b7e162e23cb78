// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
// SPDX-License-Identifier: GPL-3.0-or-later
//
// Real BullMQ and Bull jobs for the runbook.ops queue tests, made and counted through the libraries' own API.
//   node fixture.js <bullmq|bull> populate <prefix> <queue> [--paused]   jobs in every state the library has
//   node fixture.js <bullmq|bull> failed <prefix> <queue> <n>            n failed jobs (one attempt each)
//   node fixture.js <bullmq|bull> counts <prefix> <queue>...             getJobCounts() (+ isPaused) as JSON
//   node fixture.js <bullmq|bull> work <prefix> <queue> <n>              a real worker until n jobs completed
// Redis: QUEUE_REDIS_PORT, QUEUE_REDIS_PASSWORD, QUEUE_REDIS_DB (127.0.0.1).
'use strict';

const connection = {
  host: '127.0.0.1',
  port: Number(process.env.QUEUE_REDIS_PORT || 6379),
  password: process.env.QUEUE_REDIS_PASSWORD || undefined,
  db: Number(process.env.QUEUE_REDIS_DB || 0),
};
const LOCK_MS = 600000; // the "active" job stays active for the test's whole run

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function until(check, what, ms = 30000) {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
const processor = async (job) => {
  if (job.data.fail) throw new Error(`planned failure of ${job.id}`);
  return 'ok';
};

// --- BullMQ -------------------------------------------------------------------------------------
const BULLMQ_TYPES = ['waiting', 'paused', 'active', 'delayed', 'prioritized', 'waiting-children', 'completed', 'failed'];

async function bullmq(cmd, prefix, names, extra) {
  const { Queue, Worker, FlowProducer } = require('bullmq');
  const name = names[0];
  const open = (n) => new Queue(n, { connection, prefix });
  if (cmd === 'counts') {
    const out = {};
    for (const n of names) {
      const q = open(n);
      out[n] = { counts: await q.getJobCounts(...BULLMQ_TYPES), paused: await q.isPaused() };
      await q.close();
    }
    return out;
  }
  const q = open(name);
  if (cmd === 'failed' || cmd === 'populate') {
    const nFailed = cmd === 'failed' ? Number(extra[0]) : 3;
    const nDone = cmd === 'failed' ? 0 : 2;
    const worker = new Worker(name, processor, { connection, prefix, autorun: false });
    for (let i = 0; i < nFailed; i++) await q.add('mail', { fail: true, i }, { attempts: 1 });
    for (let i = 0; i < nDone; i++) await q.add('mail', { i });
    worker.run();
    await until(async () => {
      const c = await q.getJobCounts('failed', 'completed');
      return c.failed >= nFailed && c.completed >= nDone;
    }, 'failed and completed jobs');
    await worker.close();
  }
  if (cmd === 'populate') {
    await q.add('mail', { later: true }, { delay: 3600000 });
    await q.add('mail', { vip: true }, { priority: 5 });
    await q.add('mail', { vip: true }, { priority: 2 });
    const flow = new FlowProducer({ connection, prefix });
    await flow.add({ name: 'digest', queueName: name, data: {}, children: [{ name: 'part', queueName: name, data: {} }] });
    await flow.close();
    // a worker holding a job: active, with a lock that outlives the test
    const holder = new Worker(name, null, { connection, prefix, lockDuration: LOCK_MS, autorun: false });
    const held = await holder.getNextJob('runbook-test-token');
    if (!held) throw new Error('no job to hold active');
    await holder.close(true);
    for (let i = 0; i < 4; i++) await q.add('mail', { i, waiting: true });
    if (extra.includes('--paused')) await q.pause();
  }
  if (cmd === 'work') {
    const want = Number(extra[0]);
    const done = [];
    const worker = new Worker(name, async (job) => { done.push(job.id); return 'ok'; }, { connection, prefix });
    await until(async () => done.length >= want, `${want} jobs processed by the BullMQ worker`);
    await worker.close();
    await q.close();
    return { processed: done };
  }
  await q.close();
  return { ok: true };
}

// --- Bull ---------------------------------------------------------------------------------------
const BULL_TYPES = ['waiting', 'paused', 'active', 'delayed', 'completed', 'failed'];

async function bull(cmd, prefix, names, extra) {
  const Bull = require('bull');
  const redis = { ...connection };
  const open = (n, opts = {}) => new Bull(n, { redis, prefix, ...opts });
  const name = names[0];
  if (cmd === 'counts') {
    const out = {};
    for (const n of names) {
      const q = open(n);
      out[n] = { counts: await q.getJobCounts(...BULL_TYPES), paused: await q.isPaused() };
      await q.close();
    }
    return out;
  }
  if (cmd === 'failed' || cmd === 'populate') {
    const nFailed = cmd === 'failed' ? Number(extra[0]) : 3;
    const nDone = cmd === 'failed' ? 0 : 2;
    const q = open(name);
    for (let i = 0; i < nFailed; i++) await q.add({ fail: true, i }, { attempts: 1 });
    for (let i = 0; i < nDone; i++) await q.add({ i });
    q.process(processor);
    await until(async () => {
      const c = await q.getJobCounts();
      return c.failed >= nFailed && c.completed >= nDone;
    }, 'failed and completed jobs');
    await q.close();
  }
  if (cmd === 'populate') {
    const q = open(name, { settings: { lockDuration: LOCK_MS } });
    await q.add({ later: true }, { delay: 3600000 });
    await q.add({ vip: true }, { priority: 3 });
    const held = await q.getNextJob(); // active, locked: what a busy worker holds
    if (!held) throw new Error('no job to hold active');
    for (let i = 0; i < 4; i++) await q.add({ i, waiting: true });
    if (extra.includes('--paused')) await q.pause();
    await q.close(true);
  }
  if (cmd === 'work') {
    const want = Number(extra[0]);
    const done = [];
    const q = open(name);
    q.process(async (job) => { done.push(String(job.id)); return 'ok'; });
    await until(async () => done.length >= want, `${want} jobs processed by the Bull worker`);
    await q.close();
    return { processed: done };
  }
  return { ok: true };
}

async function main() {
  const [lib, cmd, prefix, ...rest] = process.argv.slice(2);
  const names = rest.filter((a) => !a.startsWith('--'));
  const flags = rest.filter((a) => a.startsWith('--'));
  const queueNames = cmd === 'counts' ? names : names.slice(0, 1);
  const extra = cmd === 'counts' ? flags : [...names.slice(1), ...flags];
  const run = { bullmq, bull }[lib];
  if (!run) throw new Error(`unknown library ${lib}`);
  const out = await run(cmd, prefix, queueNames, extra);
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
