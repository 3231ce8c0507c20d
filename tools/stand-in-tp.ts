// The stand-in's Baidu third-party platform (第三方平台) API, as it behaves (docs/protocol.md §8):
// tickets, a call-limited tp/token, pre-auth codes, an authorization page that redirects with a
// code, codes that expire and work once, refresh tokens that work once (a reused one answers
// expired_token with HTTP 400), app/info, retrieve/authorizationcode and sendbytp with the
// authorizer's token. Mounted by tools/stand-in.ts; state is kept per platform (client_id) and per
// mini program (appId), so parallel tests never share one.
//
// Control API (under /__standin/tp/):
//   POST ticket      {clientId, tokenLimit?}          → {ticket}: the ticket Baidu would push next
//   POST authorize   {clientId, appId, scopes?}       → {authorizationCode, expiresIn: 60}: a merchant
//                                                        authorizes; the code an AUTHORIZED event carries
//   POST unauthorize {clientId, appId}                → the merchant withdraws: tokens die, retrieve → 50032
//   POST fault       {appId, fault: "drop-refresh-answer"} → the next refresh burns the token, then drops the answer
//   POST expire      {appId?, clientId?}              → the mini program's access tokens (or the platform's token) expire now
//   GET  stats?appId=&clientId=                       → counters (tokenFetches, exchanges, refreshes, reusedRefreshTokens, …)

import { randomBytes } from "node:crypto";
import type { Answer, Endpoint, IncomingCall } from "./stand-in.ts";

const PLATFORM_TOKEN_TTL = 2_592_000;
const PRE_AUTH_CODE_TTL = 1200;
const EVENT_CODE_TTL = 60;
const REDIRECT_CODE_TTL = 3600;
const RETRIEVED_CODE_TTL = 18_000;
const ACCESS_TOKEN_TTL = 3600;
/** tp/token is call-limited; Baidu does not publish the number. */
const DEFAULT_TOKEN_LIMIT = 100;
const KEFU_SCOPE = "客服消息";

type Deps = {
  now(): number;
  /** custom/send's form checks, shared with custom/send: an Answer when the form is wrong. */
  sendForm(body: unknown): Answer | undefined;
};

export type TpStandIn = {
  endpoint(method: string, path: string): Endpoint | undefined;
  control(route: string, input: Record<string, unknown> | undefined, query: Record<string, string>): Answer | undefined;
  reset(): void;
};

type Code = { clientId: string; appId: string; expiresAt: number; used: boolean };
type Grant = { clientId: string; appId: string; active: boolean; scopes: string[] };
/** What the stand-in counted for one client_id or appId (GET /__standin/tp/stats). */
export type Stats = {
  tokenFetches: number;
  preAuthCodes: number;
  exchanges: number;
  refreshes: number;
  reusedRefreshTokens: number;
  retrieves: number;
  appInfos: number;
  sends: number;
};

export function createTpStandIn(deps: Deps): TpStandIn {
  let platforms = new Map<string, { tickets: string[]; tokenLimit: number }>();
  let platformTokens = new Map<string, { clientId: string; expiresAt: number }>();
  let preAuthCodes = new Map<string, { clientId: string; expiresAt: number; used: boolean }>();
  let grants = new Map<string, Grant>(); // `${clientId}/${appId}`
  let codes = new Map<string, Code>();
  let accessTokens = new Map<string, { clientId: string; appId: string; expiresAt: number }>();
  let refreshTokens = new Map<string, { clientId: string; appId: string; used: boolean }>();
  let faults = new Map<string, string[]>(); // appId → pending faults
  let stats = new Map<string, Stats>(); // clientId or appId

  const now = deps.now;
  const hex = () => randomBytes(16).toString("hex");
  const statsOf = (id: string) => {
    const s = stats.get(id) ?? { tokenFetches: 0, preAuthCodes: 0, exchanges: 0, refreshes: 0, reusedRefreshTokens: 0, retrieves: 0, appInfos: 0, sends: 0 };
    stats.set(id, s);
    return s;
  };
  const platformOf = (clientId: string) => {
    const p = platforms.get(clientId) ?? { tickets: [], tokenLimit: DEFAULT_TOKEN_LIMIT };
    platforms.set(clientId, p);
    return p;
  };
  const grantOf = (clientId: string, appId: string) => grants.get(`${clientId}/${appId}`);
  const ok = (body: unknown): Answer => ({ status: 200, body });
  const oauthError = (error: string, description: string): Answer => ({ status: 400, body: { error, error_description: description } });

  function issueCode(clientId: string, appId: string, ttl: number): string {
    const code = `code.${hex()}`;
    codes.set(code, { clientId, appId, expiresAt: now() + ttl * 1000, used: false });
    return code;
  }

  function issuePair(clientId: string, appId: string) {
    const access = `45.${hex()}.standin`;
    const refresh = `46.${hex()}.standin`;
    accessTokens.set(access, { clientId, appId, expiresAt: now() + ACCESS_TOKEN_TTL * 1000 });
    refreshTokens.set(refresh, { clientId, appId, used: false });
    return { access_token: access, refresh_token: refresh, expires_in: ACCESS_TOKEN_TTL };
  }

  /** The gateway's check of a platform token (42.…): 110 unknown, 111 expired. */
  function platformTokenOf(call: IncomingCall): { clientId: string } | Answer {
    const token = platformTokens.get(call.query.access_token ?? "");
    if (!token) return ok({ error_code: 110, error_msg: "Access token invalid or no longer valid" });
    if (now() >= token.expiresAt) return ok({ error_code: 111, error_msg: "Access token expired" });
    return token;
  }

  /** The gateway's check of an authorizer token (45.…); a withdrawn authorization's tokens are gone. */
  function accessTokenOf(call: IncomingCall): { clientId: string; appId: string } | Answer {
    const token = accessTokens.get(call.query.access_token ?? "");
    if (!token || !grantOf(token.clientId, token.appId)?.active) return ok({ error_code: 110, error_msg: "Access token invalid or no longer valid" });
    if (now() >= token.expiresAt) return ok({ error_code: 111, error_msg: "Access token expired" });
    return token;
  }

  const isAnswer = (value: object): value is Answer => "status" in value;

  const parseForm = (raw: Buffer, contentType: string): unknown =>
    raw.length === 0
      ? null
      : contentType.includes("application/x-www-form-urlencoded")
        ? Object.fromEntries(new URLSearchParams(raw.toString("utf8")))
        : raw.toString("utf8");
  const noBody = () => null;
  const formField = (call: IncomingCall, name: string) => {
    const body = call.body as Record<string, unknown> | null;
    const value = body && typeof body === "object" ? body[name] : undefined;
    return typeof value === "string" ? value : undefined;
  };

  const platformToken: Endpoint = {
    platform: "baidu",
    kind: "token",
    parseBody: noBody,
    matchOf: (call) => call.query.client_id ?? "",
    answer(call) {
      const clientId = call.query.client_id ?? "";
      const platform = platforms.get(clientId);
      const s = statsOf(clientId);
      if (platform && s.tokenFetches >= platform.tokenLimit) return ok({ error_code: 17, error_msg: "Open api daily request limit reached" });
      s.tokenFetches++;
      // The error Baidu gives for a wrong ticket is not documented: an errno of our choosing.
      if (!platform?.tickets.includes(call.query.ticket ?? "")) return ok({ errno: 40001, msg: "invalid ticket", data: {} });
      const token = `42.${hex()}.standin`;
      platformTokens.set(token, { clientId, expiresAt: now() + PLATFORM_TOKEN_TTL * 1000 });
      return ok({ errno: 0, msg: "success", data: { access_token: token, expires_in: PLATFORM_TOKEN_TTL, scope: "smartapp_tp" } });
    },
  };

  const preAuthCode: Endpoint = {
    platform: "baidu",
    kind: "token",
    parseBody: noBody,
    matchOf: (call) => platformTokens.get(call.query.access_token ?? "")?.clientId ?? "",
    answer(call) {
      const token = platformTokenOf(call);
      if (isAnswer(token)) return token;
      statsOf(token.clientId).preAuthCodes++;
      const code = `preauth.${hex()}`;
      preAuthCodes.set(code, { clientId: token.clientId, expiresAt: now() + PRE_AUTH_CODE_TTL * 1000, used: false });
      return ok({ errno: 0, msg: "success", data: { pre_auth_code: code, expires_in: PRE_AUTH_CODE_TTL } });
    },
  };

  /** The merchant's side: the page authorizes (the stand-in takes the mini program as app_id) and redirects with a code. */
  const authorizationPage: Endpoint = {
    platform: "baidu",
    kind: "tp",
    parseBody: noBody,
    matchOf: (call) => call.query.client_id ?? "",
    answer(call) {
      const { client_id: clientId = "", pre_auth_code: preAuth = "", redirect_uri: redirectUri = "" } = call.query;
      const pre = preAuthCodes.get(preAuth);
      if (!pre || pre.used || pre.clientId !== clientId || now() >= pre.expiresAt)
        return { status: 400, body: "授权链接已失效 (pre_auth_code invalid, used or expired)" };
      if (!URL.canParse(redirectUri)) return { status: 400, body: "redirect_uri is not a URL" };
      pre.used = true;
      const appId = call.query.app_id || String(30_000_000 + Math.floor(Math.random() * 9_999_999));
      const scopes = call.query.scopes ? call.query.scopes.split(",") : ["基础信息", KEFU_SCOPE];
      grants.set(`${clientId}/${appId}`, { clientId, appId, active: true, scopes });
      const location = new URL(redirectUri);
      location.searchParams.set("authorization_code", issueCode(clientId, appId, REDIRECT_CODE_TTL));
      location.searchParams.set("expires_in", String(REDIRECT_CODE_TTL));
      return { status: 302, headers: { location: location.toString() }, body: `redirecting to ${location}` };
    },
  };

  const oauthToken: Endpoint = {
    platform: "baidu",
    kind: "token",
    parseBody: noBody,
    matchOf: (call) => codes.get(call.query.code ?? "")?.appId ?? refreshTokens.get(call.query.refresh_token ?? "")?.appId ?? "",
    answer(call) {
      const token = platformTokenOf(call);
      if (isAnswer(token)) return token;
      const grantType = call.query.grant_type;
      if (grantType === "app_to_tp_authorization_code") {
        const code = codes.get(call.query.code ?? "");
        if (code) statsOf(code.appId).exchanges++;
        if (!code || code.used || code.clientId !== token.clientId || now() >= code.expiresAt || !grantOf(code.clientId, code.appId)?.active) {
          return oauthError("invalid_grant", "authorization code is invalid, expired or used");
        }
        code.used = true;
        return ok(issuePair(code.clientId, code.appId));
      }
      if (grantType === "app_to_tp_refresh_token") {
        const refresh = refreshTokens.get(call.query.refresh_token ?? "");
        if (refresh) statsOf(refresh.appId).refreshes++;
        if (!refresh || refresh.clientId !== token.clientId || !grantOf(refresh.clientId, refresh.appId)?.active) {
          return oauthError("invalid_grant", "refresh token is invalid or revoked");
        }
        if (refresh.used) {
          statsOf(refresh.appId).reusedRefreshTokens++;
          return oauthError("expired_token", "refresh token has been used");
        }
        refresh.used = true; // 使用后失效: the answer carries the only next one
        const pair = issuePair(refresh.clientId, refresh.appId);
        const pending = faults.get(refresh.appId);
        if (pending?.[0] === "drop-refresh-answer") {
          pending.shift();
          return { status: 200, body: pair, drop: true };
        }
        return ok(pair);
      }
      return oauthError("unsupported_grant_type", "The authorization grant type is not supported");
    },
  };

  const appInfo: Endpoint = {
    platform: "baidu",
    kind: "tp",
    parseBody: noBody,
    matchOf: (call) => accessTokens.get(call.query.access_token ?? "")?.appId ?? "",
    answer(call) {
      const token = accessTokenOf(call);
      if (isAnswer(token)) return token;
      statsOf(token.appId).appInfos++;
      const grant = grantOf(token.clientId, token.appId)!;
      return ok({
        errno: 0,
        msg: "success",
        data: {
          app_id: Number(token.appId),
          app_name: `stand-in mini program ${token.appId}`,
          auth_info: grant.scopes.map((scope_name, i) => ({ scope_name, type: i + 1 })),
        },
      });
    },
  };

  const retrieveCode: Endpoint = {
    platform: "baidu",
    kind: "tp",
    parseBody: parseForm,
    matchOf: (call) => formField(call, "app_id") ?? "",
    answer(call) {
      const token = platformTokenOf(call);
      if (isAnswer(token)) return token;
      const appId = formField(call, "app_id") ?? "";
      statsOf(appId).retrieves++;
      if (!grantOf(token.clientId, appId)?.active) return ok({ errno: 50032, msg: "no authorization relationship between the platform and the mini program" });
      return ok({
        errno: 0,
        msg: "success",
        data: { authorization_code: issueCode(token.clientId, appId, RETRIEVED_CODE_TTL), expires_in: RETRIEVED_CODE_TTL },
      });
    },
  };

  const sendByTp: Endpoint = {
    platform: "baidu",
    kind: "send",
    parseBody: parseForm,
    matchOf: (call) => formField(call, "open_id") ?? "",
    answer(call, record) {
      const token = accessTokenOf(call);
      if (isAnswer(token)) return token;
      record.identity = token.appId;
      statsOf(token.appId).sends++;
      return deps.sendForm(call.body) ?? ok({ errno: 0, msg: "success", data: {} });
    },
  };

  function endpoint(method: string, path: string): Endpoint | undefined {
    if (method === "GET" && path === "/public/2.0/smartapp/auth/tp/token") return platformToken;
    if (method === "GET" && path === "/rest/2.0/smartapp/tp/createpreauthcode") return preAuthCode;
    if (method === "GET" && path === "/mappconsole/tp/authorization") return authorizationPage;
    if (method === "GET" && path === "/rest/2.0/oauth/token") return oauthToken;
    if (method === "GET" && path === "/rest/2.0/smartapp/app/info") return appInfo;
    if (method === "POST" && path === "/rest/2.0/smartapp/auth/retrieve/authorizationcode") return retrieveCode;
    if (method === "POST" && path === "/rest/2.0/smartapp/message/custom/sendbytp") return sendByTp;
    return undefined;
  }

  function control(route: string, input: Record<string, unknown> | undefined, query: Record<string, string>): Answer | undefined {
    const bad = (error: string): Answer => ({ status: 400, body: { error } });
    const text = (name: string) => (typeof input?.[name] === "string" && input[name] !== "" ? (input[name] as string) : undefined);
    switch (route) {
      case "POST /__standin/tp/ticket": {
        const clientId = text("clientId");
        if (!clientId) return bad("clientId is required");
        const platform = platformOf(clientId);
        if (input?.tokenLimit !== undefined) {
          if (!Number.isInteger(input.tokenLimit) || (input.tokenLimit as number) < 0) return bad("tokenLimit must be an integer ≥ 0");
          platform.tokenLimit = input.tokenLimit as number;
        }
        const ticket = hex();
        platform.tickets = [...platform.tickets.slice(-1), ticket]; // the latest and the one before it work
        return ok({ ticket });
      }
      case "POST /__standin/tp/authorize": {
        const clientId = text("clientId");
        const appId = text("appId");
        if (!clientId || !appId) return bad("clientId and appId are required");
        const scopes = Array.isArray(input?.scopes) ? (input.scopes as unknown[]).map(String) : ["基础信息", KEFU_SCOPE];
        grants.set(`${clientId}/${appId}`, { clientId, appId, active: true, scopes });
        return ok({ authorizationCode: issueCode(clientId, appId, EVENT_CODE_TTL), expiresIn: EVENT_CODE_TTL });
      }
      case "POST /__standin/tp/unauthorize": {
        const grant = grantOf(text("clientId") ?? "", text("appId") ?? "");
        if (!grant) return bad("no such authorization (clientId, appId)");
        grant.active = false;
        return ok({ unauthorized: true });
      }
      case "POST /__standin/tp/fault": {
        const appId = text("appId");
        if (!appId || input?.fault !== "drop-refresh-answer") return bad('appId and fault "drop-refresh-answer" are required');
        faults.set(appId, [...(faults.get(appId) ?? []), "drop-refresh-answer"]);
        return ok({ queued: faults.get(appId)!.length });
      }
      case "POST /__standin/tp/expire": {
        let expired = 0;
        for (const token of accessTokens.values()) {
          if (text("appId") && token.appId === text("appId")) {
            token.expiresAt = now() - 1;
            expired++;
          }
        }
        for (const token of platformTokens.values()) {
          if (text("clientId") && token.clientId === text("clientId")) {
            token.expiresAt = now() - 1;
            expired++;
          }
        }
        return ok({ expired });
      }
      case "GET /__standin/tp/stats": {
        const id = query.appId ?? query.clientId;
        if (!id) return bad("appId or clientId query parameter is required");
        return ok({ ...statsOf(id) });
      }
    }
    return undefined;
  }

  function reset() {
    platforms = new Map();
    platformTokens = new Map();
    preAuthCodes = new Map();
    grants = new Map();
    codes = new Map();
    accessTokens = new Map();
    refreshTokens = new Map();
    faults = new Map();
    stats = new Map();
  }

  return { endpoint, control, reset };
}
