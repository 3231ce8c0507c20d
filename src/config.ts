import { isEncodingAesKey } from "./protocol/cipher.ts";
import type { Platform } from "./protocol/codec.ts";
import type { SecurityMode } from "./protocol/push.ts";
import { baidu } from "./platforms/baidu.ts";
import type { PlatformRules } from "./platforms/platform.ts";
import { defaultSessionGrant, wechatRules } from "./platforms/wechat.ts";

/** One configured mini program (or third-party platform), as given in KEFU_APPS. */
export interface AppConfig {
  name: string;
  platform: Platform;
  /** The push token (Token / 令牌) set in the console. */
  token: string;
  encodingAesKey?: string;
  /** The security mode set in the console; pushes in any other mode are refused. */
  mode: SecurityMode;
  /** Baidu: the mini program's appId; WeChat: the appid (checked against decrypted pushes). */
  appId?: string;
  /** Send-side credentials: Baidu App Key / App Secret, WeChat appid / AppSecret. */
  appKey?: string;
  appSecret?: string;
  /** Baidu user_type used when a reply does not say: 1 guest, 2 Baidu account. */
  userType: 1 | 2;
  rules: PlatformRules;
}

export interface Config {
  apps: ReadonlyMap<string, AppConfig>;
  apiKey?: string;
  webhook?: { url: string; secret?: string };
  apiBase: Record<Platform, string>;
  /** KV de-dupe entry lifetime; platforms retry within seconds, KV's minimum is 60. */
  dedupeTtlSeconds: number;
  historyRetentionDays: number;
  /** How far a signed timestamp may be from now before the signature counts as expired. */
  signatureToleranceSeconds: number;
  /** First retry delay of forwards and sends; doubles per attempt, with jitter. */
  retryDelaySeconds: number;
  /** How long a call to the platform or the webhook may take before it counts as failed (and is retried). */
  callTimeoutMs: number;
}

export type ConfigResult = { ok: true; config: Config } | { ok: false; problems: string[] };

/** The env variables kefu-edge reads; every one is optional so that a bare deploy can say what is missing. */
export interface KefuVars {
  KEFU_APPS?: string;
  KEFU_API_KEY?: string;
  KEFU_WEBHOOK_URL?: string;
  KEFU_WEBHOOK_SECRET?: string;
  BAIDU_API_BASE?: string;
  WECHAT_API_BASE?: string;
  KEFU_DEDUPE_TTL_SECONDS?: string;
  KEFU_HISTORY_DAYS?: string;
  KEFU_SIGNATURE_TOLERANCE_SECONDS?: string;
  WECHAT_SESSION_REPLIES?: string;
  WECHAT_SESSION_WINDOW_SECONDS?: string;
  KEFU_RETRY_DELAY_SECONDS?: string;
  KEFU_CALL_TIMEOUT_MS?: string;
}

const VAR_NAMES: readonly (keyof KefuVars)[] = [
  "KEFU_APPS",
  "KEFU_API_KEY",
  "KEFU_WEBHOOK_URL",
  "KEFU_WEBHOOK_SECRET",
  "BAIDU_API_BASE",
  "WECHAT_API_BASE",
  "KEFU_DEDUPE_TTL_SECONDS",
  "KEFU_HISTORY_DAYS",
  "KEFU_SIGNATURE_TOLERANCE_SECONDS",
  "WECHAT_SESSION_REPLIES",
  "WECHAT_SESSION_WINDOW_SECONDS",
  "KEFU_RETRY_DELAY_SECONDS",
  "KEFU_CALL_TIMEOUT_MS",
];

const APP_FIELDS = new Set(["platform", "token", "encodingAesKey", "appId", "appKey", "appSecret", "userType", "mode"]);

let memo: { key: string; result: ConfigResult } | undefined;

/** Reads and validates the configuration once per isolate (again only if the variables change). */
export function readConfig(env: KefuVars): ConfigResult {
  const key = VAR_NAMES.map((name) => env[name] ?? "").join("\u0000");
  if (memo?.key !== key) memo = { key, result: parseConfig(env) };
  return memo.result;
}

export function parseConfig(env: KefuVars): ConfigResult {
  const problems: string[] = [];
  const number = (name: keyof KefuVars, fallback: number, min: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === "") return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min) {
      problems.push(`${name} must be an integer ≥ ${min}`);
      return fallback;
    }
    return value;
  };
  const url = (name: keyof KefuVars, fallback?: string): string | undefined => {
    const raw = env[name] || fallback;
    if (raw === undefined) return undefined;
    if (!URL.canParse(raw) || !/^https?:$/.test(new URL(raw).protocol)) {
      problems.push(`${name} must be an http(s) URL`);
      return undefined;
    }
    return raw.replace(/\/+$/, "");
  };

  const wechat = wechatRules({
    replies: number("WECHAT_SESSION_REPLIES", defaultSessionGrant.replies, 0),
    seconds: number("WECHAT_SESSION_WINDOW_SECONDS", defaultSessionGrant.seconds, 1),
  });
  const rules: Record<Platform, PlatformRules> = { baidu, wechat };
  const apps = parseApps(env.KEFU_APPS, rules, problems);
  const webhookUrl = url("KEFU_WEBHOOK_URL");
  const config: Config = {
    apps,
    apiKey: env.KEFU_API_KEY || undefined,
    webhook: webhookUrl ? { url: webhookUrl, secret: env.KEFU_WEBHOOK_SECRET || undefined } : undefined,
    apiBase: {
      baidu: url("BAIDU_API_BASE", "https://openapi.baidu.com") ?? "",
      wechat: url("WECHAT_API_BASE", "https://api.weixin.qq.com") ?? "",
    },
    dedupeTtlSeconds: number("KEFU_DEDUPE_TTL_SECONDS", 3600, 60),
    historyRetentionDays: number("KEFU_HISTORY_DAYS", 7, 1),
    signatureToleranceSeconds: number("KEFU_SIGNATURE_TOLERANCE_SECONDS", 300, 1),
    retryDelaySeconds: number("KEFU_RETRY_DELAY_SECONDS", 10, 0),
    callTimeoutMs: number("KEFU_CALL_TIMEOUT_MS", 10_000, 100),
  };
  if (config.webhook?.secret?.startsWith("whsec_") && !/^whsec_[A-Za-z0-9+/]+={0,2}$/.test(config.webhook.secret)) {
    problems.push("KEFU_WEBHOOK_SECRET starting with whsec_ must be followed by base64");
  }
  return problems.length ? { ok: false, problems } : { ok: true, config };
}

function parseApps(raw: string | undefined, rules: Record<Platform, PlatformRules>, problems: string[]) {
  const apps = new Map<string, AppConfig>();
  if (!raw) {
    problems.push("KEFU_APPS is not set: give it a JSON object of apps (wrangler secret put KEFU_APPS)");
    return apps;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    problems.push("KEFU_APPS is not valid JSON"); // the text may hold secrets: never echo it
    return apps;
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
    problems.push('KEFU_APPS must be a JSON object keyed by app name, e.g. {"shop":{"platform":"baidu",…}}');
    return apps;
  }
  for (const [name, value] of Object.entries(parsed)) {
    const where = `KEFU_APPS.${name}`;
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) problems.push(`${where}: app names are 1-64 of [A-Za-z0-9_-]`);
    if (!value || typeof value !== "object" || Array.isArray(value)) {
      problems.push(`${where} must be an object`);
      continue;
    }
    const app = value as Record<string, unknown>;
    for (const field of Object.keys(app)) {
      if (!APP_FIELDS.has(field)) problems.push(`${where}.${field} is not a known field (${[...APP_FIELDS].join(", ")})`);
    }
    const text = (field: string): string | undefined => {
      const v = app[field];
      if (v === undefined) return undefined;
      if (typeof v !== "string" || v === "") problems.push(`${where}.${field} must be a non-empty string`);
      return typeof v === "string" && v !== "" ? v : undefined;
    };
    const platform = app.platform;
    if (platform !== "baidu" && platform !== "wechat") {
      problems.push(`${where}.platform must be "baidu" or "wechat"`);
      continue;
    }
    const token = text("token");
    if (!token) problems.push(`${where}.token is required (the Token set in the console)`);
    const encodingAesKey = text("encodingAesKey");
    if (encodingAesKey && !isEncodingAesKey(encodingAesKey)) {
      problems.push(`${where}.encodingAesKey must be 43 characters of [A-Za-z0-9]`);
    }
    const mode = app.mode ?? (encodingAesKey ? "safe" : "plaintext");
    if (mode !== "plaintext" && mode !== "compatible" && mode !== "safe") {
      problems.push(`${where}.mode must be "plaintext", "compatible" or "safe"`);
    } else if (mode !== "plaintext" && !encodingAesKey) {
      problems.push(`${where}.mode "${mode}" needs encodingAesKey (the console's EncodingAESKey)`);
    }
    const appId = text("appId");
    if (platform === "wechat" && encodingAesKey && !appId) {
      problems.push(`${where}.appId is required with encodingAesKey: WeChat encrypted pushes are checked against it`);
    }
    const userType = app.userType ?? 1;
    if (userType !== 1 && userType !== 2) problems.push(`${where}.userType must be 1 (guest) or 2 (Baidu account)`);
    apps.set(name, {
      name,
      platform,
      token: token ?? "",
      encodingAesKey,
      mode: mode === "compatible" || mode === "safe" ? mode : "plaintext",
      appId,
      appKey: text("appKey"),
      appSecret: text("appSecret"),
      userType: userType === 2 ? 2 : 1,
      rules: rules[platform],
    });
  }
  if (apps.size === 0 && problems.length === 0) problems.push("KEFU_APPS has no apps");
  return apps;
}
