// `npm run simulate -- …`: plays Baidu or WeChat against a running kefu-edge. Pushes are signed and
// sealed exactly as the platform does (src/protocol/seal.ts); run with --help for the options.

import { randomBytes, randomInt } from "node:crypto";
import { parseArgs } from "node:util";
import type { Fields } from "../src/protocol/codec.ts";
import { queryString, sealPush } from "../src/protocol/seal.ts";
import type { SealedPush } from "../src/protocol/seal.ts";
import { sha1Signature } from "../src/protocol/signature.ts";
import { DEMO_ENV_FILE, DEMO_TP_APP_ID, readApps, readThirdParties } from "./demo-apps.ts";
import type { PushApp, PushPlatform } from "./demo-apps.ts";
import { refusal, tpRefusal } from "./simulate-options.ts";
import { platformEvent, sealTp } from "./tp-platform.ts";

const HELP = `usage: npm run simulate -- [options]

Sends one push (or the URL handshake) to kefu-edge as the app's platform would, and prints what
went out and what came back.

  --url URL             kefu-edge base URL                       (default http://localhost:8787)
  --app NAME            app in KEFU_APPS                         (default: the first one)
  --apps-file FILE      env file with KEFU_APPS, or a JSON file of the apps (default demo/demo.env)
  --openid ID           the user (FromUserName)                  (default oSimulatedUser0000000000001)
  --type TYPE           text | image | miniprogrampage | event | any other MsgType (default text)
  --content TEXT        text: Content                            (default 你好，我想咨询一下订单)
  --pic-url URL         image: PicUrl
  --event NAME          event: Event                             (default user_enter_tempsession)
  --msg-id ID           MsgId                                    (default: a fresh 64-bit id; events have none)
  --mode MODE           plaintext | compatible | safe            (default safe)
  --format FORMAT       xml | json                               (default Baidu json, WeChat xml)
  --envelope WHERE      query | body: where msg_signature and its inputs travel; body is Baidu's
                        third-party envelope {Nonce, TimeStamp, Encrypt, MsgSignature}, so Baidu
                        and an encrypted --mode only (default query)
  --repeat N            send the very same sealed push N times, as the platform retries (default 1)
  --handshake           the URL check instead of a push: Baidu POST with signature, timestamp,
                        nonce, echoStr; WeChat GET with echostr
  -h, --help            this text

third-party platform (KEFU_THIRD_PARTY; safe-mode JSON in the body envelope, always):
  --tp NAME             play Baidu for this platform: a user's push to /tp/NAME/messages for
                        --app-id, or with --tp-event an event to /tp/NAME/events; with
                        --handshake, the URL check of both URLs
  --app-id ID           the mini program (ToUserName / appId)    (default ${DEMO_TP_APP_ID})
  --tp-event EVENT      ticket | AUTHORIZED | UPDATE_AUTHORIZED | UNAUTHORIZED | any other event;
                        the stand-in issues the ticket or the code first, so Baidu's API agrees
  --stand-in URL        the stand-in of Baidu's API              (default http://127.0.0.1:8788)

Combinations no platform sends are refused (exit 2): --content without --type text, --handshake
with message options, --envelope body with --mode plaintext or a WeChat app, …

examples:
  npm run simulate -- --app demo-wechat --content hello
  npm run simulate -- --app demo-baidu --type image --pic-url https://example.com/a.jpg --repeat 3
  npm run simulate -- --app demo-wechat --type event --event user_enter_tempsession
  npm run simulate -- --app demo-baidu --handshake
  npm run simulate -- --tp demotp --content 你好
  npm run simulate -- --tp demotp --tp-event UNAUTHORIZED`;

/** Baidu appends a platform id, not the appId, to the encrypted message (README, "Limits and choices"). */
const BAIDU_TRAILING_ID = "20073496";
const SHOWN_CHARS = 160;

const DEFAULTS = {
  openid: "oSimulatedUser0000000000001",
  type: "text",
  content: "你好，我想咨询一下订单",
  "pic-url": "https://example.com/kefu-edge/photo.jpg",
  event: "user_enter_tempsession",
  mode: "safe",
  envelope: "query",
  repeat: "1",
};

// No defaults in parseArgs: what was given decides which combinations are refused (simulate-options.ts).
let given;
try {
  ({ values: given } = parseArgs({
    options: {
      url: { type: "string", default: "http://localhost:8787" },
      app: { type: "string" },
      "apps-file": { type: "string", default: DEMO_ENV_FILE },
      openid: { type: "string" },
      type: { type: "string" },
      content: { type: "string" },
      "pic-url": { type: "string" },
      event: { type: "string" },
      "msg-id": { type: "string" },
      mode: { type: "string" },
      format: { type: "string" },
      envelope: { type: "string" },
      repeat: { type: "string" },
      handshake: { type: "boolean", default: false },
      tp: { type: "string" },
      "app-id": { type: "string" },
      "tp-event": { type: "string" },
      "stand-in": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  }));
} catch (error) {
  fail((error as Error).message);
}
const opts = { ...DEFAULTS, ...given };

if (opts.help) {
  console.log(HELP);
  process.exit(0);
}

const tpRefused = tpRefusal(given);
if (tpRefused) fail(tpRefused);
if (opts.tp) process.exit(await playPlatform(opts.tp));

const apps = loadApps(opts["apps-file"]);
const app = apps.get(opts.app ?? [...apps.keys()][0]!);
if (!app) fail(`no app "${opts.app}" in ${opts["apps-file"]}; there are: ${[...apps.keys()].join(", ")}`);
const mode = oneOf("mode", opts.mode, ["plaintext", "compatible", "safe"] as const);
const format = oneOf("format", opts.format ?? (app.platform === "baidu" ? "json" : "xml"), ["xml", "json"] as const);
const envelope = oneOf("envelope", opts.envelope, ["query", "body"] as const);
const repeat = Number(opts.repeat);
if (!Number.isInteger(repeat) || repeat < 1) fail("--repeat needs a positive integer");
const refused = refusal(given, app);
if (refused) fail(refused);

const pushUrl = `${opts.url.replace(/\/+$/, "")}/push/${app.name}`;
const failures = opts.handshake ? await handshake(app) : await push(app);
process.exit(failures === 0 ? 0 : 1);

// ---- the push ------------------------------------------------------------------------------

async function push(app: PushApp): Promise<number> {
  const fields = pushFields(app);
  const sealed = sealPush(fields, {
    token: app.token,
    encodingAesKey: app.encodingAesKey,
    trailingId: app.platform === "wechat" ? app.appId : BAIDU_TRAILING_ID,
    mode,
    format,
    envelope,
  });
  console.log(`${app.platform} push, ${mode} mode, ${format}: ${describe(fields)}`);
  let failures = 0;
  for (let attempt = 1; attempt <= repeat; attempt++) {
    const label = repeat > 1 ? `attempt ${attempt}/${repeat}` : "";
    const { ok, body } = await send(label, "POST", `${pushUrl}${queryString(sealed.query)}`, sealed);
    if (!ok || (body !== "success" && body !== "")) failures++;
  }
  return failures;
}

/** The push as the platform writes it: field names and order from the platforms' samples. */
function pushFields(app: PushApp): Fields {
  const wechat = app.platform === "wechat";
  const fields: Fields = {
    // Baidu addresses the mini program by appId, WeChat by its original id (gh_…).
    ToUserName: wechat ? `gh_${(app.appId ?? app.name).replace(/^wx/, "").slice(0, 12)}` : (app.appId ?? app.name),
    FromUserName: opts.openid,
    CreateTime: Math.floor(Date.now() / 1000),
    MsgType: opts.type,
  };
  switch (opts.type) {
    case "text":
      fields.Content = opts.content;
      break;
    case "image":
      fields.PicUrl = opts["pic-url"];
      if (wechat) fields.MediaId = randomBytes(24).toString("base64url");
      break;
    case "miniprogrampage":
      Object.assign(fields, {
        Title: "订单详情",
        AppId: app.appId ?? "",
        PagePath: "pages/order/detail?id=1024",
        ThumbUrl: "https://example.com/kefu-edge/thumb.jpg",
        ThumbMediaId: randomBytes(24).toString("base64url"),
      });
      break;
    case "event":
      Object.assign(fields, { Event: opts.event, SessionFrom: "simulate" });
      break;
  }
  // Events are de-duplicated by FromUserName + CreateTime: the platforms give them no MsgId.
  if (opts.type !== "event") fields.MsgId = opts["msg-id"] ?? freshMsgId();
  return fields;
}

/** A MsgId between 2^53 and 2^63, as real ones are: JSON.parse would round it. */
function freshMsgId(): string {
  return (BigInt(Date.now()) * 1_000_000n + BigInt(randomInt(1_000_000))).toString();
}

function describe(fields: Fields): string {
  const detail = fields.Content ?? fields.PicUrl ?? fields.Title ?? fields.Event;
  return [
    `${fields.MsgType} from ${fields.FromUserName} to ${fields.ToUserName}`,
    detail !== undefined ? ` ${JSON.stringify(detail)}` : "",
    fields.MsgId !== undefined ? `, MsgId ${fields.MsgId}` : "",
  ].join("");
}

// ---- a third-party platform -----------------------------------------------------------------

async function playPlatform(name: string): Promise<number> {
  let platforms: Map<string, PushPlatform>;
  try {
    platforms = readThirdParties(opts["apps-file"]);
  } catch (error) {
    fail(`cannot read KEFU_THIRD_PARTY from ${opts["apps-file"]}: ${(error as Error).message}`);
  }
  const platform = platforms.get(name);
  if (!platform) fail(`no platform "${name}" in ${opts["apps-file"]}'s KEFU_THIRD_PARTY; there are: ${[...platforms.keys()].join(", ") || "none"}`);
  const base = `${opts.url.replace(/\/+$/, "")}/tp/${platform.name}`;
  const appId = opts["app-id"] ?? DEMO_TP_APP_ID;
  if (opts.handshake) {
    let failures = 0;
    for (const [path, token] of [
      ["events", platform.token],
      ["messages", platform.messageToken],
    ] as const) {
      failures += await baiduHandshake(`${base}/${path}`, token);
    }
    return failures;
  }
  let fields: Fields;
  let url: string;
  let body: string;
  if (opts["tp-event"]) {
    const standInUrl = (opts["stand-in"] ?? "http://127.0.0.1:8788").replace(/\/+$/, "");
    try {
      fields = await platformEvent(standInUrl, platform, opts["tp-event"], appId);
    } catch (error) {
      fail(`the stand-in at ${standInUrl} did not answer (is npm start running?): ${(error as Error).message}`);
    }
    url = `${base}/events`;
    body = sealTp(fields, platform.token, platform.encodingAesKey);
    console.log(
      `baidu third-party platform ${platform.name}, event: ${JSON.stringify({ ...fields, authorizationCode: fields.authorizationCode ? "…" : undefined })}`,
    );
  } else {
    fields = pushFields({ name: `${platform.name}.${appId}`, platform: "baidu", token: platform.messageToken, appId });
    url = `${base}/messages`;
    body = sealTp(fields, platform.messageToken, platform.messageEncodingAesKey);
    console.log(`baidu third-party platform ${platform.name}, push for mini program ${appId}: ${describe(fields)}`);
  }
  let failures = 0;
  const repeat = repeatCount();
  for (let attempt = 1; attempt <= repeat; attempt++) {
    const label = repeat > 1 ? `attempt ${attempt}/${repeat}` : "";
    const answer = await send(label, "POST", url, { body, contentType: "application/json" });
    if (!answer.ok || answer.body !== "success") failures++;
  }
  return failures;
}

function repeatCount(): number {
  const n = Number(opts.repeat);
  if (!Number.isInteger(n) || n < 1) fail("--repeat needs a positive integer");
  return n;
}

// ---- the handshake -------------------------------------------------------------------------

async function handshake(app: PushApp): Promise<number> {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const nonce = String(randomBytes(4).readUInt32BE(0));
  const echo = randomBytes(9).toString("base64url");
  const signature = sha1Signature(app.token, timestamp, nonce);
  let result;
  if (app.platform === "wechat") {
    console.log("wechat URL check (GET with echostr)");
    result = await send("", "GET", `${pushUrl}${queryString({ signature, timestamp, nonce, echostr: echo })}`);
  } else {
    // Where Baidu puts the four is undocumented: the query by default, a form body with --envelope body.
    console.log(`baidu URL check (POST, parameters in the ${envelope === "body" ? "form body" : "query"})`);
    const params = { signature, timestamp, nonce, echoStr: echo };
    result =
      envelope === "body"
        ? await send("", "POST", pushUrl, { body: new URLSearchParams(params).toString(), contentType: "application/x-www-form-urlencoded" })
        : await send("", "POST", `${pushUrl}${queryString(params)}`);
  }
  const echoed = result.ok && result.body === echo;
  console.log(echoed ? "echo matches: the URL would be accepted" : `echo mismatch: expected ${echo}`);
  return echoed ? 0 : 1;
}

/** Baidu's URL check: POST with the four in the query; the echo must come back verbatim. */
async function baiduHandshake(url: string, token: string): Promise<number> {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const nonce = String(randomBytes(4).readUInt32BE(0));
  const echo = randomBytes(9).toString("base64url");
  console.log("baidu URL check (POST, parameters in the query)");
  const result = await send("", "POST", `${url}${queryString({ signature: sha1Signature(token, timestamp, nonce), timestamp, nonce, echoStr: echo })}`);
  const echoed = result.ok && result.body === echo;
  console.log(echoed ? "echo matches: the URL would be accepted" : `echo mismatch: expected ${echo}`);
  return echoed ? 0 : 1;
}

// ---- the wire ------------------------------------------------------------------------------

async function send(label: string, method: string, url: string, payload?: Pick<SealedPush, "body" | "contentType">) {
  console.log(`\n→ ${label ? `${label}: ` : ""}${method} ${url}`);
  if (payload) console.log(`  content-type: ${payload.contentType}\n  ${abbreviate(payload.body)}`);
  const started = performance.now();
  try {
    const response = await fetch(url, {
      method,
      headers: payload ? { "content-type": payload.contentType } : {},
      body: payload?.body,
    });
    const body = await response.text();
    const ms = (performance.now() - started).toFixed(0);
    console.log(`← ${response.status} ${abbreviate(body) || "(empty body)"}  (${ms} ms)`);
    return { ok: response.ok, body };
  } catch (error) {
    const reason = (error as Error & { cause?: Error }).cause?.message ?? String(error);
    console.log(`← no answer: ${reason}${/ECONNREFUSED/.test(reason) ? " (is kefu-edge running? npm start)" : ""}`);
    return { ok: false, body: "" };
  }
}

/** Long values (Encrypt is hundreds of characters) cut in the middle; short ones as they are. */
function abbreviate(text: string): string {
  const shortened = text.replace(/[A-Za-z0-9+/=]{80,}/g, (run) => `${run.slice(0, 24)}…(${run.length} chars)…${run.slice(-8)}`);
  return shortened.length > SHOWN_CHARS * 2 ? `${shortened.slice(0, SHOWN_CHARS)}…(${text.length} chars)` : shortened;
}

// ---- options -------------------------------------------------------------------------------

function loadApps(path: string): Map<string, PushApp> {
  try {
    return readApps(path);
  } catch (error) {
    fail(`cannot read the apps from ${path}: ${(error as Error).message}`);
  }
}

function oneOf<T extends string>(name: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) fail(`--${name} must be one of ${allowed.join(", ")}`);
  return value as T;
}

function fail(message: string): never {
  console.error(`${message}\n(npm run simulate -- --help for the options)`);
  process.exit(2);
}
