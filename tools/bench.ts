// `npm run bench`: how fast kefu-edge acknowledges pushes, and what a push costs in CPU. A
// benchmark, not a test: it prints numbers and writes them to bench/RESULTS.md; nothing fails.
//
//  1. HTTP: the Worker under `wrangler dev` (local workerd), driven by Node's fetch (keep-alive)
//     with safe-mode pushes sealed exactly as the platforms seal them (half Baidu JSON, half
//     WeChat XML, unique MsgIds, ~10% exact retries of pushes sent ≥ 2 s earlier), and side by side with
//     GET /health, a route that does no work, at the same concurrencies.
//  2. CPU in Node (tools/bench-cpu.ts): verify + decrypt + decode (openPush + toMessage) against
//     the wechat-crypto SDK + xml2js on the same WeChat XML pushes, and the worst hostile bodies.
//  3. Cost: the billable operations a unique push and a duplicate actually make, forwarding on,
//     counted by an instrumented build (tools/bench-instrument.ts) of this tree and of the
//     baseline commit, priced at Cloudflare's Workers Paid rates.
//
//   npm run bench [-- --requests 2000 --levels 1,8,32 --cost-pushes 300 --baseline b0bc5f0 --parts http,cpu,cost]

import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { Fields } from "../src/protocol/codec.ts";
import { queryString, sealPush } from "../src/protocol/seal.ts";
import type { SealedPush } from "../src/protocol/seal.ts";
import { DEMO_ENV_FILE, readApps } from "./demo-apps.ts";
import type { PushApp } from "./demo-apps.ts";
import { startStandIn } from "./stand-in.ts";
import type { StandIn } from "./stand-in.ts";
import type { Counters } from "./bench-instrument.ts";
import { cpuBenchmarks, cpuReport, hostileBenchmarks } from "./bench-cpu.ts";
import type { CpuRun, HostileRun } from "./bench-cpu.ts";
import { startWranglerDev } from "./wrangler-dev.ts";
import type { WranglerDev } from "./wrangler-dev.ts";

const { values: flags } = parseArgs({
  options: {
    requests: { type: "string", default: "2000" },
    levels: { type: "string", default: "1,8,32" },
    "cost-pushes": { type: "string", default: "300" },
    baseline: { type: "string", default: "b0bc5f0" },
    parts: { type: "string", default: "http,cpu,cost" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (flags.help) {
  console.log("usage: npm run bench [-- --requests 2000 --levels 1,8,32 --cost-pushes 300 --baseline b0bc5f0 --parts http,cpu,cost]");
  process.exit(0);
}
const REQUESTS = Number(flags.requests);
const LEVELS = flags.levels.split(",").map(Number);
const COST_PUSHES = Number(flags["cost-pushes"]);
const PROBE_REQUESTS = Math.max(1, Math.round(REQUESTS * 0.5));
const ROUNDS = 5;
const PARTS = new Set(flags.parts.split(","));
if (![REQUESTS, COST_PUSHES, ...LEVELS].every((n) => Number.isInteger(n) && n > 0)) {
  console.error("--requests, --levels and --cost-pushes take positive integers, e.g. --requests 2000 --levels 1,8,32");
  process.exit(2);
}
const WARMUP_REQUESTS = 300;
const RETRY_SHARE = 0.1;
const RETRY_AFTER_MS = 2_000; // Baidu's timeout; WeChat's is 5 s
const USERS = 300; // distinct openids: one Durable Object each, as many users would be
const RESULTS_FILE = fileURLToPath(new URL("../bench/RESULTS.md", import.meta.url));

// ---- pushes, as the platforms send them ------------------------------------------------------

interface Push {
  app: PushApp;
  sealed: SealedPush;
}

const apps = [...readApps(DEMO_ENV_FILE).values()];
const baiduApp = apps.find((app) => app.platform === "baidu" && app.encodingAesKey);
const wechatApp = apps.find((app) => app.platform === "wechat" && app.encodingAesKey);
if (!baiduApp || !wechatApp) throw new Error("demo/demo.env needs a Baidu and a WeChat app with an encodingAesKey");

const TEXTS = [
  "你好",
  "在吗？我的订单什么时候发货",
  "订单号 20261122-0042 显示已签收，但我没有收到包裹，麻烦帮我查一下物流",
  "能开发票吗",
  "Hi, can I change the delivery address for my order?",
  "好的，谢谢！",
  "商品有质量问题，想申请退货退款，请问流程是怎样的？需要我先寄回吗？运费谁来承担？",
];
const openids = Array.from({ length: USERS }, () => `o${randomBytes(20).toString("base64url").slice(0, 27)}`);
let msgSequence = BigInt(Date.now()) * 1_000_000n; // 64-bit, above 2^53, unique within the run

/** A fresh safe-mode push from a random user: Baidu as JSON, WeChat as XML (their defaults). */
function newPush(app: PushApp, from = openids): Push {
  const wechat = app.platform === "wechat";
  const fields: Fields = {
    ToUserName: wechat ? "gh_kefuedgedemo" : (app.appId ?? app.name),
    FromUserName: from[randomInt(from.length)]!,
    CreateTime: Math.floor(Date.now() / 1000),
  };
  if (Math.random() < 0.15) {
    Object.assign(fields, { MsgType: "image", PicUrl: `https://example.com/u/${randomBytes(8).toString("hex")}.jpg` });
    if (wechat) fields.MediaId = randomBytes(24).toString("base64url");
  } else {
    Object.assign(fields, { MsgType: "text", Content: TEXTS[randomInt(TEXTS.length)]! });
  }
  fields.MsgId = String(++msgSequence);
  const sealed = sealPush(fields, {
    token: app.token,
    encodingAesKey: app.encodingAesKey,
    trailingId: wechat ? app.appId : "20073496", // Baidu: a platform id, not the appId
    mode: "safe",
    format: wechat ? "xml" : "json",
  });
  return { app, sealed };
}

const alternating = (i: number) => newPush(i % 2 === 0 ? baiduApp : wechatApp);

/**
 * What the platform sends in a busy period: mostly new pushes, sealed as they are sent (their
 * CreateTime is now, as a platform's is), and ~10% exact retries of pushes sent at least
 * RETRY_AFTER_MS earlier (already acknowledged: a platform retries after its timeout).
 */
function pushSource(): (i: number) => Push {
  const sent: { push: Push; at: number }[] = [];
  let retryable = 0; // sent[0 .. retryable) are old enough
  return (i) => {
    const now = performance.now();
    while (retryable < sent.length && sent[retryable]!.at <= now - RETRY_AFTER_MS) retryable++;
    if (retryable > 0 && Math.random() < RETRY_SHARE) return sent[randomInt(retryable)]!.push;
    const push = alternating(i);
    sent.push({ push, at: now });
    return push;
  };
}

// ---- 1. HTTP against wrangler dev -------------------------------------------------------------

interface HttpRun {
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  firstError?: string;
  seconds: number;
  latencies: Float64Array;
}

/** A closed loop: `concurrency` requests in flight until `count` have completed. */
async function drive(concurrency: number, count: number, request: (i: number) => Promise<string | undefined>): Promise<HttpRun> {
  const latencies = new Float64Array(count);
  let next = 0;
  let errors = 0;
  let firstError: string | undefined;
  const loop = async () => {
    for (let i = next++; i < count; i = next++) {
      const started = performance.now();
      const problem = await request(i).catch((error: unknown) => String(error));
      latencies[i] = performance.now() - started;
      if (problem !== undefined) {
        errors++;
        firstError ??= problem;
      }
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, loop));
  const seconds = (performance.now() - started) / 1000;
  latencies.sort();
  return { requests: count, rps: count / seconds, p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), errors, firstError, seconds, latencies };
}

/** Rounds of one route measured apart, as one run. */
function combine(runs: HttpRun[]): HttpRun {
  const latencies = new Float64Array(runs.reduce((n, run) => n + run.requests, 0));
  let offset = 0;
  for (const run of runs) {
    latencies.set(run.latencies, offset);
    offset += run.requests;
  }
  latencies.sort();
  const seconds = runs.reduce((sum, run) => sum + run.seconds, 0);
  return {
    requests: latencies.length,
    rps: latencies.length / seconds,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    errors: runs.reduce((sum, run) => sum + run.errors, 0),
    firstError: runs.find((run) => run.firstError)?.firstError,
    seconds,
    latencies,
  };
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
}

/** Resolves to undefined when the Worker acknowledged as the platform expects, else to what went wrong. */
async function postPush(base: string, push: Push): Promise<string | undefined> {
  const response = await fetch(`${base}/push/${push.app.name}${queryString(push.sealed.query)}`, {
    method: "POST",
    headers: { "content-type": push.sealed.contentType },
    body: push.sealed.body,
  });
  const body = await response.text();
  return response.status === 200 && body === "success" ? undefined : `HTTP ${response.status} ${body.slice(0, 200)}`;
}

async function getHealth(base: string): Promise<string | undefined> {
  const response = await fetch(`${base}/health`);
  await response.text();
  return response.ok ? undefined : `HTTP ${response.status}`;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

interface HttpLevel {
  concurrency: number;
  push: HttpRun;
  trivial: HttpRun;
  /** One Durable Object round trip; the same with a one-row SQLite commit (tools/bench-probe.ts). */
  doCall: HttpRun;
  doWrite: HttpRun;
}

/** This tree's Worker with the probe routes and their Durable Object, as a wrangler config. */
function probeBuild(): string {
  const dir = join(BUILDS_DIR, "probe");
  mkdirSync(dir, { recursive: true });
  const entry = join(dir, "bench-probe-entry.ts");
  writeFileSync(
    entry,
    [
      `import worker from ${JSON.stringify(join(ROOT, "src", "index.ts"))};`,
      `import { withProbes } from ${JSON.stringify(join(ROOT, "tools", "bench-probe.ts"))};`,
      `export * from ${JSON.stringify(join(ROOT, "src", "index.ts"))};`,
      `export { Probe } from ${JSON.stringify(join(ROOT, "tools", "bench-probe.ts"))};`,
      "export default withProbes(worker as never);",
      "",
    ].join("\n"),
  );
  const config = join(dir, "wrangler.toml");
  const toml = readFileSync(join(ROOT, "wrangler.toml"), "utf8")
    .replace(/^main = .*$/m, `main = ${JSON.stringify(entry)}`)
    .concat('\n[[durable_objects.bindings]]\nname = "PROBE"\nclass_name = "Probe"\n\n[[migrations]]\ntag = "bench-probe"\nnew_sqlite_classes = ["Probe"]\n');
  writeFileSync(config, toml);
  return config;
}

async function getProbe(base: string, path: string, i: number): Promise<string | undefined> {
  const response = await fetch(`${base}${path}?object=${openids[i % USERS]}&key=${i}`);
  const body = await response.text();
  return response.ok ? undefined : `HTTP ${response.status} ${body.slice(0, 200)}`;
}

async function benchHttp(): Promise<HttpLevel[]> {
  const workDir = mkdtempSync(join(tmpdir(), "kefu-edge-bench-"));
  const logFile = join(workDir, "wrangler.log");
  const logFd = openSync(logFile, "w");
  let worker: WranglerDev | undefined;
  let keepLog = true; // for a look at what went wrong, unless nothing did
  const interrupted = () => void worker?.stop().finally(() => process.exit(130));
  process.once("SIGINT", interrupted);
  process.once("SIGTERM", interrupted);
  try {
    log("starting the Worker (wrangler dev, fresh local state, forwarding off)…");
    worker = await startWranglerDev({
      config: probeBuild(),
      port: await freePort(),
      inspectorPort: await freePort(),
      ip: "127.0.0.1",
      envFile: DEMO_ENV_FILE, // no KEFU_WEBHOOK_URL in it: forwarding is off
      persistTo: join(workDir, "state"),
      output: logFd,
    });
    const base = worker.url;

    // Every user writes once to each app first: the rows measure acknowledgements to existing
    // conversations (what creating one costs is in the cost table), and the probes' objects exist.
    log(`warming up (${USERS * 2} pushes, one per conversation; ${WARMUP_REQUESTS} health checks and probe calls)…`);
    await drive(8, USERS * 2, (i) => postPush(base, newPush(i % 2 === 0 ? baiduApp! : wechatApp!, [openids[i >> 1]!])));
    await drive(8, WARMUP_REQUESTS, () => getHealth(base));
    await drive(8, Math.max(WARMUP_REQUESTS, USERS), (i) => getProbe(base, "/__probe/do-write", i));

    const levels: HttpLevel[] = [];
    for (const concurrency of LEVELS) {
      // The routes take turns, ROUNDS times, so that whatever else loads the machine meanwhile
      // weighs on each of them alike: the ratios are of the same minutes.
      const nextPush = pushSource();
      const rounds: Record<"trivial" | "push" | "doCall" | "doWrite", HttpRun[]> = { trivial: [], push: [], doCall: [], doWrite: [] };
      const share = (n: number) => Math.max(1, Math.round(n / ROUNDS));
      for (let round = 0; round < ROUNDS; round++) {
        rounds.trivial.push(await drive(concurrency, share(REQUESTS), () => getHealth(base)));
        rounds.push.push(await drive(concurrency, share(REQUESTS), (i) => postPush(base, nextPush(round * REQUESTS + i))));
        rounds.doCall.push(await drive(concurrency, share(PROBE_REQUESTS), (i) => getProbe(base, "/__probe/do", round * REQUESTS + i)));
        rounds.doWrite.push(await drive(concurrency, share(PROBE_REQUESTS), (i) => getProbe(base, "/__probe/do-write", round * REQUESTS + i)));
      }
      const [trivial, push, doCall, doWrite] = [rounds.trivial, rounds.push, rounds.doCall, rounds.doWrite].map(combine) as [
        HttpRun,
        HttpRun,
        HttpRun,
        HttpRun,
      ];
      levels.push({ concurrency, push, trivial, doCall, doWrite });
      const errors = [push, trivial, doCall, doWrite].reduce((sum, run) => sum + run.errors, 0);
      log(
        `  c=${String(concurrency).padStart(2)}  push ${push.rps.toFixed(0)} req/s p50 ${ms(push.p50)} p99 ${ms(push.p99)}` +
          `  |  /health ${trivial.rps.toFixed(0)} req/s p50 ${ms(trivial.p50)} p99 ${ms(trivial.p99)}` +
          `  |  DO call ${doCall.rps.toFixed(0)} req/s, DO call + 1 row ${doWrite.rps.toFixed(0)} req/s` +
          (errors ? `  (${errors} errors: ${push.firstError ?? trivial.firstError ?? doCall.firstError ?? doWrite.firstError})` : ""),
      );
    }
    keepLog = levels.some((level) => [level.push, level.trivial, level.doCall, level.doWrite].some((run) => run.errors > 0));
    return levels;
  } finally {
    await worker?.stop();
    closeSync(logFd);
    process.off("SIGINT", interrupted);
    process.off("SIGTERM", interrupted);
    rmSync(keepLog ? join(workDir, "state") : workDir, { recursive: true, force: true });
    if (keepLog) log(`wrangler's output is in ${logFile}`);
  }
}

// ---- 2. CPU per push in Node: tools/bench-cpu.ts ------------------------------------------------

const require = createRequire(import.meta.url);

// ---- 3. What a push costs: billable operations, counted --------------------------------------

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BUILDS_DIR = join(ROOT, "node_modules", ".cache", "kefu-bench"); // under node_modules: packages resolve
const COST_USERS = 30; // of each app: 60 conversations, ~5 messages each at the default 300 — chats, not one-offs
const COST_CONCURRENCY = 4;
const RETRIES_PER_RETRIED_MESSAGE = 3; // as WeChat does when an answer is late

/** Cloudflare Workers Paid prices, $ per million operations (rows, requests). */
const PRICES = {
  kvReads: 0.5,
  kvWrites: 5,
  doRequests: 0.15,
  rowsWritten: 1,
  rowsRead: 0.001,
  queueOperations: 0.4,
  workerRequests: 0.3,
} as const;

type CostCounters = Omit<Counters, "doRequestsBy"> & { doRequestsBy: Record<string, number> };

interface CostRun {
  build: string;
  unique: CostCounters;
  duplicate: CostCounters;
  webhookDeliveries: number;
}

/** An entry module and wrangler config that run `srcRoot`'s Worker with counted bindings. */
function instrumentedBuild(name: string, srcRoot: string): string {
  const dir = join(BUILDS_DIR, name);
  mkdirSync(dir, { recursive: true });
  const entry = join(dir, "bench-entry.ts");
  const source = readFileSync(join(srcRoot, "wrangler.toml"), "utf8");
  // Every Durable Object class the build binds, whatever its version has.
  const classNames = [...new Set([...source.matchAll(/^class_name = "(\w+)"/gm)].map((m) => m[1]!))];
  writeFileSync(
    entry,
    [
      `import * as build from ${JSON.stringify(join(srcRoot, "src", "index.ts"))};`,
      `import { instrument } from ${JSON.stringify(join(ROOT, "tools", "bench-instrument.ts"))};`,
      `const counted = instrument(build as never, ${JSON.stringify(classNames)});`,
      "export default counted.worker;",
      ...classNames.map((name) => `export const ${name} = counted.classes.${name};`),
      "",
    ].join("\n"),
  );
  const config = join(dir, "wrangler.toml");
  const toml = source.replace(/^main = .*$/m, `main = ${JSON.stringify(entry)}`);
  writeFileSync(config, toml);
  return config;
}

/** The baseline commit's source, from git; undefined when git cannot give it (no history). */
function baselineSource(rev: string): string | undefined {
  const dir = join(BUILDS_DIR, `src-${rev}`);
  try {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const tar = execFileSync("git", ["-C", ROOT, "archive", "--format=tar", rev, "src", "wrangler.toml"], { maxBuffer: 64 << 20 });
    execFileSync("tar", ["-x", "-C", dir], { input: tar });
    return dir;
  } catch (error) {
    log(`  baseline ${rev} unavailable (${String(error).split("\n")[0]}): measuring this tree only`);
    return undefined;
  }
}

async function counters(base: string, reset = false): Promise<CostCounters> {
  const response = await fetch(`${base}/__bench/counters`, { method: reset ? "POST" : "GET" });
  return (await response.json()) as CostCounters;
}

/** Waits until the background work (alarms, queues, webhook) has stopped changing the counts. */
async function settle(base: string, until: () => Promise<boolean>): Promise<void> {
  let last = "";
  let stableSince = Date.now();
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const now = JSON.stringify(await counters(base));
    if (now !== last) {
      last = now;
      stableSince = Date.now();
    } else if (Date.now() - stableSince >= 2_500 && (await until())) return;
  }
  log("  (did not settle within 60 s: counts may be short)");
}

async function costOf(build: string, config: string, standIn: StandIn, workDir: string, logFd: number): Promise<CostRun> {
  const worker = await startWranglerDev({
    config,
    port: await freePort(),
    inspectorPort: await freePort(),
    ip: "127.0.0.1",
    envFile: DEMO_ENV_FILE,
    vars: { KEFU_WEBHOOK_URL: `${standIn.url}/webhook` }, // forwarding on
    persistTo: join(workDir, `state-${build}`),
    output: logFd,
  });
  try {
    const base = worker.url;
    const users = Array.from({ length: COST_USERS }, () => `o${randomBytes(20).toString("base64url").slice(0, 27)}`);
    const pushes: Push[] = []; // each sealed as it is sent, as a platform does
    const webhookCount = async () => {
      const { requests } = (await (await fetch(`${standIn.url}/__standin/requests?platform=webhook`)).json()) as { requests: { match: string }[] };
      return requests.filter((r) => users.includes(r.match)).length;
    };
    await counters(base, true);

    const unique = await drive(COST_CONCURRENCY, COST_PUSHES, (i) => {
      pushes[i] = newPush(i % 2 === 0 ? baiduApp! : wechatApp!, users);
      return postPush(base, pushes[i]);
    });
    if (unique.errors) log(`  ${unique.errors} unique pushes failed: ${unique.firstError}`);
    await settle(base, async () => (await webhookCount()) >= COST_PUSHES);
    const uniqueCounts = await counters(base, true);

    // The platform's retries: every third message retried three times, one retry after the other.
    const retried = pushes.filter((_, i) => i % RETRIES_PER_RETRIED_MESSAGE === 0);
    const duplicates = await drive(COST_CONCURRENCY, retried.length, async (i) => {
      for (let r = 0; r < RETRIES_PER_RETRIED_MESSAGE; r++) {
        const problem = await postPush(base, retried[i]!);
        if (problem) return problem;
      }
      return undefined;
    });
    if (duplicates.errors) log(`  ${duplicates.errors} retried messages failed: ${duplicates.firstError}`);
    await settle(base, async () => true);
    const duplicateCounts = await counters(base);
    const per = (c: CostCounters, n: number): CostCounters => {
      const divide = (record: object) => Object.fromEntries(Object.entries(record).map(([k, v]) => [k, (v as number) / n]));
      return { ...(divide({ ...c, doRequestsBy: 0 }) as unknown as CostCounters), doRequestsBy: divide(c.doRequestsBy) };
    };
    return {
      build,
      unique: per(uniqueCounts, pushes.length),
      duplicate: per(duplicateCounts, retried.length * RETRIES_PER_RETRIED_MESSAGE),
      webhookDeliveries: await webhookCount(),
    };
  } finally {
    await worker.stop();
  }
}

async function benchCost(): Promise<CostRun[]> {
  const workDir = mkdtempSync(join(tmpdir(), "kefu-edge-cost-"));
  const logFile = join(workDir, "wrangler.log");
  const logFd = openSync(logFile, "w");
  const standIn = await startStandIn({ log: () => {} });
  const runs: CostRun[] = [];
  try {
    const builds: [string, string | undefined][] = [
      [flags.baseline, baselineSource(flags.baseline)],
      ["this tree", ROOT],
    ];
    for (const [name, source] of builds) {
      if (!source) continue;
      log(`cost: ${COST_PUSHES} unique pushes and ${COST_PUSHES} retries, forwarding on, build ${name}…`);
      const run = await costOf(name, instrumentedBuild(name === "this tree" ? "current" : name, source), standIn, workDir, logFd);
      log(`  ${run.webhookDeliveries} webhook deliveries; per unique push: ${describeCounts(run.unique)}; per retry: ${describeCounts(run.duplicate)}`);
      runs.push(run);
    }
    return runs;
  } finally {
    closeSync(logFd);
    await standIn.close();
    log(`  wrangler's output is in ${logFile}`);
  }
}

const queueOperations = (c: CostCounters) => c.queueWrites + c.queueReads + c.queueDeletes;

/** $ per million of these operations. */
function dollars(c: CostCounters): number {
  return (
    c.kvReads * PRICES.kvReads +
    c.kvWrites * PRICES.kvWrites +
    c.doRequests * PRICES.doRequests +
    c.rowsWritten * PRICES.rowsWritten +
    c.rowsRead * PRICES.rowsRead +
    queueOperations(c) * PRICES.queueOperations +
    c.workerRequests * PRICES.workerRequests
  );
}

function describeCounts(c: CostCounters): string {
  return `KV ${c.kvReads.toFixed(2)}r/${c.kvWrites.toFixed(2)}w, DO ${c.doRequests.toFixed(2)}, rows ${c.rowsWritten.toFixed(2)}w, queue ${queueOperations(c).toFixed(2)} → $${dollars(c).toFixed(2)}/M`;
}

function costTable(runs: CostRun[]): string[] {
  const columns = runs.flatMap((run) => [
    [`unique push, ${run.build}`, run.unique],
    [`retry, ${run.build}`, run.duplicate],
  ]) as [string, CostCounters][];
  const order = [...columns.filter(([n]) => n.startsWith("unique")), ...columns.filter(([n]) => n.startsWith("retry"))];
  const row = (label: string, value: (c: CostCounters) => string) => `| ${label} | ${order.map(([, c]) => value(c)).join(" | ")} |`;
  const n = (value: number) => (Number.isInteger(value) ? String(value) : value.toFixed(2));
  return [
    `| per push | ${order.map(([name]) => name).join(" | ")} |`,
    `|---|${order.map(() => "--:").join("|")}|`,
    row("KV reads ($0.50/M)", (c) => n(c.kvReads)),
    row("KV writes ($5/M)", (c) => n(c.kvWrites)),
    row("Durable Object requests ($0.15/M)", (c) => n(c.doRequests)),
    row("… Conversation / Directory / alarms", (c) => [c.doRequestsBy.CONVERSATIONS ?? 0, c.doRequestsBy.DIRECTORY ?? 0, c.alarms].map(n).join(" / ")),
    row("SQLite rows written ($1/M)", (c) => n(c.rowsWritten)),
    row("SQLite rows read ($0.001/M)", (c) => n(c.rowsRead)),
    row("queue operations ($0.40/M)", (c) => n(queueOperations(c))),
    row("Worker requests ($0.30/M)", (c) => n(c.workerRequests)),
    row("queue consumer invocations (not priced)", (c) => n(c.queueInvocations)),
    row("**$ per million**", (c) => `**${dollars(c).toFixed(2)}**`),
  ];
}

// ---- report ------------------------------------------------------------------------------------

const ms = (value: number) => `${value.toFixed(1)} ms`;
const ratio = (value: number) => `${value.toFixed(2)}×`;

function log(line: string) {
  process.stdout.write(`${line}\n`);
}

function report(levels: HttpLevel[], cpu: CpuRun[], hostile: HostileRun[], cost: CostRun[]): string {
  const version = (pkg: string) => (JSON.parse(readFileSync(require.resolve(`${pkg}/package.json`), "utf8")) as { version: string }).version;
  const errors = levels.reduce((sum, l) => sum + l.push.errors + l.trivial.errors + l.doCall.errors + l.doWrite.errors, 0);
  return [
    "# kefu-edge benchmark",
    "",
    `${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC · \`npm run bench\` · ${cpus()[0]?.model.trim() ?? "unknown CPU"},` +
      ` nproc ${availableParallelism()} · Node ${process.version} · wrangler ${version("wrangler")} (local workerd)`,
    "",
    "## Push acknowledgement over HTTP",
    "",
    `The Worker under \`wrangler dev\` (demo/demo.env, fresh local KV and Durable Object state, **forwarding off**:`,
    "KEFU_WEBHOOK_URL unset, so the queue and webhook work that follows an ack in production does not compete",
    "for this machine's two cores). Each push is verified, decrypted, decoded, de-duplicated (KV, then the",
    "user's Durable Object with its SQLite insert) and answered `success`. Load: Node's fetch with keep-alive,",
    `a closed loop of *c* requests in flight, ${REQUESTS} requests per row after a warm-up (one push per conversation,`,
    `${WARMUP_REQUESTS} of each other route), the routes taking`,
    `turns in ${ROUNDS} rounds (so that other load on the machine weighs on each alike); the load`,
    `generator runs on the same 2 cores. Pushes: safe mode as the platforms seal them, half Baidu JSON and half`,
    `WeChat XML, from ${USERS} users, unique 64-bit MsgIds, each sealed as it is sent (CreateTime now); ~${RETRY_SHARE * 100}% exact`,
    `retries of pushes sent at least ${RETRY_AFTER_MS / 1000} s earlier (a platform retries after its timeout).`,
    "Trivial: `GET /health` on the same Worker.",
    "",
    "| c | push req/s | push p50 | push p99 | /health req/s | /health p50 | /health p99 | req/s push÷trivial | p50 push÷trivial |",
    "|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ...levels.map(
      ({ concurrency: c, push: p, trivial: t }) =>
        `| ${c} | ${p.rps.toFixed(0)} | ${ms(p.p50)} | ${ms(p.p99)} | ${t.rps.toFixed(0)} | ${ms(t.p50)} | ${ms(t.p99)} | ${ratio(p.rps / t.rps)} | ${ratio(p.p50 / t.p50)} |`,
    ),
    "",
    errors
      ? `**${errors} requests failed** during the run (see the wrangler log); their latencies are included.`
      : "Every request was answered as expected (`success` / 200).",
    "",
    "### Where a push's time goes, locally",
    "",
    `The same Worker answers two probe routes (tools/bench-probe.ts, ${PROBE_REQUESTS} requests per row, in the same rounds):`,
    "a call to a Durable Object that does nothing, and one that commits a one-row SQLite write before it",
    "answers — what an acknowledged push must wait for at the least, without any of kefu-edge's work.",
    "",
    "| c | /health req/s | DO call req/s | DO call + 1-row commit req/s | push req/s | DO call ÷ trivial | DO + commit ÷ trivial | push ÷ DO + commit |",
    "|--:|--:|--:|--:|--:|--:|--:|--:|",
    ...levels.map(
      ({ concurrency: c, push: p, trivial: t, doCall: d, doWrite: w }) =>
        `| ${c} | ${t.rps.toFixed(0)} | ${d.rps.toFixed(0)} | ${w.rps.toFixed(0)} | ${p.rps.toFixed(0)} | ${ratio(d.rps / t.rps)} | ${ratio(w.rps / t.rps)} | ${ratio(p.rps / w.rps)} |`,
    ),
    "",
    "## What a push costs, counted",
    "",
    `A fresh Worker under \`wrangler dev\` with **forwarding on** (to the local stand-in of the webhook), built`,
    "with `tools/bench-instrument.ts`, which wraps the bindings the Worker and its Durable Objects get and counts",
    "every billable operation they make: KV reads and writes; Durable Object requests (a method call on a",
    "stub is one RPC session, calls on an RpcTarget it returns belong to that session; each alarm); SQLite rows",
    "written and read (`rowsWritten` / `rowsRead` of every `sql.exec`); queue operations (a message written,",
    "each delivery read, each ack deleted: ~3 per message of ≤ 64 KB); Worker requests. Production code carries",
    `no counter. Load: ${COST_PUSHES} unique safe-mode pushes (half Baidu JSON, half WeChat XML) from ${COST_USERS} users of each`,
    `app (${COST_USERS * 2} conversations, ~${Math.round(COST_PUSHES / COST_USERS / 2)} messages each, so ${((COST_USERS * 2) / COST_PUSHES).toFixed(2)} new conversations per push),`,
    `${COST_CONCURRENCY} in flight, then every third message retried ${RETRIES_PER_RETRIED_MESSAGE} times (one retry after the other, as a`,
    `platform does): ${COST_PUSHES} retries. Counted until the background work (alarms, queues, webhook) went quiet.`,
    `Priced at Cloudflare's Workers Paid rates, beside the same count for commit \`${flags.baseline}\`, built and`,
    "measured the same way in the same run. Not counted: the retention alarm that forgets history days later.",
    "",
    ...costTable(cost),
    "",
    ...cpuReport(cpu, hostile),
    "Local `wrangler dev` numbers are for comparing routes and changes on one machine, not a forecast of",
    "production throughput: workerd, the Durable Objects' SQLite and the load generator share two cores here.",
    "",
  ].join("\n");
}

// ---- main ---------------------------------------------------------------------------------------

const levels = PARTS.has("http") ? await benchHttp() : [];
let cpu: CpuRun[] = [];
let hostile: HostileRun[] = [];
if (PARTS.has("cpu")) {
  log("measuring CPU per push in Node…");
  cpu = cpuBenchmarks();
  for (const r of cpu)
    log(`  ${r.name.padEnd(32)} ${r.pushes.padEnd(10)} ${r.microseconds.toFixed(1).padStart(6)} µs/push  ${r.perSecond.toFixed(0).padStart(6)} pushes/s`);
  hostile = hostileBenchmarks();
  for (const h of hostile) log(`  ${h.name.padEnd(56)} ${h.outcome.padEnd(14)} ${h.microseconds.toFixed(0).padStart(6)} µs`);
}
const cost = PARTS.has("cost") ? await benchCost() : [];

if (levels.length && cpu.length && cost.length) {
  const markdown = report(levels, cpu, hostile, cost);
  mkdirSync(join(RESULTS_FILE, ".."), { recursive: true });
  writeFileSync(RESULTS_FILE, markdown);
  log(`\n${markdown}`);
  log("written to bench/RESULTS.md");
} else {
  if (cost.length) log(`\n${costTable(cost).join("\n")}`);
  log("(some parts skipped: bench/RESULTS.md left as it is)");
}
