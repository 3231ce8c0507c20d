// The CPU part of `npm run bench` (alone: `npm run bench:cpu`): verify + decrypt + decode per push
// in Node, kefu-edge against the wechat-crypto SDK + xml2js on the same WeChat XML pushes, and the
// cost of the worst hostile bodies (tools/hostile.ts) before they are refused. The two
// implementations run in alternating rounds and each keeps its median round, so that load from
// other processes on the machine falls on both alike.

import { createRequire } from "node:module";
import { randomBytes, randomInt } from "node:crypto";
import { fileURLToPath } from "node:url";
import { readFileSync } from "node:fs";
import { toMessage } from "../src/protocol/codec.ts";
import type { Fields } from "../src/protocol/codec.ts";
import { openPush } from "../src/protocol/push.ts";
import type { PushSecrets } from "../src/protocol/push.ts";
import { sealPush } from "../src/protocol/seal.ts";
import type { SealedPush } from "../src/protocol/seal.ts";
import { DEMO_ENV_FILE, readApps } from "./demo-apps.ts";
import type { PushApp } from "./demo-apps.ts";
import { hostileBodies } from "./hostile.ts";

const CORPUS = 1_000;
const WARMUP = 5_000;
const ROUNDS = 7;
const PER_ROUND = 6_000;
const HOSTILE_ITERATIONS = 40; // per round; the median round counts

export interface CpuRun {
  name: string;
  pushes: string;
  microseconds: number;
  perSecond: number;
}

export interface HostileRun {
  name: string;
  bytes: number;
  outcome: string;
  microseconds: number;
}

interface Push {
  app: PushApp;
  sealed: SealedPush;
}

const apps = [...readApps(DEMO_ENV_FILE).values()];
const baiduApp = apps.find((app) => app.platform === "baidu" && app.encodingAesKey)!;
const wechatApp = apps.find((app) => app.platform === "wechat" && app.encodingAesKey)!;

const TEXTS = [
  "你好",
  "在吗？我的订单什么时候发货",
  "订单号 20261122-0042 显示已签收，但我没有收到包裹，麻烦帮我查一下物流",
  "Hi, can I change the delivery address for my order?",
];
let msgSequence = BigInt(Date.now()) * 1_000_000n;

function newPush(app: PushApp): Push {
  const wechat = app.platform === "wechat";
  const fields: Fields = {
    ToUserName: wechat ? "gh_kefuedgedemo" : (app.appId ?? app.name),
    FromUserName: `o${randomBytes(20).toString("base64url").slice(0, 27)}`,
    CreateTime: Math.floor(Date.now() / 1000),
    MsgType: "text",
    Content: TEXTS[randomInt(TEXTS.length)]!,
    MsgId: String(++msgSequence),
  };
  const sealed = sealPush(fields, {
    token: app.token,
    encodingAesKey: app.encodingAesKey,
    trailingId: wechat ? app.appId : "20073496",
    mode: "safe",
    format: wechat ? "xml" : "json",
  });
  return { app, sealed };
}

const clock = () => ({ now: Date.now() / 1000, toleranceSeconds: 300 });
const secrets = (app: PushApp, mode: PushSecrets["mode"] = "safe"): PushSecrets => ({
  token: app.token,
  mode,
  encodingAesKey: app.encodingAesKey,
  requiredTrailingId: app.platform === "wechat" ? app.appId : undefined,
});

/** kefu-edge: verify msg_signature and its freshness, decrypt, check the appid, decode. */
function ours(push: Push): string {
  const opened = openPush(push.sealed.query, push.sealed.body, secrets(push.app), clock());
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
  if (id !== wechatApp.appId) throw new Error("wrong appid");
  return parseXml(message).MsgId ?? "";
}

interface Contender {
  name: string;
  pushes: string;
  corpus: Push[];
  open: (push: Push) => string;
  rounds: number[];
}

function round(contender: Contender, count: number): number {
  let sink = 0; // uses every result, so no work can be optimised away
  const started = performance.now();
  for (let i = 0; i < count; i++) sink += contender.open(contender.corpus[randomInt(CORPUS)]!).length;
  if (sink === 0) throw new Error("no MsgId decoded");
  return ((performance.now() - started) * 1000) / count;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

export function cpuBenchmarks(): CpuRun[] {
  const wechatPushes = Array.from({ length: CORPUS }, () => newPush(wechatApp));
  const baiduPushes = Array.from({ length: CORPUS }, () => newPush(baiduApp));
  // Both must read the same pushes the same way before their speed means anything.
  for (const push of wechatPushes.slice(0, 50)) {
    if (ours(push) !== withSdk(push)) throw new Error("kefu-edge and wechat-crypto disagree on a push");
  }
  const contenders: Contender[] = [
    { name: "kefu-edge openPush + toMessage", pushes: "WeChat XML", corpus: wechatPushes, open: ours, rounds: [] },
    { name: "kefu-edge openPush + toMessage", pushes: "Baidu JSON", corpus: baiduPushes, open: ours, rounds: [] },
    { name: "wechat-crypto + xml2js", pushes: "WeChat XML", corpus: wechatPushes, open: withSdk, rounds: [] },
  ];
  for (const contender of contenders) round(contender, WARMUP);
  for (let r = 0; r < ROUNDS; r++) for (const contender of contenders) contender.rounds.push(round(contender, PER_ROUND));
  return contenders.map(({ name, pushes, rounds }) => {
    const microseconds = median(rounds);
    return { name, pushes, microseconds, perSecond: 1e6 / microseconds };
  });
}

/** CPU per hostile body, from the push's arrival to its refusal (or acceptance): median of rounds. */
export function hostileBenchmarks(): HostileRun[] {
  const app = { ...baiduApp, appId: undefined };
  return hostileBodies(app.token, Date.now() / 1000).map(({ name, mode, query, body }) => {
    const judge = () => {
      try {
        const opened = openPush(query, body, secrets(app, mode), clock());
        toMessage(opened.fields, app.platform, app.name);
        return "accepted";
      } catch (error) {
        return `${(error as { code?: string }).code ?? (error as Error).message}`;
      }
    };
    const outcome = judge();
    for (let i = 0; i < 20; i++) judge();
    const rounds = Array.from({ length: ROUNDS }, () => {
      const started = performance.now();
      for (let i = 0; i < HOSTILE_ITERATIONS; i++) judge();
      return ((performance.now() - started) * 1000) / HOSTILE_ITERATIONS;
    });
    return { name, bytes: Buffer.byteLength(body), outcome, microseconds: median(rounds) };
  });
}

const version = (pkg: string) => (JSON.parse(readFileSync(require.resolve(`${pkg}/package.json`), "utf8")) as { version: string }).version;
const ratio = (value: number) => `${value.toFixed(2)}×`;

export function cpuReport(cpu: CpuRun[], hostile: HostileRun[]): string[] {
  const [oursXml, oursJson, sdkXml] = cpu as [CpuRun, CpuRun, CpuRun];
  return [
    "## CPU per push in Node: verify + decrypt + decode",
    "",
    `One thread, ${CORPUS} distinct safe-mode pushes; ${ROUNDS} alternating rounds of ${PER_ROUND} pushes per implementation after`,
    `${WARMUP} of warm-up, each implementation's median round reported (load from other processes falls on both alike).`,
    "kefu-edge: `openPush` (msg_signature and its freshness, AES with 32-byte PKCS#7, appid check, XML or JSON",
    "with every protection of the trust work) + `toMessage`.",
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
    "## Hostile bodies: CPU until refused",
    "",
    "The worst bodies within the body limit, built to make one step work hardest (tools/hostile.ts). The",
    "plaintext-mode ones carry a valid, fresh query signature — a leaked triple — so they reach the parser.",
    `Each: the median of ${ROUNDS} rounds of ${HOSTILE_ITERATIONS}.`,
    "",
    "| body | bytes | outcome | µs |",
    "|---|--:|---|--:|",
    ...hostile.map((h) => `| ${h.name} | ${h.bytes} | ${h.outcome} | ${h.microseconds.toFixed(0)} |`),
    "",
    `The worst costs ${Math.max(...hostile.map((h) => h.microseconds)).toFixed(0)} µs.`,
    "",
  ];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(`${cpuReport(cpuBenchmarks(), hostileBenchmarks()).join("\n")}\n`);
}
