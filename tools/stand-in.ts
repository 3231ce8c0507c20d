// Local stand-in for the Baidu and WeChat customer-service APIs plus a business webhook receiver.
// Nothing on the dev machine can reach the real platforms, so this mimics their documented wire
// behaviour and adds a control API under /__standin/ for tests and for trying faults by hand
// (README, "Trying faults").
// State is kept per identity (client_id / appid / openid / webhook path) so parallel tests that use
// different identities never see each other's tokens, scripts or counters.

import { createServer } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { createTpStandIn } from "./stand-in-tp.ts";

export type StandInOptions = {
  port?: number;
  host?: string;
  /** Lifetime of issued tokens; defaults to each platform's own (Baidu 86400, WeChat 7200). */
  tokenTtlSeconds?: number;
  /** How long a WeChat token stays usable after a newer one was issued (real platform: 300). */
  wechatGraceSeconds?: number;
  /** When set, webhook deliveries must carry a valid Standard Webhooks signature. */
  webhookSecret?: string;
  log?: (line: string) => void;
};

export type StandIn = { url: string; port: number; close(): Promise<void> };

type Platform = "baidu" | "wechat" | "webhook";
/** tp: the third-party platform's other calls (authorization page, app/info, retrieve). */
type Kind = "token" | "send" | "webhook" | "tp";

type ScriptedResponse = { body?: unknown; status?: number; delayMs?: number; drop?: boolean };

/**
 * What the stand-in answers; `body: undefined` means no body (204). A string body is sent verbatim.
 * `drop`: the call took effect, then the connection is dropped before the answer is written.
 */
export type Answer = { status: number; body?: unknown; headers?: Record<string, string>; drop?: boolean };

export type RequestRecord = {
  at: string;
  platform: Platform;
  kind: Kind;
  /** The openid, client_id/appid or webhook path this request is filed under. */
  match: string;
  /** For sends: the client_id/appid the access token belongs to, when the token is known. */
  identity?: string;
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  body: unknown;
  status: number | null;
  response: unknown;
  scripted: ScriptedResponse | null;
  dropped?: boolean;
  /** The client went away before the answer was written (e.g. it timed out during a delay). */
  aborted?: boolean;
  /** Webhooks only: signature check result, null when no secret is configured. */
  verified?: boolean | null;
};

type IssuedToken = {
  value: string;
  platform: "baidu" | "wechat";
  identity: string;
  source: "baidu-oauth" | "wechat-token" | "wechat-stable";
  expiresAt: number;
  /** WeChat: a newer token was issued; this one stops working at this instant (after the grace). */
  supersededAt?: number;
};

export type IncomingCall = {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  rawBody: Buffer;
  body: unknown;
};

export type Endpoint = {
  platform: Platform;
  kind: Kind;
  parseBody(raw: Buffer, contentType: string): unknown;
  matchOf(call: IncomingCall): string;
  answer(call: IncomingCall, record: RequestRecord): Answer;
};

const MAX_BODY_BYTES = 1024 * 1024;
const MAX_RECORDS = 20_000; // the log is for tests; cap it so a long CLI session cannot grow forever
const MAX_DELAY_MS = 10 * 60 * 1000;
const DEFAULT_TTL = { baidu: 86_400, wechat: 7_200 } as const;

class BodyTooLarge extends Error {}

export async function startStandIn(options: StandInOptions = {}): Promise<StandIn> {
  const host = options.host ?? "127.0.0.1";
  const wechatGraceMs = (options.wechatGraceSeconds ?? 300) * 1000;
  const ttlSeconds = (platform: "baidu" | "wechat") => options.tokenTtlSeconds ?? DEFAULT_TTL[platform];
  const log = options.log ?? (() => {});

  // ---- state -------------------------------------------------------------------------------
  let registeredSecrets = new Map<string, string>(); // `${platform}:${id}` → secret seen first
  let tokens = new Map<string, IssuedToken>();
  let scripts = new Map<string, { kind?: Kind; response: ScriptedResponse }[]>(); // `${platform}:${match}`
  let records: RequestRecord[] = [];
  let counters = new Map<string, { tokenFetches: number; sends: number; webhooks: number }>();
  const pendingTimers = new Set<NodeJS.Timeout>();

  const now = () => Date.now();
  const key = (platform: string, id: string) => `${platform}:${id}`;

  function countersFor(match: string) {
    const c = counters.get(match) ?? { tokenFetches: 0, sends: 0, webhooks: 0 };
    counters.set(match, c);
    return c;
  }

  /** Any non-empty pair registers on first use; `wrong`, or a different secret later, is rejected. */
  function acceptCredentials(platform: "baidu" | "wechat", id: string, secret: string): boolean {
    if (secret === "wrong") return false;
    const known = registeredSecrets.get(key(platform, id));
    if (known !== undefined) return known === secret;
    registeredSecrets.set(key(platform, id), secret);
    return true;
  }

  function issueToken(platform: "baidu" | "wechat", identity: string, source: IssuedToken["source"]): IssuedToken {
    const value =
      platform === "baidu"
        ? `24.${randomBytes(16).toString("hex")}.${ttlSeconds(platform)}.${Math.floor(now() / 1000)}.standin`
        : randomBytes(48).toString("base64url");
    const token: IssuedToken = { value, platform, identity, source, expiresAt: now() + ttlSeconds(platform) * 1000 };
    tokens.set(value, token);
    return token;
  }

  /** WeChat: a newer token of the same kind retires the older ones after the grace period. */
  function supersedeOlderTokens(identity: string, source: IssuedToken["source"], newest: string) {
    for (const t of tokens.values()) {
      if (t.platform === "wechat" && t.identity === identity && t.source === source && t.value !== newest) {
        t.supersededAt = Math.min(t.supersededAt ?? Infinity, now() + wechatGraceMs);
      }
    }
  }

  type TokenState = { state: "ok" | "unknown" | "expired" | "superseded"; token?: IssuedToken };
  function checkToken(platform: "baidu" | "wechat", value: string | undefined): TokenState {
    const token = value ? tokens.get(value) : undefined;
    if (!token || token.platform !== platform) return { state: "unknown" };
    if (now() >= token.expiresAt) return { state: "expired", token };
    if (token.supersededAt !== undefined && now() >= token.supersededAt) return { state: "superseded", token };
    return { state: "ok", token };
  }

  // ---- Baidu ---------------------------------------------------------------------------------
  /** custom/send's form checks (sendbytp takes the same form). */
  function baiduSendForm(body: unknown): Answer | undefined {
    if (!isPlainObject(body)) return ok({ errno: 3001, msg: "param error: body must be application/x-www-form-urlencoded" });
    const f = (name: string) => stringField(body, name);
    const userType = f("user_type");
    if (userType !== "1" && userType !== "2") return ok({ errno: 3001, msg: "param error: user_type" });
    const openId = f("open_id");
    if (!openId) return ok({ errno: 3001, msg: "param error: open_id" });
    const msgType = f("msg_type");
    if (msgType === "text" && !f("content")) return ok({ errno: 3001, msg: "param error: content" });
    else if (msgType === "image" && !f("pic_url")) return ok({ errno: 3001, msg: "param error: pic_url" });
    else if (msgType !== "text" && msgType !== "image") return ok({ errno: 3001, msg: "param error: msg_type" });
    if (openId.startsWith("invalid")) return ok({ errno: 30022, msg: "invalid openid" });
    return undefined;
  }

  // The third-party platform API (tools/stand-in-tp.ts).
  const thirdParty = createTpStandIn({ now, sendForm: baiduSendForm });

  const baiduToken: Endpoint = {
    platform: "baidu",
    kind: "token",
    parseBody: parseForm,
    matchOf: (call) => baiduTokenParams(call).client_id ?? "",
    answer(call) {
      const p = baiduTokenParams(call);
      if (p.grant_type !== "client_credentials") {
        return { status: 400, body: { error: "unsupported_grant_type", error_description: "The authorization grant type is not supported" } };
      }
      if (!p.client_id || !p.client_secret) {
        return { status: 400, body: { error: "invalid_request", error_description: "client_id and client_secret are required" } };
      }
      if (!acceptCredentials("baidu", p.client_id, p.client_secret)) {
        return { status: 401, body: { error: "invalid_client", error_description: "unknown client id or secret" } };
      }
      // Baidu: a new token leaves older unexpired ones working.
      const token = issueToken("baidu", p.client_id, "baidu-oauth");
      return {
        status: 200,
        body: {
          access_token: token.value,
          expires_in: ttlSeconds("baidu"),
          refresh_token: `25.${randomBytes(16).toString("hex")}.standin`,
          scope: p.scope || "smartapp_snsapi_base",
          session_key: randomBytes(16).toString("hex"),
          session_secret: randomBytes(16).toString("hex"),
        },
      };
    },
  };

  const baiduSend: Endpoint = {
    platform: "baidu",
    kind: "send",
    parseBody: parseForm,
    matchOf: (call) => stringField(call.body, "open_id") ?? "",
    answer(call, record) {
      const tokenState = checkToken("baidu", call.query.access_token);
      if (tokenState.token) record.identity = tokenState.token.identity;
      if (tokenState.state === "unknown") return ok({ error_code: 110, error_msg: "Access token invalid or no longer valid" });
      if (tokenState.state !== "ok") return ok({ error_code: 111, error_msg: "Access token expired" });
      return baiduSendForm(call.body) ?? ok({ errno: 0, msg: "success", data: {} });
    },
  };

  // ---- WeChat --------------------------------------------------------------------------------
  function wechatCredentialError(grantType: unknown, appid: unknown, secret: unknown): Answer | undefined {
    if (grantType !== "client_credential") return ok({ errcode: 40002, errmsg: "invalid grant_type" });
    if (typeof appid !== "string" || !appid) return ok({ errcode: 41002, errmsg: "appid missing" });
    if (typeof secret !== "string" || !secret) return ok({ errcode: 41004, errmsg: "appsecret missing" });
    if (!acceptCredentials("wechat", appid, secret)) return ok({ errcode: 40125, errmsg: "invalid appsecret" });
    return undefined;
  }

  const wechatToken: Endpoint = {
    platform: "wechat",
    kind: "token",
    parseBody: () => null,
    matchOf: (call) => call.query.appid ?? "",
    answer(call) {
      const { grant_type, appid, secret } = call.query;
      const error = wechatCredentialError(grant_type, appid, secret);
      if (error) return error;
      const token = issueToken("wechat", appid!, "wechat-token");
      supersedeOlderTokens(appid!, "wechat-token", token.value);
      return ok({ access_token: token.value, expires_in: ttlSeconds("wechat") });
    },
  };

  const wechatStableToken: Endpoint = {
    platform: "wechat",
    kind: "token",
    parseBody: parseJson,
    matchOf: (call) => stringField(call.body, "appid") ?? "",
    answer(call) {
      if (!isPlainObject(call.body)) return ok({ errcode: 44002, errmsg: "empty post data" });
      const { grant_type, appid, secret, force_refresh } = call.body;
      const error = wechatCredentialError(grant_type, appid, secret);
      if (error) return error;
      const id = appid as string;
      // Stable tokens are isolated from /cgi-bin/token ones: same token back until it expires.
      let current: IssuedToken | undefined;
      for (const t of tokens.values()) {
        if (t.identity === id && t.source === "wechat-stable" && checkToken("wechat", t.value).state === "ok") current = t;
      }
      if (!current || force_refresh === true) {
        current = issueToken("wechat", id, "wechat-stable");
        supersedeOlderTokens(id, "wechat-stable", current.value);
      }
      return ok({ access_token: current.value, expires_in: Math.max(0, Math.floor((current.expiresAt - now()) / 1000)) });
    },
  };

  const wechatSend: Endpoint = {
    platform: "wechat",
    kind: "send",
    parseBody: parseJson,
    matchOf: (call) => stringField(call.body, "touser") ?? "",
    answer(call, record) {
      const tokenState = checkToken("wechat", call.query.access_token);
      if (tokenState.token) record.identity = tokenState.token.identity;
      if (tokenState.state === "unknown" || tokenState.state === "superseded") {
        return ok({ errcode: 40001, errmsg: "invalid credential, access_token is invalid or not latest" });
      }
      if (tokenState.state === "expired") return ok({ errcode: 42001, errmsg: "access_token expired" });

      const body = call.body;
      if (!isPlainObject(body)) return ok({ errcode: 44002, errmsg: "empty post data" });
      const touser = stringField(body, "touser");
      if (!touser || touser.startsWith("invalid")) return ok({ errcode: 40003, errmsg: "invalid openid" });
      const requiredByType: Record<string, string[]> = {
        text: ["content"],
        image: ["media_id"],
        link: ["title", "url", "thumb_url"],
        miniprogrampage: ["title", "pagepath", "thumb_media_id"],
      };
      const msgtype = stringField(body, "msgtype") ?? "";
      const required = requiredByType[msgtype];
      const payload = body[msgtype];
      if (!required || !isPlainObject(payload) || !required.every((f) => stringField(payload, f))) {
        return ok({ errcode: 40008, errmsg: "invalid message type" });
      }
      return ok({ errcode: 0, errmsg: "ok" });
    },
  };

  // ---- business webhook receiver ------------------------------------------------------------------
  const webhook: Endpoint = {
    platform: "webhook",
    kind: "webhook",
    parseBody: parseJson,
    // kefu-edge's payload is {type, timestamp, data: message}: file it under the user's openid, so
    // parallel tests script and count their own deliveries; anything else under its path.
    matchOf: (call) => {
      const data = isPlainObject(call.body) ? call.body.data : undefined;
      return (isPlainObject(data) && stringField(data, "openid")) || call.path;
    },
    answer(_call, record) {
      return record.verified === false ? { status: 401, body: { error: "webhook signature mismatch" } } : { status: 204 };
    },
  };

  /** Checked for every delivery, scripted ones too: a scripted failure is still signed (or not). */
  function verifyWebhook(call: IncomingCall, record: RequestRecord) {
    record.verified = options.webhookSecret === undefined ? null : verifyStandardWebhook(options.webhookSecret, call.headers, call.rawBody);
  }

  function findEndpoint(method: string, path: string): Endpoint | undefined {
    const tp = thirdParty.endpoint(method, path);
    if (tp) return tp;
    if (path === "/oauth/2.0/token" && (method === "GET" || method === "POST")) return baiduToken;
    if (method === "GET" && path === "/cgi-bin/token") return wechatToken;
    if (method !== "POST") return undefined;
    if (path === "/rest/2.0/smartapp/message/custom/send") return baiduSend;
    if (path === "/cgi-bin/stable_token") return wechatStableToken;
    if (path === "/cgi-bin/message/custom/send") return wechatSend;
    if (path === "/webhook" || path.startsWith("/webhook/")) return webhook;
    return undefined;
  }

  // ---- control API -----------------------------------------------------------------------------
  function control(method: string, path: string, query: Record<string, string>, raw: Buffer): Answer | undefined {
    const route = `${method} ${path.replace(/\/+$/, "")}`;
    const parsed = parseJson(raw);
    const input = isPlainObject(parsed) ? parsed : undefined;
    const notAnObject = badRequest("expected a JSON object body");
    switch (route) {
      case "GET /__standin/health":
        return ok({ ok: true });
      case "POST /__standin/reset":
        registeredSecrets = new Map();
        tokens = new Map();
        scripts = new Map();
        records = [];
        counters = new Map();
        thirdParty.reset();
        return ok({ reset: true });
      case "POST /__standin/script": {
        if (!input) return notAnObject;
        const { platform, match, responses, kind } = input;
        if (platform !== "baidu" && platform !== "wechat" && platform !== "webhook") return badRequest("platform must be baidu, wechat or webhook");
        if (typeof match !== "string") return badRequest("match must be a string");
        if (kind !== undefined && kind !== "token" && kind !== "send" && kind !== "webhook" && kind !== "tp")
          return badRequest("kind must be token, send, webhook or tp");
        if (!Array.isArray(responses) || responses.length === 0) return badRequest("responses must be a non-empty array");
        const parsed: ScriptedResponse[] = [];
        for (const [i, r] of responses.entries()) {
          const result = validateScriptedResponse(r);
          if (typeof result === "string") return badRequest(`responses[${i}]: ${result}`);
          parsed.push(result);
        }
        const queue = scripts.get(key(platform, match)) ?? [];
        for (const response of parsed) queue.push({ kind: kind as Kind | undefined, response });
        scripts.set(key(platform, match), queue);
        return ok({ queued: queue.length });
      }
      case "POST /__standin/expire-tokens": {
        if (!input) return notAnObject;
        if (typeof input.match !== "string" || !input.match) return badRequest("match must be a client_id or appid");
        let expired = 0;
        for (const t of tokens.values()) {
          if (t.identity === input.match && (input.platform === undefined || input.platform === t.platform)) {
            t.expiresAt = Math.min(t.expiresAt, now() - 1);
            expired++;
          }
        }
        return ok({ expired });
      }
      case "GET /__standin/requests": {
        const fields = ["platform", "match", "kind", "identity"] as const;
        const selected = records.filter((r) => fields.every((f) => query[f] === undefined || r[f] === query[f]));
        return ok({ requests: selected });
      }
      case "GET /__standin/counters":
        if (!query.match) return badRequest("match query parameter is required");
        return ok({ ...countersFor(query.match) });
    }
    return thirdParty.control(route, input, query);
  }

  function takeScripted(platform: Platform, kind: Kind, match: string): ScriptedResponse | null {
    const queue = scripts.get(key(platform, match));
    const index = queue?.findIndex((entry) => entry.kind === undefined || entry.kind === kind) ?? -1;
    if (!queue || index < 0) return null;
    const [entry] = queue.splice(index, 1);
    if (queue.length === 0) scripts.delete(key(platform, match));
    return entry?.response ?? null;
  }

  // ---- request handling ----------------------------------------------------------------------------
  async function handle(req: IncomingMessage, res: ServerResponse) {
    const started = now();
    const method = req.method ?? "GET";
    const url = new URL(req.url ?? "/", "http://stand-in.invalid");
    const path = url.pathname;
    const query = Object.fromEntries(url.searchParams);
    let record: RequestRecord | undefined;
    res.on("close", () => {
      if (record && !res.writableFinished && !record.dropped) record.aborted = true;
      log(
        JSON.stringify({
          at: new Date(started).toISOString(),
          method,
          path,
          status: record?.dropped ? null : res.statusCode,
          ...(record && { platform: record.platform, kind: record.kind, match: record.match }),
          ...(record?.scripted && { scripted: record.scripted }),
          ...(record?.dropped && { dropped: true }),
          ...(record?.aborted && { aborted: true }),
          ms: now() - started,
        }),
      );
    });

    let raw: Buffer;
    try {
      raw = await readBody(req);
    } catch (error) {
      if (error instanceof BodyTooLarge) return send(res, { status: 413, body: { error: `request body over ${MAX_BODY_BYTES} bytes` } }, true);
      throw error;
    }

    if (path.startsWith("/__standin/")) {
      return send(res, control(method, path, query, raw) ?? notFound(method, path));
    }
    const endpoint = findEndpoint(method, path);
    if (!endpoint) return send(res, notFound(method, path));

    const contentType = headerValue(req, "content-type");
    const call: IncomingCall = {
      method,
      path,
      query,
      rawBody: raw,
      headers: relevantHeaders(req, endpoint.platform),
      body: endpoint.parseBody(raw, contentType),
    };
    const match = endpoint.matchOf(call);
    const scripted = takeScripted(endpoint.platform, endpoint.kind, match);
    record = {
      at: new Date(started).toISOString(),
      platform: endpoint.platform,
      kind: endpoint.kind,
      match,
      method,
      path,
      query,
      headers: call.headers,
      body: call.body,
      status: null,
      response: null,
      scripted,
    };
    if (endpoint === webhook) verifyWebhook(call, record);
    records.push(record);
    if (records.length > MAX_RECORDS) records.splice(0, records.length - MAX_RECORDS);
    const c = countersFor(match);
    if (endpoint.kind === "token") c.tokenFetches++;
    else if (endpoint.kind === "send") c.sends++;
    else if (endpoint.kind === "webhook") c.webhooks++;

    if (scripted?.delayMs) await sleep(scripted.delayMs);
    if (scripted?.drop) {
      record.dropped = true;
      res.socket?.destroy();
      res.destroy();
      return;
    }
    const answer: Answer =
      scripted && (scripted.status !== undefined || scripted.body !== undefined)
        ? { status: scripted.status ?? 200, body: scripted.body ?? { error: `scripted HTTP ${scripted.status}` } }
        : endpoint.answer(call, record);
    record.status = answer.status;
    record.response = answer.body ?? null;
    if (answer.drop) {
      record.dropped = true;
      res.socket?.destroy();
      res.destroy();
      return;
    }
    send(res, answer);
  }

  function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        pendingTimers.delete(timer);
        resolve();
      }, ms);
      pendingTimers.add(timer);
    });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent && !res.destroyed) send(res, { status: 500, body: { error: `stand-in failure: ${String(error)}` } });
      else res.destroy();
    });
  });
  // Malformed HTTP must not take the server down: answer 400 when possible and drop the socket.
  server.on("clientError", (_error, socket) => {
    if (socket.writable)
      socket.end('HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{"error":"malformed HTTP request"}');
    else socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(":") ? `[${host}]` : host;

  return {
    url: `http://${urlHost}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of pendingTimers) clearTimeout(timer);
        pendingTimers.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

// ---- helpers (stateless) ---------------------------------------------------------------------------

function ok(body: unknown): Answer {
  return { status: 200, body };
}

function badRequest(error: string): Answer {
  return { status: 400, body: { error } };
}

function notFound(method: string, path: string): Answer {
  return { status: 404, body: { error: `no such endpoint in the stand-in: ${method} ${path}` } };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function stringField(value: unknown, name: string): string | undefined {
  if (!isPlainObject(value)) return undefined;
  const field = value[name];
  return typeof field === "string" && field !== "" ? field : undefined;
}

function send(res: ServerResponse, answer: Answer, closeConnection = false) {
  if (res.destroyed || res.writableEnded) return;
  const headers: Record<string, string> = { ...answer.headers };
  if (closeConnection) headers.connection = "close";
  if (answer.body === undefined || answer.status === 204 || answer.status === 304) {
    res.writeHead(answer.status, headers).end();
    return;
  }
  // A scripted string body goes out verbatim so tests can imitate non-JSON gateway pages.
  const isText = typeof answer.body === "string";
  headers["content-type"] = isText ? "text/plain; charset=utf-8" : "application/json";
  const payload = Buffer.from(isText ? (answer.body as string) : JSON.stringify(answer.body), "utf8");
  headers["content-length"] = String(payload.length);
  res.writeHead(answer.status, headers).end(payload);
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"]);
    if (declared > MAX_BODY_BYTES) {
      req.resume(); // keep draining so the client can read our 413 instead of a reset
      reject(new BodyTooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on("data", (chunk: Buffer) => {
      if (tooLarge) return;
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        tooLarge = true;
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function headerValue(req: IncomingMessage, name: string): string {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(", ") : (value ?? "");
}

/** Only the headers a test might assert on: content type, and for webhooks the signature set and x-*. */
function relevantHeaders(req: IncomingMessage, platform: Platform): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const name of Object.keys(req.headers)) {
    const wanted = name === "content-type" || (platform === "webhook" && (name.startsWith("webhook-") || name.startsWith("x-") || name === "user-agent"));
    if (wanted) picked[name] = headerValue(req, name);
  }
  return picked;
}

/** Form bodies only when declared as such (real Baidu reads $_POST-style fields); otherwise raw text. */
function parseForm(raw: Buffer, contentType: string): unknown {
  if (raw.length === 0) return null;
  const text = raw.toString("utf8");
  if (!contentType.toLowerCase().includes("application/x-www-form-urlencoded")) return text;
  return Object.fromEntries(new URLSearchParams(text));
}

/** Parsed JSON when the body is JSON, the raw text otherwise, null when empty. */
function parseJson(raw: Buffer): unknown {
  if (raw.length === 0) return null;
  const text = raw.toString("utf8");
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function baiduTokenParams(call: IncomingCall): Record<string, string | undefined> {
  // Baidu accepts the OAuth parameters in the query or, on POST, in a form body.
  return { ...(isPlainObject(call.body) ? (call.body as Record<string, string>) : {}), ...call.query };
}

function validateScriptedResponse(value: unknown): ScriptedResponse | string {
  if (!isPlainObject(value)) return "must be an object";
  const unknownKeys = Object.keys(value).filter((k) => !["body", "status", "delayMs", "drop"].includes(k));
  if (unknownKeys.length) return `unknown field(s) ${unknownKeys.join(", ")}: use body, status, delayMs, drop`;
  const { body, status, delayMs, drop } = value;
  if (status !== undefined && !(Number.isInteger(status) && (status as number) >= 200 && (status as number) <= 599))
    return "status must be an integer 200..599";
  if (delayMs !== undefined && !(typeof delayMs === "number" && delayMs >= 0 && delayMs <= MAX_DELAY_MS)) return `delayMs must be 0..${MAX_DELAY_MS}`;
  if (drop !== undefined && typeof drop !== "boolean") return "drop must be a boolean";
  if (body === undefined && status === undefined && delayMs === undefined && drop === undefined) return "needs one of body, status, delayMs, drop";
  return { body, status: status as number | undefined, delayMs: delayMs as number | undefined, drop: drop as boolean | undefined };
}

/**
 * Standard Webhooks, as its libraries verify: the secret is `whsec_` + base64 of the key (no other
 * form), HMAC-SHA256 over `${id}.${timestamp}.${body}`, header of space-separated `v1,<b64>`
 * entries, and a timestamp within 5 minutes of now.
 */
export function verifyStandardWebhook(secret: string, headers: Record<string, string>, rawBody: Buffer, nowSeconds = Date.now() / 1000): boolean {
  const id = headers["webhook-id"];
  const timestamp = headers["webhook-timestamp"];
  const signatures = headers["webhook-signature"];
  if (!id || !timestamp || !signatures) return false;
  if (!/^\d+$/.test(timestamp) || Math.abs(nowSeconds - Number(timestamp)) > WEBHOOK_TOLERANCE_SECONDS) return false;
  const expected = signStandardWebhook(secret, id, timestamp, rawBody);
  return signatures.split(" ").some((entry) => {
    const [version, value] = entry.split(",", 2);
    if (version !== "v1" || !value) return false;
    const given = Buffer.from(value, "base64");
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}

const WEBHOOK_TOLERANCE_SECONDS = 5 * 60;

export function signStandardWebhook(secret: string, id: string, timestamp: string, rawBody: Buffer | string): Buffer {
  if (!secret.startsWith("whsec_")) throw new Error("a Standard Webhooks secret is whsec_ followed by base64");
  const keyBytes = Buffer.from(secret.slice("whsec_".length), "base64");
  return createHmac("sha256", keyBytes).update(`${id}.${timestamp}.`).update(rawBody).digest();
}
