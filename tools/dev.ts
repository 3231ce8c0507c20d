// `npm start`: kefu-edge on http://localhost:8787 with the demo apps, wired to a local stand-in of
// the Baidu and WeChat APIs and of the business webhook (http://127.0.0.1:8788), so replies and
// forwards go somewhere visible without an account or secrets. Ctrl-C stops both.
//   node tools/dev.ts [--port 8787] [--stand-in-port 8788] [--fresh]

import { rmSync } from "node:fs";
import { createServer } from "node:net";
import { relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startStandIn } from "./stand-in.ts";
import type { StandIn } from "./stand-in.ts";
import { DEMO_ENV_FILE, DEMO_TP_APP_ID, readApps, readEnvFile, readThirdParties } from "./demo-apps.ts";
import { platformEvent, pushPlatformEvent } from "./tp-platform.ts";
import { startWranglerDev } from "./wrangler-dev.ts";
import type { WranglerDev } from "./wrangler-dev.ts";

const USAGE = `usage: npm start [-- --port 8787] [--stand-in-port 8788] [--fresh]

  --port N            the Worker's port                                       (default 8787)
  --stand-in-port N   the port of the stand-in of Baidu, WeChat and your webhook (default 8788)
  --fresh             start with empty local state: deletes .wrangler/state first
  -h, --help          this text`;

const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** wrangler's local KV, Durable Object and queue state; kept across restarts. */
const STATE_DIR = fileURLToPath(new URL("../.wrangler/state", import.meta.url));

const flags = parseFlags(process.argv.slice(2));
if (flags.help) {
  console.log(USAGE);
  process.exit(0);
}
for (const port of [flags.port, flags.standInPort]) {
  const taken = await portTaken(port);
  if (taken) {
    console.error(`port ${port} is already in use (${taken}), perhaps by another npm start: stop that, or choose free ports with --port and --stand-in-port`);
    process.exit(1);
  }
}
if (flags.fresh) {
  rmSync(STATE_DIR, { recursive: true, force: true });
  print(`removed ${relative(ROOT, STATE_DIR)}: starting with empty local state`);
}

const demoEnv = readEnvFile(DEMO_ENV_FILE);
const apps = readApps(DEMO_ENV_FILE);
const platforms = readThirdParties(DEMO_ENV_FILE);

// Registered first: a Ctrl-C during start-up stops whatever has started so far.
let standIn: StandIn | undefined;
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
    port: flags.standInPort,
    webhookSecret: demoEnv.KEFU_WEBHOOK_SECRET,
    log: showStandInLine,
  });
} catch (error) {
  console.error(`cannot start the stand-in on port ${flags.standInPort}: ${(error as Error).message}`);
  process.exit(1);
}

print("starting the Worker under wrangler dev…");
worker = await startWranglerDev({
  port: flags.port,
  envFile: DEMO_ENV_FILE,
  persistTo: STATE_DIR,
  vars: {
    BAIDU_API_BASE: standIn.url,
    WECHAT_API_BASE: standIn.url,
    KEFU_WEBHOOK_URL: `${standIn.url}/webhook`,
    BAIDU_AUTHORIZATION_PAGE: `${standIn.url}/mappconsole/tp/authorization`,
  },
  output: wranglerOutput(),
}).catch(async (error: unknown) => {
  console.error((error as Error).message);
  await stop("the Worker did not start", 1);
  return undefined;
});
if (!worker) process.exit(1);
worker.exited.then((code) => stop(`wrangler exited (code ${code})`, code ?? 1));
const workerUrl = worker.url;

// Each demo platform gets its ticket and its demo mini program authorized, as Baidu would push them.
// The stand-in starts empty each time: kept credentials it no longer knows are recovered by kefu-edge.
for (const platform of platforms.values()) {
  for (const event of ["ticket", "AUTHORIZED"]) {
    const answer = await pushPlatformEvent(workerUrl, platform, await platformEvent(standIn.url, platform, event, DEMO_TP_APP_ID)).catch((error: unknown) => ({
      status: 0,
      body: String(error),
    }));
    if (answer.body !== "success") print(`demo platform ${platform.name}: ${event} was not applied (${answer.status} ${answer.body})`);
  }
}
const tpUrls = [...platforms.values()].flatMap((p) => [
  `    ${p.name.padEnd(14)} 授权事件接收URL ${workerUrl}/tp/${p.name}/events`,
  `    ${"".padEnd(14)} 消息与事件接收URL ${workerUrl}/tp/${p.name}/messages   (mini program ${p.name}.${DEMO_TP_APP_ID} authorized)`,
]);

const pushUrls = [...apps.values()].map((app) => `    ${app.name.padEnd(14)} ${app.platform.padEnd(7)} ${workerUrl}/push/${app.name}`);
print(
  [
    "",
    `kefu-edge is running on ${workerUrl} (Ctrl-C stops it)`,
    "  push URLs (set one as the 客服消息 URL; the token and EncodingAESKey are in demo/demo.env):",
    ...pushUrls,
    ...(tpUrls.length > 0 ? ['  third-party platform (README, "Third-party platform mode"):', ...tpUrls] : []),
    `  API key    ${demoEnv.KEFU_API_KEY ?? "(none)"}`,
    `  health     ${workerUrl}/health`,
    `  stand-in   ${standIn.url}: Baidu + WeChat APIs, and the business webhook at /webhook`,
    '             each webhook delivery prints a "webhook ▸" line here',
    `  state      ${relative(ROOT, STATE_DIR)}: conversations, quotas and queues survive restarts; npm start -- --fresh starts empty`,
    `  try        npm run simulate -- --app ${[...apps.keys()][0]} --content 你好${flags.port === 8787 ? "" : ` --url ${workerUrl}`}`,
    "",
  ].join("\n"),
);

// ---- flags and ports -------------------------------------------------------------------------

function parseFlags(argv: string[]) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        port: { type: "string", default: "8787" },
        "stand-in-port": { type: "string", default: "8788" },
        fresh: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (error) {
    usageError((error as Error).message);
  }
  const port = portNumber("--port", values.port);
  const standInPort = portNumber("--stand-in-port", values["stand-in-port"]);
  if (port === standInPort) usageError("--port and --stand-in-port must differ");
  return { port, standInPort, fresh: values.fresh, help: values.help };
}

function portNumber(flag: string, value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) usageError(`${flag} needs a port number (1-65535), got ${JSON.stringify(value)}`);
  return port;
}

function usageError(message: string): never {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

/** Why the port cannot be listened on (as wrangler will, on localhost), or undefined when it is free. */
async function portTaken(port: number): Promise<string | undefined> {
  for (const host of ["127.0.0.1", "::1"]) {
    const error = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      const server = createServer();
      server.once("error", resolve);
      server.listen({ port, host }, () => server.close(() => resolve(undefined)));
    });
    // No IPv6 on this machine: nothing can hold the port there.
    if (error && error.code !== "EADDRNOTAVAIL" && error.code !== "EAFNOSUPPORT") return `${error.code} on ${host}`;
  }
  return undefined;
}

// ---- output, one readable line per event -------------------------------------------------------

/**
 * wrangler's output, made readable: the Worker's JSON log lines become one line each; wrangler's
 * own line for the same request or queue batch, its "Ready" line (the banner says it) and a second
 * copy of the bindings table are left out. Anything else passes as it is.
 */
function wranglerOutput(): (line: string) => void {
  let bindingsShown = false;
  let inBindings: "show" | "skip" | undefined;
  return (line) => {
    if (inBindings) {
      const shown = inBindings === "show";
      if (line.trim() === "") inBindings = undefined; // the table ends with a blank line
      return shown ? print(line) : undefined;
    }
    if (line.startsWith("Your Worker has access to the following bindings:")) {
      inBindings = bindingsShown ? "skip" : "show";
      bindingsShown = true;
      if (inBindings === "skip") return;
      return print(line);
    }
    const event = workerEvent(line);
    if (event) return print(describeEvent(event));
    if (/^\[wrangler:info\] (Ready on |[A-Z]+ \/\S* \d{3} |QUEUE \S+ \d+\/\d+)/.test(line)) return;
    if (/^⎔ (Starting local server|Connection status updated)/.test(line)) return;
    print(line);
  };
}

type WorkerEvent = Record<string, unknown> & { event: string };

function workerEvent(line: string): WorkerEvent | undefined {
  if (!line.startsWith('{"event":')) return undefined;
  try {
    return JSON.parse(line) as WorkerEvent;
  } catch {
    return undefined;
  }
}

/** `worker   ▸ push POST /push/:app → 200 accepted demo-baidu/oSim…0001 msgId=… type=text (16 ms)` */
function describeEvent(entry: WorkerEvent): string {
  const { event, method, path, status, outcome, app, openid, ms, ...rest } = entry;
  const parts = [event];
  if (method && path) parts.push(`${method} ${path}${status !== undefined ? ` → ${status}` : ""}`);
  else if (status !== undefined) rest.status = status;
  if (outcome) parts.push(String(outcome));
  if (app) parts.push(openid ? `${app}/${openid}` : String(app));
  for (const [name, value] of Object.entries(rest)) parts.push(`${name}=${typeof value === "string" ? value : JSON.stringify(value)}`);
  return `worker   ▸ ${parts.join(" ")}${ms !== undefined ? ` (${ms} ms)` : ""}`;
}

// One JSON line per request from the stand-in; shown as one readable line each.
function showStandInLine(line: string) {
  const entry = JSON.parse(line) as StandInLogLine;
  if (entry.path.startsWith("/__standin/")) return; // control calls, and our own look-ups below
  if (entry.kind === "webhook" && standIn) {
    describeWebhook(standIn.url, entry).then(print, () => print(`webhook  ▸ HTTP ${entry.status} ${entry.path}`));
    return;
  }
  const what = entry.kind ? `${entry.platform} ${entry.kind}, ` : "";
  const scripted = entry.scripted ? "scripted, " : "";
  print(`stand-in ▸ ${entry.method} ${entry.path} → ${entry.status ?? "dropped"} (${what}${scripted}${entry.ms} ms)`);
}

interface StandInLogLine {
  at: string;
  method: string;
  path: string;
  status: number | null;
  platform?: string;
  kind?: string;
  match?: string;
  scripted?: Record<string, unknown>;
  ms: number;
}

interface WebhookRecord {
  at: string;
  path: string;
  verified?: boolean | null;
  status: number | null;
  scripted: Record<string, unknown> | null;
  dropped?: boolean;
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
  // message.received carries the message; message.sent / message.failed the reply's id and state.
  const error = m.error as { code: string; platformCode?: number } | undefined;
  const kind = m.type ?? (error ? `${m.id} ${error.code}${error.platformCode ? ` (${error.platformCode})` : ""}` : m.id);
  const what = m.content ?? m.picUrl ?? m.title ?? m.event ?? "";
  const signature = record.verified === true ? "signature ok" : record.verified === false ? "BAD SIGNATURE" : "unsigned";
  // A scripted answer is the fault you asked for, not the stand-in's verdict on the delivery.
  const answer = record.dropped ? "connection dropped" : `HTTP ${entry.status}`;
  return [
    `webhook  ▸ ${body.type} ${m.app}/${m.openid} ${kind}${what ? ` ${JSON.stringify(what)}` : ""}`,
    m.msgId ? ` msgId ${m.msgId}` : "",
    ` → ${answer}${record.scripted ? " (scripted)" : ""}, ${signature}, id ${record.headers["webhook-id"] ?? "?"}`,
  ].join("");
}

function print(text: string) {
  process.stdout.write(`${text}\n`);
}
