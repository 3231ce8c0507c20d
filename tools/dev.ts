// `npm start`: kefu-edge on http://localhost:8787 with the demo apps, wired to a local stand-in of
// the Baidu and WeChat APIs and of the business webhook (http://127.0.0.1:8788), so replies and
// forwards go somewhere visible without an account or secrets. Ctrl-C stops both.
//   node tools/dev.ts [--port 8787] [--stand-in-port 8788]

import { parseArgs } from "node:util";
import { startStandIn } from "./stand-in.ts";
import type { StandIn } from "./stand-in.ts";
import { DEMO_ENV_FILE, readApps, readEnvFile } from "./demo-apps.ts";
import { startWranglerDev } from "./wrangler-dev.ts";
import type { WranglerDev } from "./wrangler-dev.ts";

const { values: flags } = parseArgs({
  options: {
    port: { type: "string", default: "8787" },
    "stand-in-port": { type: "string", default: "8788" },
    help: { type: "boolean", short: "h" },
  },
});
if (flags.help) {
  console.log("usage: npm start [-- --port 8787] [--stand-in-port 8788]");
  process.exit(0);
}

const demoEnv = readEnvFile(DEMO_ENV_FILE);
const apps = readApps(DEMO_ENV_FILE);

// One JSON line per request from the stand-in; shown as one readable line each.
let standIn: StandIn | undefined;
const showStandInLine = (line: string) => {
  const entry = JSON.parse(line) as StandInLogLine;
  if (entry.path.startsWith("/__standin/")) return; // our own look-ups below
  if (entry.kind === "webhook" && standIn) {
    describeWebhook(standIn.url, entry).then(print, () => print(`webhook  ▸ HTTP ${entry.status} ${entry.path}`));
    return;
  }
  const what = entry.kind ? `${entry.platform} ${entry.kind}, ` : "";
  print(`stand-in ▸ ${entry.method} ${entry.path} → ${entry.status ?? "dropped"} (${what}${entry.ms} ms)`);
};

// Registered first: a Ctrl-C during start-up stops whatever has started so far.
let worker: WranglerDev | undefined;
let stopping = false;
async function stop(reason: string, code: number) {
  if (stopping) return;
  stopping = true;
  print(`\nkefu-edge dev: ${reason}, stopping`);
  await worker?.stop();
  await standIn?.close();
  process.exit(code);
}
process.on("SIGINT", () => void stop("SIGINT", 0));
process.on("SIGTERM", () => void stop("SIGTERM", 0));
// `kill <npm pid>` ends npm and its shell but not us: notice being orphaned and stop too.
const parentPid = process.ppid;
setInterval(() => process.ppid !== parentPid && void stop("parent process exited", 0), 1000).unref();

try {
  standIn = await startStandIn({
    port: Number(flags["stand-in-port"]),
    webhookSecret: demoEnv.KEFU_WEBHOOK_SECRET,
    log: showStandInLine,
  });
} catch (error) {
  console.error(`cannot start the stand-in on port ${flags["stand-in-port"]}: ${(error as Error).message}`);
  process.exit(1);
}

worker = await startWranglerDev({
  port: Number(flags.port),
  envFile: DEMO_ENV_FILE,
  vars: {
    BAIDU_API_BASE: standIn.url,
    WECHAT_API_BASE: standIn.url,
    KEFU_WEBHOOK_URL: `${standIn.url}/webhook`,
  },
}).catch(async (error: unknown) => {
  console.error((error as Error).message);
  await stop("the Worker did not start", 1);
  return undefined;
});
if (!worker) process.exit(1);
worker.exited.then((code) => stop(`wrangler exited (code ${code})`, code ?? 1));
const workerUrl = worker.url;

const pushUrls = [...apps.values()].map((app) => `    ${app.name.padEnd(14)} ${app.platform.padEnd(7)} ${workerUrl}/push/${app.name}`);
print(
  [
    "",
    `kefu-edge is running on ${workerUrl} (Ctrl-C stops it)`,
    "  push URLs (set one as the 客服消息 URL; the token and EncodingAESKey are in demo/demo.env):",
    ...pushUrls,
    `  API key    ${demoEnv.KEFU_API_KEY ?? "(none)"}`,
    `  health     ${workerUrl}/health`,
    `  stand-in   ${standIn.url}: Baidu + WeChat APIs, and the business webhook at /webhook`,
    '             each webhook delivery prints a "webhook ▸" line here',
    `  try        npm run simulate -- --app ${[...apps.keys()][0]} --content 你好`,
    "",
  ].join("\n"),
);

// ---- webhook deliveries, readably ------------------------------------------------------------

interface StandInLogLine {
  at: string;
  method: string;
  path: string;
  status: number | null;
  platform?: string;
  kind?: string;
  match?: string;
  ms: number;
}

interface WebhookRecord {
  at: string;
  path: string;
  verified?: boolean | null;
  status: number | null;
  headers: Record<string, string>;
  body: { type?: string; data?: Record<string, unknown> } | string | null;
}

/** Looks the delivery up in the stand-in's records: its log line does not carry the body. */
async function describeWebhook(base: string, entry: StandInLogLine): Promise<string> {
  const query = new URLSearchParams({ platform: "webhook", match: entry.match ?? "" });
  const { requests } = (await (await fetch(`${base}/__standin/requests?${query}`)).json()) as { requests: WebhookRecord[] };
  const record = requests.find((r) => r.at === entry.at && r.path === entry.path);
  const body = record?.body;
  if (!record || !body || typeof body !== "object" || !body.data) return `webhook  ▸ HTTP ${entry.status} ${entry.path} (not a kefu-edge payload)`;
  const m = body.data;
  const what = m.content ?? m.picUrl ?? m.title ?? m.event ?? "";
  const signature = record.verified === true ? "signature ok" : record.verified === false ? "BAD SIGNATURE" : "unsigned";
  return [
    `webhook  ▸ ${body.type} ${m.app}/${m.openid} ${m.type}${what ? ` ${JSON.stringify(what)}` : ""}`,
    m.msgId ? ` msgId ${m.msgId}` : "",
    ` → HTTP ${entry.status}, ${signature}, id ${record.headers["webhook-id"] ?? "?"}`,
  ].join("");
}

function print(text: string) {
  process.stdout.write(`${text}\n`);
}
