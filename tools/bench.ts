// `npm run bench`: how fast kefu-edge acknowledges pushes, and what a push costs in CPU. A
// benchmark, not a test: it prints numbers and writes them to bench/RESULTS.md; nothing fails.
//
//  1. HTTP: the Worker under `wrangler dev` (local workerd), driven by Node's fetch (keep-alive)
//     with safe-mode pushes sealed exactly as the platforms seal them (half Baidu JSON, half
//     WeChat XML, unique MsgIds, ~10% exact retries of earlier pushes), and side by side with
//     GET /health, a route that does no work, at the same concurrencies.
//  2. CPU in Node: verify + decrypt + decode (openPush + toMessage) over the same kind of pushes,
//     against the wechat-crypto SDK + xml2js doing the same job on the WeChat XML ones.
//
//   npm run bench [-- --requests 2000 --levels 1,8,32]

import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes, randomInt } from "node:crypto";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { toMessage } from "../src/protocol/codec.ts";
import type { Fields } from "../src/protocol/codec.ts";
import { openPush } from "../src/protocol/push.ts";
import type { PushSecrets } from "../src/protocol/push.ts";
import { queryString, sealPush } from "../src/protocol/seal.ts";
import type { SealedPush } from "../src/protocol/seal.ts";
import { DEMO_ENV_FILE, readApps } from "./demo-apps.ts";
import type { PushApp } from "./demo-apps.ts";
import { startWranglerDev } from "./wrangler-dev.ts";
import type { WranglerDev } from "./wrangler-dev.ts";

const { values: flags } = parseArgs({
  options: {
    requests: { type: "string", default: "2000" },
    levels: { type: "string", default: "1,8,32" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (flags.help) {
  console.log("usage: npm run bench [-- --requests 2000 --levels 1,8,32]");
  process.exit(0);
}
const REQUESTS = Number(flags.requests);
const LEVELS = flags.levels.split(",").map(Number);
if (![REQUESTS, ...LEVELS].every((n) => Number.isInteger(n) && n > 0)) {
  console.error("--requests and --levels take positive integers, e.g. --requests 2000 --levels 1,8,32");
  process.exit(2);
}
const WARMUP_REQUESTS = 300;
const RETRY_SHARE = 0.1;
const USERS = 300; // distinct openids: one Durable Object each, as many users would be
const CPU_CORPUS = 1_000;
const CPU_WARMUP = 5_000;
const CPU_ITERATIONS = 30_000;
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
function newPush(app: PushApp): Push {
  const wechat = app.platform === "wechat";
  const fields: Fields = {
    ToUserName: wechat ? "gh_kefuedgedemo" : (app.appId ?? app.name),
    FromUserName: openids[randomInt(USERS)]!,
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
 * What the platform sends in a busy period: mostly new pushes, ~10% exact retries of pushes sent
 * at least `concurrency` requests earlier (so usually already acknowledged, as after a timeout).
 */
function pushSchedule(count: number, concurrency: number): Push[] {
  const schedule: Push[] = [];
  for (let i = 0; i < count; i++) {
    const retryable = i - concurrency;
    schedule.push(retryable > 0 && Math.random() < RETRY_SHARE ? schedule[randomInt(retryable)]! : alternating(i));
  }
  return schedule;
}

// ---- 1. HTTP against wrangler dev -------------------------------------------------------------

interface HttpRun {
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  firstError?: string;
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
  return { requests: count, rps: count / seconds, p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), errors, firstError };
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
      port: await freePort(),
      inspectorPort: await freePort(),
      ip: "127.0.0.1",
      envFile: DEMO_ENV_FILE, // no KEFU_WEBHOOK_URL in it: forwarding is off
      persistTo: join(workDir, "state"),
      output: logFd,
    });
    const base = worker.url;

    log(`warming up (${WARMUP_REQUESTS} pushes, ${WARMUP_REQUESTS} health checks)…`);
    const warmup = Array.from({ length: WARMUP_REQUESTS }, (_, i) => alternating(i));
    await drive(8, WARMUP_REQUESTS, (i) => postPush(base, warmup[i]!));
    await drive(8, WARMUP_REQUESTS, () => getHealth(base));

    const levels: HttpLevel[] = [];
    for (const concurrency of LEVELS) {
      const schedule = pushSchedule(REQUESTS, concurrency); // sealed before the clock starts
      const trivial = await drive(concurrency, REQUESTS, () => getHealth(base));
      const push = await drive(concurrency, REQUESTS, (i) => postPush(base, schedule[i]!));
      levels.push({ concurrency, push, trivial });
      log(
        `  c=${String(concurrency).padStart(2)}  push ${push.rps.toFixed(0)} req/s p50 ${ms(push.p50)} p99 ${ms(push.p99)}` +
          `  |  /health ${trivial.rps.toFixed(0)} req/s p50 ${ms(trivial.p50)} p99 ${ms(trivial.p99)}` +
          (push.errors + trivial.errors ? `  (${push.errors + trivial.errors} errors: ${push.firstError ?? trivial.firstError})` : ""),
      );
    }
    keepLog = levels.some((level) => level.push.errors + level.trivial.errors > 0);
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

// ---- 2. CPU per push in Node ----------------------------------------------------------------

interface CpuRun {
  name: string;
  pushes: string;
  microseconds: number;
  perSecond: number;
}

const secrets = (app: PushApp): PushSecrets => ({
  token: app.token,
  mode: "safe",
  encodingAesKey: app.encodingAesKey,
  requiredTrailingId: app.platform === "wechat" ? app.appId : undefined,
});

/** kefu-edge: verify msg_signature, decrypt, check the appid, decode into the message shape. */
function ours(push: Push): string {
  const opened = openPush(push.sealed.query, push.sealed.body, secrets(push.app), { now: Date.now() / 1000, toleranceSeconds: 300 });
  return toMessage(opened.fields, push.app.platform, push.app.name).msgId ?? "";
}

// The wechat-crypto SDK and xml2js, the way Node WeChat servers typically use them. Neither ships
// types, and they are CommonJS: loaded with require and given the little typing used here.
const require = createRequire(import.meta.url);
type WechatCrypto = { getSignature(timestamp: string, nonce: string, encrypt: string): string; decrypt(text: string): { message: string; id: string } };
const WXBizMsgCrypt = require("wechat-crypto") as new (token: string, encodingAesKey: string, id: string) => WechatCrypto;
const xml2js = require("xml2js") as {
  parseString(xml: string, options: object, callback: (error: Error | null, result: { xml: Record<string, string> }) => void): void;
};
const sdk = new WXBizMsgCrypt(wechatApp.token, wechatApp.encodingAesKey!, wechatApp.appId!);

/** xml2js calls back synchronously for a string input. */
function parseXml(xml: string): Record<string, string> {
  let answer: { error: Error | null; fields?: Record<string, string> } | undefined;
  xml2js.parseString(xml, { explicitArray: false, trim: true }, (error, result) => (answer = { error, fields: result?.xml }));
  if (!answer) throw new Error("xml2js did not answer synchronously");
  if (answer.error || !answer.fields) throw answer.error ?? new Error("no <xml> root");
  return answer.fields;
}

/** The same job with the SDK: parse the envelope, verify msg_signature, decrypt, check the appid, parse. */
function withSdk(push: Push): string {
  const { timestamp, nonce, msg_signature } = push.sealed.query;
  const encrypted = parseXml(push.sealed.body).Encrypt!;
  if (sdk.getSignature(timestamp!, nonce!, encrypted) !== msg_signature) throw new Error("bad signature");
  const { message, id } = sdk.decrypt(encrypted);
  if (id !== wechatApp!.appId) throw new Error("wrong appid");
  return parseXml(message).MsgId ?? "";
}

function benchCpu(name: string, pushes: string, corpus: Push[], open: (push: Push) => string): CpuRun {
  let sink = 0; // uses every result, so no work can be optimised away
  for (let i = 0; i < CPU_WARMUP; i++) sink += open(corpus[i % corpus.length]!).length;
  const started = performance.now();
  for (let i = 0; i < CPU_ITERATIONS; i++) sink += open(corpus[i % corpus.length]!).length;
  const microseconds = ((performance.now() - started) * 1000) / CPU_ITERATIONS;
  if (sink === 0) throw new Error("no MsgId decoded");
  return { name, pushes, microseconds, perSecond: 1e6 / microseconds };
}

function cpuBenchmarks(): CpuRun[] {
  const wechatPushes = Array.from({ length: CPU_CORPUS }, () => newPush(wechatApp!));
  const baiduPushes = Array.from({ length: CPU_CORPUS }, () => newPush(baiduApp!));
  // Both must read the same pushes the same way before their speed means anything.
  for (const push of wechatPushes.slice(0, 50)) {
    if (ours(push) !== withSdk(push)) throw new Error("kefu-edge and wechat-crypto disagree on a push");
  }
  return [
    benchCpu("kefu-edge openPush + toMessage", "WeChat XML", wechatPushes, ours),
    benchCpu("kefu-edge openPush + toMessage", "Baidu JSON", baiduPushes, ours),
    benchCpu("wechat-crypto + xml2js", "WeChat XML", wechatPushes, withSdk),
  ];
}

// ---- report ------------------------------------------------------------------------------------

const ms = (value: number) => `${value.toFixed(1)} ms`;
const ratio = (value: number) => `${value.toFixed(2)}×`;

function log(line: string) {
  process.stdout.write(`${line}\n`);
}

function report(levels: HttpLevel[], cpu: CpuRun[]): string {
  const version = (pkg: string) => (JSON.parse(readFileSync(require.resolve(`${pkg}/package.json`), "utf8")) as { version: string }).version;
  const errors = levels.reduce((sum, l) => sum + l.push.errors + l.trivial.errors, 0);
  const [oursXml, oursJson, sdkXml] = cpu as [CpuRun, CpuRun, CpuRun];
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
    `a closed loop of *c* requests in flight, ${REQUESTS} requests per row after a warm-up of ${WARMUP_REQUESTS}; the load`,
    `generator runs on the same 2 cores. Pushes: safe mode as the platforms seal them, half Baidu JSON and half`,
    `WeChat XML, from ${USERS} users, unique 64-bit MsgIds, ~${RETRY_SHARE * 100}% exact retries of earlier pushes.`,
    "Trivial: `GET /health` on the same Worker, measured just before each push row.",
    "",
    "| c | push req/s | push p50 | push p99 | /health req/s | /health p50 | /health p99 | req/s push÷trivial | p50 push÷trivial |",
    "|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ...levels.map(({ concurrency: c, push: p, trivial: t }) =>
      `| ${c} | ${p.rps.toFixed(0)} | ${ms(p.p50)} | ${ms(p.p99)} | ${t.rps.toFixed(0)} | ${ms(t.p50)} | ${ms(t.p99)} | ${ratio(p.rps / t.rps)} | ${ratio(p.p50 / t.p50)} |`,
    ),
    "",
    errors ? `**${errors} requests failed** during the run (see the wrangler log); their latencies are included.` : "Every request was answered as expected (`success` / 200).",
    "",
    "## CPU per push in Node: verify + decrypt + decode",
    "",
    `One thread, ${CPU_ITERATIONS} pushes after ${CPU_WARMUP} of warm-up, cycling over ${CPU_CORPUS} distinct safe-mode pushes.`,
    "kefu-edge: `openPush` (msg_signature, AES with 32-byte PKCS#7, appid check, XML or JSON) + `toMessage`.",
    `wechat-crypto ${version("wechat-crypto")} + xml2js ${version("xml2js")}: parse the envelope, \`getSignature\` and compare,`,
    "`decrypt`, compare the appid, parse the message, as Node WeChat servers typically do. It has no JSON",
    "support (xml2js is XML only), so the comparison is on WeChat XML.",
    "",
    "| implementation | pushes | µs / push | pushes / s |",
    "|---|---|--:|--:|",
    ...cpu.map((r) => `| ${r.name} | ${r.pushes} | ${r.microseconds.toFixed(1)} | ${r.perSecond.toFixed(0)} |`),
    "",
    `On WeChat XML kefu-edge takes ${ratio(oursXml.microseconds / sdkXml.microseconds)} the CPU time of wechat-crypto + xml2js` +
      ` (${ratio(sdkXml.microseconds / oursXml.microseconds)} as fast); Baidu JSON costs ${oursJson.microseconds.toFixed(1)} µs.`,
    "",
    "Local `wrangler dev` numbers are for comparing routes and changes on one machine, not a forecast of",
    "production throughput: workerd, the Durable Objects' SQLite and the load generator share two cores here.",
    "",
  ].join("\n");
}

// ---- main ---------------------------------------------------------------------------------------

const levels = await benchHttp();
log("measuring CPU per push in Node…");
const cpu = cpuBenchmarks();
for (const r of cpu) log(`  ${r.name.padEnd(32)} ${r.pushes.padEnd(10)} ${r.microseconds.toFixed(1).padStart(6)} µs/push  ${r.perSecond.toFixed(0).padStart(6)} pushes/s`);

const markdown = report(levels, cpu);
mkdirSync(join(RESULTS_FILE, ".."), { recursive: true });
writeFileSync(RESULTS_FILE, markdown);
log(`\n${markdown}`);
log("written to bench/RESULTS.md");
