import { log } from "./log.ts";
import { isEncodingAesKey } from "./protocol/cipher.ts";
import type { Platform } from "./protocol/codec.ts";
import type { SecurityMode } from "./protocol/push.ts";
import { baidu } from "./platforms/baidu.ts";
import type { PlatformRules } from "./platforms/platform.ts";
import { defaultSessionGrant, wechatRules } from "./platforms/wechat.ts";
import { issuePath, z } from "./zod.ts";

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
  /** Send-side credentials: Baidu App Key / App Secret, WeChat appid (default: appId) / AppSecret. */
  appKey?: string;
  appSecret?: string;
  /** Baidu user_type used when a reply does not say: 1 guest, 2 Baidu account. */
  userType: 1 | 2;
  rules: PlatformRules;
  /**
   * A mini program authorized to a third-party platform (app name `<tp>.<appId>`): sends with its
   * authorizer token. `state` as its Authorizer said, when it was asked.
   */
  thirdParty?: { platform: string; appId: string; state?: AuthorizationState };
}

/** Where a mini program stands with its third-party platform (src/tp/credentials.ts). */
export type AuthorizationState = "authorized" | "needs_recovery" | "unauthorized";

/** One third-party platform (第三方平台), as given in KEFU_THIRD_PARTY. */
export interface ThirdPartyConfig {
  name: string;
  /** The platform's key (TP key / client_id). */
  clientId: string;
  /** Token and EncodingAESKey of the 授权事件接收URL (ticket and authorization events). */
  token: string;
  encodingAesKey: string;
  /** Token and EncodingAESKey of the 消息与事件接收URL (the mini programs' pushes); default: the first pair. */
  messageToken: string;
  messageEncodingAesKey: string;
}

export interface Config {
  apps: ReadonlyMap<string, AppConfig>;
  thirdParties: ReadonlyMap<string, ThirdPartyConfig>;
  /** Baidu's authorization page a merchant is sent to (third-party platforms). */
  authorizationPage: string;
  /**
   * Apps of KEFU_APPS that are not valid, with their problems: each answers 503 config_invalid
   * while the others keep working.
   */
  brokenApps: ReadonlyMap<string, string[]>;
  /** Bearer keys of the REST API (KEFU_API_KEY and KEFU_API_KEYS); any one of them opens it. */
  apiKeys: string[];
  /** Origins allowed to call the API from a browser; empty: no CORS. */
  corsOrigins: string[];
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
  /** How many times kefu-edge tries a forward, and a send, before it is `failed`. */
  forwardAttempts: number;
  sendAttempts: number;
  /** How long a forward that keeps failing holds back the user's later forwards. */
  forwardHoldSeconds: number;
}

export type ConfigResult = { ok: true; config: Config } | { ok: false; problems: string[] };

// ---- one schema per setting; a problem reads "<where> <why>", never the value ----------------

const nonEmpty = (required = "is required") =>
  z.string({ error: (issue) => (issue.input === undefined ? required : "must be a non-empty string") }).min(1, "must be a non-empty string");

const APP_FIELDS = ["platform", "token", "encodingAesKey", "mode", "appId", "appKey", "appSecret", "userType"] as const;

const present = (value: unknown) => typeof value === "string" && value !== "";

/** One entry of KEFU_APPS, checked on its own. */
const appSchema = z
  .strictObject({
    platform: z.enum(["baidu", "wechat"], { error: 'must be "baidu" or "wechat"' }),
    token: nonEmpty("is required (the Token set in the console)"),
    encodingAesKey: nonEmpty().refine(isEncodingAesKey, "must be 43 characters of [A-Za-z0-9]").optional(),
    mode: z.enum(["plaintext", "compatible", "safe"], { error: 'must be "plaintext", "compatible" or "safe"' }).optional(),
    appId: nonEmpty().optional(),
    appKey: nonEmpty().optional(),
    appSecret: nonEmpty().optional(),
    userType: z.union([z.literal(1), z.literal(2)], { error: "must be 1 (guest) or 2 (Baidu account)" }).default(1),
  })
  // Rules across fields run even when a field is wrong, so every problem is reported at once.
  .check(
    z.superRefine(
      (app: Record<string, unknown>, ctx) => {
        if ((app.mode === "compatible" || app.mode === "safe") && !present(app.encodingAesKey)) {
          ctx.addIssue({ code: "custom", path: ["mode"], message: `"${app.mode}" needs encodingAesKey (the console's EncodingAESKey)` });
        }
        if (app.platform === "wechat" && present(app.encodingAesKey) && !present(app.appId)) {
          ctx.addIssue({ code: "custom", path: ["appId"], message: "is required with encodingAesKey: WeChat encrypted pushes are checked against it" });
        }
      },
      { when: (payload) => typeof payload.value === "object" && payload.value !== null },
    ),
  )
  .transform((app) => ({
    ...app,
    mode: app.mode ?? (app.encodingAesKey ? "safe" : "plaintext"),
    // WeChat sends with the AppID itself: no need to repeat it as appKey.
    appKey: app.appKey ?? (app.platform === "wechat" ? app.appId : undefined),
  }));

/** KEFU_APPS as a JSON object of entries, each checked on its own (appSchema) afterwards. */
const appsSchema = z
  .string({ error: "is not set: give it a JSON object of apps (wrangler secret put KEFU_APPS)" })
  .min(1, "is not set: give it a JSON object of apps (wrangler secret put KEFU_APPS)")
  .transform((text, ctx) => {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      ctx.addIssue({ code: "custom", message: "is not valid JSON" }); // the text may hold secrets: never echo it
      return z.NEVER;
    }
  })
  .pipe(
    z.record(z.string(), z.unknown(), {
      error: 'must be a JSON object keyed by app name, e.g. {"shop":{"platform":"baidu",…}}',
    }),
  )
  .refine((apps) => Object.keys(apps).length > 0, "has no apps");

const TP_FIELDS = ["clientId", "token", "encodingAesKey", "messageToken", "messageEncodingAesKey"] as const;

const aesKeyField = nonEmpty("is required (the console's EncodingAESKey)").refine(isEncodingAesKey, "must be 43 characters of [A-Za-z0-9]");

/** One entry of KEFU_THIRD_PARTY, checked on its own. */
const thirdPartySchema = z
  .strictObject({
    clientId: nonEmpty("is required (the platform's TP key, client_id)"),
    token: nonEmpty("is required (the Token of the 授权事件接收URL)"),
    encodingAesKey: aesKeyField,
    messageToken: nonEmpty().optional(),
    messageEncodingAesKey: nonEmpty().refine(isEncodingAesKey, "must be 43 characters of [A-Za-z0-9]").optional(),
  })
  .transform((tp) => ({
    ...tp,
    messageToken: tp.messageToken ?? tp.token,
    messageEncodingAesKey: tp.messageEncodingAesKey ?? tp.encodingAesKey,
  }));

const thirdPartiesSchema = z
  .string()
  .optional()
  .transform((text, ctx) => {
    if (!text) return {};
    try {
      return JSON.parse(text) as unknown;
    } catch {
      ctx.addIssue({ code: "custom", message: "is not valid JSON" });
      return z.NEVER;
    }
  })
  .pipe(
    z
      .record(z.string().regex(/^[A-Za-z0-9_-]{1,64}$/), thirdPartySchema, {
        error: (issue) =>
          issue.code === "invalid_key"
            ? "is not a platform name: names are 1-64 of [A-Za-z0-9_-]"
            : 'must be a JSON object keyed by platform name, e.g. {"mytp":{"clientId":"…",…}}',
      })
      .superRefine((platforms, ctx) => {
        // Two names for one platform would split its ticket and tokens between two owners.
        const seen = new Map<string, string>();
        for (const [name, { clientId }] of Object.entries(platforms)) {
          const first = seen.get(clientId);
          if (first) ctx.addIssue({ code: "custom", path: [name, "clientId"], message: `is the same as ${first}'s: one platform, one entry` });
          else seen.set(clientId, name);
        }
      }),
  );

const APP_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** A bearer token as RFC 6750 §2.1 allows it (b64token): what Hono's bearerAuth accepts. */
const BEARER_TOKEN = /^[A-Za-z0-9._~+/-]+=*$/;
const bearerToken = z.string().regex(BEARER_TOKEN, "is not a bearer token: use only A-Z a-z 0-9 - . _ ~ + / and = at the end");

/** A comma-separated list; blanks and surrounding spaces ignored. */
const list = <T extends z.ZodType<unknown, string>>(item: T) =>
  z
    .string()
    .optional()
    .transform((text) =>
      (text ?? "")
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== ""),
    )
    .pipe(z.array(item));

const origin = z.string().refine((s) => s === "*" || (URL.canParse(s) && /^https?:$/.test(new URL(s).protocol) && new URL(s).origin === s), {
  message: "must be origins such as https://console.example.com (no path, no trailing /), or *",
});

const integer = (fallback: number, min: number) => {
  const why = `must be an integer ≥ ${min}`;
  return z.preprocess(
    (raw) => (raw === undefined || raw === "" ? undefined : Number(raw)),
    z.number({ error: why }).int({ error: why }).min(min, { error: why }).default(fallback),
  );
};

const httpUrl = (fallback?: string) =>
  z.preprocess(
    (raw) => raw || fallback,
    z
      .string()
      .refine((s) => URL.canParse(s) && /^https?:$/.test(new URL(s).protocol), "must be an http(s) URL")
      .transform((s) => s.replace(/\/+$/, ""))
      .optional(),
  );

/** Who may call the API: read on their own, so the API can authenticate even when other settings are wrong. */
const accessSettings = {
  KEFU_API_KEY: z.preprocess((raw) => (typeof raw === "string" ? raw.trim() || undefined : raw), bearerToken.optional()),
  KEFU_API_KEYS: list(bearerToken),
  KEFU_CORS_ORIGINS: list(origin),
};

const settingsSchema = z.object({
  KEFU_APPS: appsSchema,
  KEFU_THIRD_PARTY: thirdPartiesSchema,
  ...accessSettings,
  KEFU_WEBHOOK_URL: httpUrl(),
  KEFU_WEBHOOK_SECRET: z
    .string()
    .optional()
    .transform((s) => s || undefined)
    .refine((s) => s === undefined || isWebhookSecret(s), "must be whsec_ followed by the base64 of at least 24 random bytes (Standard Webhooks)"),
  BAIDU_API_BASE: httpUrl("https://openapi.baidu.com"),
  BAIDU_AUTHORIZATION_PAGE: httpUrl("https://smartprogram.baidu.com/mappconsole/tp/authorization"),
  WECHAT_API_BASE: httpUrl("https://api.weixin.qq.com"),
  KEFU_DEDUPE_TTL_SECONDS: integer(3600, 60),
  KEFU_HISTORY_DAYS: integer(7, 1),
  KEFU_SIGNATURE_TOLERANCE_SECONDS: integer(300, 1),
  WECHAT_SESSION_REPLIES: integer(defaultSessionGrant.replies, 0),
  WECHAT_SESSION_WINDOW_SECONDS: integer(defaultSessionGrant.seconds, 1),
  KEFU_RETRY_DELAY_SECONDS: integer(10, 0),
  KEFU_CALL_TIMEOUT_MS: integer(10_000, 100),
  KEFU_FORWARD_ATTEMPTS: integer(10, 1),
  KEFU_SEND_ATTEMPTS: integer(5, 1),
  KEFU_FORWARD_HOLD_SECONDS: integer(60, 0),
});

/** A Standard Webhooks secret: "whsec_" and the base64 of the key, at least 24 bytes. */
export function isWebhookSecret(secret: string): boolean {
  const match = /^whsec_([A-Za-z0-9+/]+={0,2})$/.exec(secret);
  if (!match || match[1]!.length % 4 !== 0) return false;
  return atob(match[1]!).length >= 24;
}

const accessSchema = z.object(accessSettings);

/** The env variables kefu-edge reads; every one is optional so that a bare deploy can say what is missing. */
export type KefuVars = { [name in keyof typeof settingsSchema.shape]?: string };

const VAR_NAMES = Object.keys(settingsSchema.shape) as (keyof KefuVars)[];

/** A provider with third-party platforms only needs no KEFU_APPS. */
const platformsOnlySchema = settingsSchema.extend({
  KEFU_APPS: z
    .undefined()
    .optional()
    .transform((): z.infer<typeof appsSchema> => ({})),
});

/** Each issue as a line: where (variable, app, field) and why, never the value. */
function problemsOf(error: z.ZodError, prefix: PropertyKey[] = []): string[] {
  return error.issues.flatMap((issue) =>
    issue.code === "unrecognized_keys"
      ? issue.keys.map(
          (key) =>
            `${issuePath([...prefix, ...issue.path, key])} is not a known field (${(issue.path[0] === "KEFU_THIRD_PARTY" ? TP_FIELDS : APP_FIELDS).join(", ")})`,
        )
      : [`${issuePath([...prefix, ...issue.path])} ${issue.message}`],
  );
}

export function parseConfig(env: KefuVars): ConfigResult {
  const parsed = (!env.KEFU_APPS && env.KEFU_THIRD_PARTY ? platformsOnlySchema : settingsSchema).safeParse(env);
  if (!parsed.success) return { ok: false, problems: problemsOf(parsed.error) };
  const s = parsed.data;
  const rules: Record<Platform, PlatformRules> = {
    baidu,
    wechat: wechatRules({ replies: s.WECHAT_SESSION_REPLIES, seconds: s.WECHAT_SESSION_WINDOW_SECONDS }),
  };
  const apps = new Map<string, AppConfig>();
  const brokenApps = new Map<string, string[]>();
  for (const [name, entry] of Object.entries(s.KEFU_APPS)) {
    if (!APP_NAME.test(name)) {
      brokenApps.set(name, [`${issuePath(["KEFU_APPS", name])} is not an app name: app names are 1-64 of [A-Za-z0-9_-]`]);
      continue;
    }
    const app = appSchema.safeParse(entry);
    if (app.success) apps.set(name, { name, ...app.data, rules: rules[app.data.platform] });
    else brokenApps.set(name, problemsOf(app.error, ["KEFU_APPS", name]));
  }
  return {
    ok: true,
    config: {
      apps,
      thirdParties: new Map(Object.entries(s.KEFU_THIRD_PARTY).map(([name, tp]): [string, ThirdPartyConfig] => [name, { name, ...tp }])),
      authorizationPage: s.BAIDU_AUTHORIZATION_PAGE!,
      brokenApps,
      apiKeys: keysOf(s),
      corsOrigins: s.KEFU_CORS_ORIGINS,
      webhook: s.KEFU_WEBHOOK_URL ? { url: s.KEFU_WEBHOOK_URL, secret: s.KEFU_WEBHOOK_SECRET } : undefined,
      apiBase: { baidu: s.BAIDU_API_BASE!, wechat: s.WECHAT_API_BASE! },
      dedupeTtlSeconds: s.KEFU_DEDUPE_TTL_SECONDS,
      historyRetentionDays: s.KEFU_HISTORY_DAYS,
      signatureToleranceSeconds: s.KEFU_SIGNATURE_TOLERANCE_SECONDS,
      retryDelaySeconds: s.KEFU_RETRY_DELAY_SECONDS,
      callTimeoutMs: s.KEFU_CALL_TIMEOUT_MS,
      forwardAttempts: s.KEFU_FORWARD_ATTEMPTS,
      sendAttempts: s.KEFU_SEND_ATTEMPTS,
      forwardHoldSeconds: s.KEFU_FORWARD_HOLD_SECONDS,
    },
  };
}

export type AccessResult = { ok: true; apiKeys: string[]; corsOrigins: string[] } | { ok: false; problems: string[] };

/** The API keys and CORS origins alone. */
export function parseAccess(env: KefuVars): AccessResult {
  const parsed = accessSchema.safeParse(env);
  if (!parsed.success) return { ok: false, problems: problemsOf(parsed.error) };
  return { ok: true, apiKeys: keysOf(parsed.data), corsOrigins: parsed.data.KEFU_CORS_ORIGINS };
}

const keysOf = (s: { KEFU_API_KEY?: string; KEFU_API_KEYS: string[] }) => [...new Set([...(s.KEFU_API_KEY ? [s.KEFU_API_KEY] : []), ...s.KEFU_API_KEYS])];

let memo: { key: string; config: ConfigResult; access: AccessResult } | undefined;

function memoized(env: KefuVars) {
  const key = VAR_NAMES.map((name) => env[name] ?? "").join("\u0000");
  if (memo?.key !== key) {
    const config = parseConfig(env);
    // Problems name variables and fields, never values: safe for the log, where an operator
    // without a working API key can still read them.
    if (!config.ok) log("config", { outcome: "invalid", problems: config.problems });
    else if (config.config.brokenApps.size > 0) log("config", { outcome: "apps_invalid", problems: [...config.config.brokenApps.values()].flat() });
    memo = { key, config, access: parseAccess(env) };
  }
  return memo;
}

/** Reads and validates the configuration once per isolate (again only if the variables change). */
export function readConfig(env: KefuVars): ConfigResult {
  return memoized(env).config;
}

export function readAccess(env: KefuVars): AccessResult {
  return memoized(env).access;
}
