import { env as runtimeEnv, exports } from "cloudflare:workers";
import { vi } from "vitest";
import type { HistoryEntry } from "../src/conversation/conversation.ts";
import type { Env } from "../src/env.ts";
import { KefuError } from "../src/protocol/errors.ts";
import type { Fields } from "../src/protocol/codec.ts";
import { queryString, sealPush, type SealOptions } from "../src/protocol/seal.ts";
import { testApps, type TestAppName } from "./fixtures/apps.ts";

/** The Worker's bindings, typed. */
export const env = runtimeEnv as unknown as Env;

let counter = 0;
/** A fresh openid and MsgId for every test, so tests never share a conversation. */
export function uniqueId(prefix = "u"): string {
  counter += 1;
  return `${prefix}${Date.now().toString(36)}${counter}${Math.random().toString(36).slice(2, 8)}`;
}

export function uniqueMsgId(): string {
  return (BigInt(Date.now()) * 1_000_000n + BigInt(Math.floor(Math.random() * 1_000_000))).toString();
}

/** A user's text push; `sendPush` addresses it to the app when `ToUserName` is not given. */
export function textPush(overrides: Fields = {}): Fields {
  return {
    FromUserName: uniqueId("o"),
    CreateTime: Math.floor(Date.now() / 1000),
    MsgType: "text",
    Content: "你好",
    MsgId: uniqueMsgId(),
    ...overrides,
  };
}

type PushOptions = Partial<Omit<SealOptions, "token">> & { app: TestAppName; method?: string };
type TestApp = { platform: string; token: string; encodingAesKey?: string; appId?: string; mode?: SealOptions["mode"] };

/** The mode an app's console would be in: the configured one (safe when it has a key). */
export function modeOf(name: TestAppName): SealOptions["mode"] {
  const app = testApps[name] as TestApp;
  return app.mode ?? (app.encodingAesKey ? "safe" : "plaintext");
}

/** Whom a push to the app is addressed to: Baidu's appId, or a WeChat original id. */
export function addressOf(name: TestAppName): string {
  const app = testApps[name] as TestApp;
  return app.platform === "baidu" ? (app.appId ?? "baidu-app") : "gh_10f6c3c3ac5a";
}

/**
 * Sends a push to the Worker exactly as the app's platform would: in the app's mode, signed now,
 * addressed to the app (each can be overridden).
 */
export function sealFor(fields: Fields, options: PushOptions) {
  const app = testApps[options.app] as TestApp;
  return sealPush(
    { ToUserName: addressOf(options.app), ...fields },
    {
      token: app.token,
      encodingAesKey: app.encodingAesKey,
      trailingId: app.appId,
      mode: modeOf(options.app),
      format: "xml",
      ...options,
    },
  );
}

export function sendPush(fields: Fields, options: PushOptions): Promise<Response> {
  const sealed = sealFor(fields, options);
  return postRaw(`/push/${options.app}${queryString(sealed.query)}`, sealed.body, sealed.contentType);
}

export function postRaw(path: string, body: BodyInit | null, contentType = "text/xml", method = "POST"): Promise<Response> {
  return exports.default.fetch(new Request(`https://kefu.test${path}`, { method, body, headers: { "content-type": contentType } }));
}

/** The local stand-in of the platforms and the business webhook (started by global-setup.ts). */
export async function standIn<T = unknown>(path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${env.BAIDU_API_BASE}/__standin${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`stand-in ${path}: HTTP ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

export interface StandInRequest {
  kind: string;
  status: number | null;
  verified?: boolean | null;
  headers: Record<string, string>;
  body: any;
  query: Record<string, string>;
  response: any;
}

export async function standInRequests(filter: Record<string, string>): Promise<StandInRequest[]> {
  const { requests } = await standIn<{ requests: StandInRequest[] }>(`/requests?${new URLSearchParams(filter)}`);
  return requests;
}

/** The webhook deliveries the business received for one user. */
export function webhookDeliveries(openid: string): Promise<StandInRequest[]> {
  return standInRequests({ platform: "webhook", match: openid });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Calls the REST API as the business would. */
export async function api<T = any>(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: T; headers: Headers }> {
  const response = await exports.default.fetch(
    new Request(`https://kefu.test/api${path}`, {
      method,
      headers: { authorization: "Bearer test-api-key", "content-type": "application/json", ...headers },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    }),
  );
  return { status: response.status, body: (await response.json()) as T, headers: response.headers };
}

/** The user writes to the app (a text push in the app's mode), opening the reply window; returns the openid. */
export async function userWrites(app: TestAppName, openid = uniqueId("o")): Promise<string> {
  const response = await sendPush(textPush({ FromUserName: openid }), { app });
  if ((await response.text()) !== "success") throw new Error(`push to ${app} was not accepted`);
  return openid;
}

/** The structured log lines the Worker writes while `fn` runs. */
export async function logsOf(fn: () => Promise<unknown>): Promise<Record<string, unknown>[]> {
  const lines: Record<string, unknown>[] = [];
  const spy = vi.spyOn(console, "log").mockImplementation((line: unknown) => {
    if (typeof line === "string" && line.startsWith("{")) lines.push(JSON.parse(line));
  });
  try {
    await fn();
  } finally {
    spy.mockRestore();
  }
  return lines;
}

/** The code of the KefuError `fn` throws (undefined if it throws none). */
export function errorCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    if (error instanceof KefuError) return error.code;
    throw error;
  }
  return undefined;
}

type Inbound = Extract<HistoryEntry, { direction: "in" }>;

/** The messages of a conversation's history (with their forwards), newest first. */
export function received(history: HistoryEntry[] | undefined): Inbound[] {
  return (history ?? []).filter((entry): entry is Inbound => entry.direction === "in");
}

// ---- third-party platform mode ---------------------------------------------------------------------

/** Beijing time as Baidu writes eventTime ("2019-01-14 12:45:10"). */
export function beijingTime(ms = Date.now()): string {
  return new Date(ms + 8 * 3_600_000).toISOString().slice(0, 19).replace("T", " ");
}

/** A push in a third-party platform's envelope: JSON `{Nonce, TimeStamp, Encrypt, MsgSignature}`, signed now. */
export function sealTp(fields: Fields, secrets: { token: string; encodingAesKey: string }) {
  return sealPush(fields, { ...secrets, mode: "safe", format: "json", envelope: "body", trailingId: "20073496" });
}

type TpSecrets = { token: string; encodingAesKey: string; messageToken?: string; messageEncodingAesKey?: string };

/** POSTs a platform event (ticket, authorization events) to /tp/<tp>/events, as Baidu does. */
export function tpEvent(tp: string, platform: TpSecrets, fields: Fields): Promise<Response> {
  return postRaw(`/tp/${tp}/events`, sealTp(fields, platform).body, "application/json");
}

/** Baidu pushes a fresh ticket (the stand-in's next one) to the platform. */
export async function pushTicket(tp: string, platform: TpSecrets & { clientId: string }): Promise<string> {
  const { ticket } = await standIn<{ ticket: string }>("/tp/ticket", { clientId: platform.clientId });
  const response = await tpEvent(tp, platform, {
    Ticket: ticket,
    FromUserName: "SmartAPP",
    CreateTime: Math.floor(Date.now() / 1000),
    MsgType: "ticket",
    Event: "push",
  });
  if ((await response.text()) !== "success") throw new Error("ticket push was not acknowledged");
  return ticket;
}

/** A merchant authorizes `appId` and Baidu pushes AUTHORIZED with the code; returns the response. */
export async function authorizeByEvent(tp: string, platform: TpSecrets & { clientId: string }, appId: string, scopes?: string[]): Promise<Response> {
  const { authorizationCode } = await standIn<{ authorizationCode: string }>("/tp/authorize", { clientId: platform.clientId, appId, scopes });
  return tpEvent(tp, platform, {
    appId: Number(appId),
    tpAppId: 20073496,
    eventTime: beijingTime(),
    event: "AUTHORIZED",
    authorizationCode,
    authorizationCodeExpiresIn: 60,
  });
}

/** A user writes to an authorized mini program: a text push to /tp/<tp>/messages; returns the response. */
export function tpUserWrites(tp: string, platform: TpSecrets, appId: string, openid: string, fields: Fields = {}): Promise<Response> {
  const secrets = { token: platform.messageToken ?? platform.token, encodingAesKey: platform.messageEncodingAesKey ?? platform.encodingAesKey };
  return postRaw(`/tp/${tp}/messages`, sealTp(textPush({ ToUserName: appId, FromUserName: openid, ...fields }), secrets).body, "application/json");
}

/** A numeric appId no other test uses. */
export function uniqueAppId(): string {
  return String(40_000_000 + Math.floor(Math.random() * 50_000_000));
}
