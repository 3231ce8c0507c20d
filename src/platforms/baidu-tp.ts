import type { Reply } from "../protocol/reply.ts";
import { baidu, baiduSendRequest } from "./baidu.ts";
import { field, type PlatformRules } from "./platform.ts";

/**
 * Baidu's third-party platform (第三方平台) API, as data: the calls a service provider makes and
 * what each of Baidu's three error families means (docs/protocol.md §8). Pure: requests are built
 * here, sent by the credentials' owners (src/tp/credentials.ts).
 */

/**
 * What an answer means for the caller:
 * ok · retry (transient, ask again later) · refresh (the token presented was refused: renew it,
 * try once more) · recover (a code or refresh token is dead: recover the authorization through
 * retrieve/authorizationcode) · unauthorized (no authorization relationship any more) · final.
 */
export type TpVerdict = "ok" | "retry" | "refresh" | "recover" | "unauthorized" | "final";

export interface TpAnswer {
  verdict: TpVerdict;
  /** `data` of an `{errno, data}` answer, or the flat OAuth answer itself. */
  data?: Record<string, unknown>;
  /** errno, error_code or the OAuth `error` string, when the answer had one. */
  code?: number | string;
  message: string;
}

/** `{errno, msg, data}` of the smartapp REST calls. Codes not listed are final. */
const errnoVerdicts: Record<number, TpVerdict> = {
  0: "ok",
  50032: "unauthorized", // retrieve/authorizationcode: no authorization relationship
};

/** `{error_code, error_msg}` of the OpenAPI gateway, answered before the call is looked at. */
const gatewayVerdicts: Record<number, TpVerdict> = {
  2: "retry", // service temporarily unavailable
  4: "retry", // request limit reached
  17: "retry", // daily request limit reached
  18: "retry", // QPS limit reached
  19: "retry", // total request limit reached
  110: "refresh", // access token invalid
  111: "refresh", // access token expired
};

/** `{error, error_description}` with HTTP 400, of the OAuth token endpoint. */
const oauthVerdicts: Record<string, TpVerdict> = {
  invalid_grant: "recover", // code or refresh token invalid, revoked or used
  expired_token: "recover", // "refresh token has been used"
  temporarily_unavailable: "retry",
  invalid_client: "final",
  invalid_request: "final",
  unsupported_grant_type: "final",
};

/** Any answer of Baidu's TP API → what it means. */
export function readTpAnswer(status: number, body: unknown): TpAnswer {
  // A 5xx is the front end's, whatever its body says: nothing in it is Baidu's verdict on the call.
  if (status >= 500 || status === 429) return { verdict: "retry", message: `HTTP ${status}` };
  const gateway = field(body, "error_code");
  if (typeof gateway === "number") {
    return { verdict: gatewayVerdicts[gateway] ?? "final", code: gateway, message: String(field(body, "error_msg") ?? "") };
  }
  const oauth = field(body, "error");
  if (typeof oauth === "string") {
    return { verdict: oauthVerdicts[oauth] ?? "final", code: oauth, message: String(field(body, "error_description") ?? "") };
  }
  const errno = field(body, "errno");
  if (typeof errno === "number") {
    const data = field(body, "data");
    return {
      verdict: errnoVerdicts[errno] ?? "final",
      code: errno,
      message: String(field(body, "msg") ?? ""),
      ...(typeof data === "object" && data !== null ? { data: data as Record<string, unknown> } : {}),
    };
  }
  // The OAuth token answers are flat: {access_token, refresh_token, expires_in}.
  if (typeof field(body, "access_token") === "string") return { verdict: "ok", data: body as Record<string, unknown>, message: "" };
  return { verdict: status >= 400 ? "final" : "retry", message: `unexpected answer (HTTP ${status})` };
}

const get = (base: string, path: string, query: Record<string, string>) => new Request(`${base}${path}?${new URLSearchParams(query)}`);

/** The calls, each a Request; `base` is BAIDU_API_BASE. */
export const tpCalls = {
  platformToken: (base: string, clientId: string, ticket: string) => get(base, "/public/2.0/smartapp/auth/tp/token", { client_id: clientId, ticket }),
  preAuthCode: (base: string, platformToken: string) => get(base, "/rest/2.0/smartapp/tp/createpreauthcode", { access_token: platformToken }),
  exchangeCode: (base: string, platformToken: string, code: string) =>
    get(base, "/rest/2.0/oauth/token", { access_token: platformToken, code, grant_type: "app_to_tp_authorization_code" }),
  refresh: (base: string, platformToken: string, refreshToken: string) =>
    get(base, "/rest/2.0/oauth/token", { access_token: platformToken, refresh_token: refreshToken, grant_type: "app_to_tp_refresh_token" }),
  appInfo: (base: string, accessToken: string) => get(base, "/rest/2.0/smartapp/app/info", { access_token: accessToken }),
  retrieveCode: (base: string, platformToken: string, appId: string) =>
    new Request(`${base}/rest/2.0/smartapp/auth/retrieve/authorizationcode?${new URLSearchParams({ access_token: platformToken })}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ app_id: appId }).toString(),
    }),
};

/** The page a merchant authorizes on; Baidu sends them back to `redirectUri` with a code. */
export function authorizationUrl(page: string, clientId: string, preAuthCode: string, redirectUri: string): string {
  return `${page}?${new URLSearchParams({ client_id: clientId, pre_auth_code: preAuthCode, redirect_uri: redirectUri })}`;
}

// ---- reading the data of an ok answer ------------------------------------------------------------

const text = (data: Record<string, unknown> | undefined, name: string) => {
  const value = data?.[name];
  return typeof value === "string" && value !== "" ? value : typeof value === "number" ? String(value) : undefined;
};
const seconds = (data: Record<string, unknown> | undefined, name: string) => {
  const value = Number(data?.[name]);
  return Number.isFinite(value) && value > 0 ? value : undefined;
};

export interface TokenPair {
  accessToken: string;
  refreshToken: string;
  expiresInSeconds: number;
}

export function readPlatformToken(data?: Record<string, unknown>): { token: string; expiresInSeconds: number } | undefined {
  const token = text(data, "access_token");
  const expiresInSeconds = seconds(data, "expires_in");
  return token && expiresInSeconds ? { token, expiresInSeconds } : undefined;
}

export function readPair(data?: Record<string, unknown>): TokenPair | undefined {
  const accessToken = text(data, "access_token");
  const refreshToken = text(data, "refresh_token");
  const expiresInSeconds = seconds(data, "expires_in");
  return accessToken && refreshToken && expiresInSeconds ? { accessToken, refreshToken, expiresInSeconds } : undefined;
}

export function readCode(data: Record<string, unknown> | undefined, name: "pre_auth_code" | "authorization_code"): string | undefined {
  return text(data, name);
}

/**
 * app/info: the mini program and whether the merchant granted the customer-service permission.
 * Merchants may grant only part of the permission sets; the set's name carries 客服 [inferred from
 * the scope names Baidu lists].
 */
export function readAppInfo(data?: Record<string, unknown>): { appId?: string; appName?: string; kefuGranted: boolean } {
  const scopes = Array.isArray(data?.auth_info) ? (data.auth_info as unknown[]) : [];
  return {
    appId: text(data, "app_id"),
    appName: text(data, "app_name"),
    kefuGranted: scopes.some((scope) => String(field(scope, "scope_name") ?? "").includes("客服")),
  };
}

// ---- sending -------------------------------------------------------------------------------------

/** An authorized mini program: Baidu's rules, but replies go through custom/sendbytp with the authorizer token. */
export const baiduTp: PlatformRules = {
  ...baidu,
  api: {
    ...baidu.api,
    sendRequest: (base: string, token: string, openid: string, reply: Reply, userType: 1 | 2) =>
      baiduSendRequest(`${base}/rest/2.0/smartapp/message/custom/sendbytp`, token, openid, reply, userType),
  },
};
