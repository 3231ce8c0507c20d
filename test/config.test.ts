import { describe, expect, it } from "vitest";
import { parseConfig, type AppConfig, type Config, type KefuVars } from "../src/config.ts";

const KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

/** The problems of the whole configuration, or else of its broken apps. */
function problemsOf(vars: KefuVars): string[] {
  const result = parseConfig(vars);
  const problems = result.ok ? [...result.config.brokenApps.values()].flat() : result.problems;
  if (problems.length === 0) throw new Error("expected problems");
  return problems;
}

function configOf(vars: KefuVars): Config {
  const result = parseConfig(vars);
  if (!result.ok) throw new Error(result.problems.join("; "));
  return result.config;
}

const apps = (value: unknown) => ({ KEFU_APPS: JSON.stringify(value) });
const app = (vars: KefuVars, name: string): AppConfig => configOf(vars).apps.get(name)!;

describe("configuration", () => {
  it("keeps every message users rely on", () => {
    expect(problemsOf({})).toEqual(["KEFU_APPS is not set: give it a JSON object of apps (wrangler secret put KEFU_APPS)"]);
    expect(problemsOf({ KEFU_APPS: "{nope" })).toEqual(["KEFU_APPS is not valid JSON"]);
    expect(problemsOf({ KEFU_APPS: "[]" })).toEqual(['KEFU_APPS must be a JSON object keyed by app name, e.g. {"shop":{"platform":"baidu",…}}']);
    expect(problemsOf(apps({}))).toEqual(["KEFU_APPS has no apps"]);
    expect(problemsOf(apps({ "a b": { platform: "baidu", token: "t" } }))).toEqual(["KEFU_APPS.a b is not an app name: app names are 1-64 of [A-Za-z0-9_-]"]);
    expect(problemsOf(apps({ a: "x" }))).toEqual(["KEFU_APPS.a must be an object"]);
    expect(problemsOf(apps({ a: { platform: "qq" } }))).toEqual([
      'KEFU_APPS.a.platform must be "baidu" or "wechat"',
      "KEFU_APPS.a.token is required (the Token set in the console)",
    ]);
    expect(problemsOf(apps({ a: { platform: "baidu", token: "t", tokn: "x" } }))).toEqual([
      "KEFU_APPS.a.tokn is not a known field (platform, token, encodingAesKey, mode, appId, appKey, appSecret, userType)",
    ]);
    expect(problemsOf(apps({ a: { platform: "baidu", token: "", appKey: 5, userType: 3 } }))).toEqual([
      "KEFU_APPS.a.token must be a non-empty string",
      "KEFU_APPS.a.appKey must be a non-empty string",
      "KEFU_APPS.a.userType must be 1 (guest) or 2 (Baidu account)",
    ]);
    expect(problemsOf(apps({ a: { platform: "wechat", token: "t", encodingAesKey: "short" } }))).toEqual([
      "KEFU_APPS.a.encodingAesKey must be 43 characters of [A-Za-z0-9]",
      "KEFU_APPS.a.appId is required with encodingAesKey: WeChat encrypted pushes are checked against it",
    ]);
    expect(problemsOf(apps({ a: { platform: "baidu", token: "t", mode: "secure" } }))).toEqual([
      'KEFU_APPS.a.mode must be "plaintext", "compatible" or "safe"',
    ]);
    expect(problemsOf(apps({ a: { platform: "baidu", token: "t", mode: "compatible" } }))).toEqual([
      `KEFU_APPS.a.mode "compatible" needs encodingAesKey (the console's EncodingAESKey)`,
    ]);
    const ok = apps({ a: { platform: "baidu", token: "t" } });
    expect(problemsOf({ ...ok, KEFU_DEDUPE_TTL_SECONDS: "30", KEFU_HISTORY_DAYS: "1.5", KEFU_CALL_TIMEOUT_MS: "soon" })).toEqual([
      "KEFU_DEDUPE_TTL_SECONDS must be an integer ≥ 60",
      "KEFU_HISTORY_DAYS must be an integer ≥ 1",
      "KEFU_CALL_TIMEOUT_MS must be an integer ≥ 100",
    ]);
    expect(problemsOf({ ...ok, KEFU_WEBHOOK_URL: "ftp://x", BAIDU_API_BASE: "nope" })).toEqual([
      "KEFU_WEBHOOK_URL must be an http(s) URL",
      "BAIDU_API_BASE must be an http(s) URL",
    ]);
    const refused = "KEFU_WEBHOOK_SECRET must be whsec_ followed by the base64 of at least 24 random bytes (Standard Webhooks)";
    expect(problemsOf({ ...ok, KEFU_WEBHOOK_SECRET: "whsec_not base64!" })).toEqual([refused]);
    // A raw secret, a short key, or base64 without its padding is not a Standard Webhooks secret.
    expect(problemsOf({ ...ok, KEFU_WEBHOOK_SECRET: "my webhook secret that is long enough" })).toEqual([refused]);
    expect(problemsOf({ ...ok, KEFU_WEBHOOK_SECRET: `whsec_${btoa("23 bytes of key, short.")}` })).toEqual([refused]);
    expect(problemsOf({ ...ok, KEFU_WEBHOOK_SECRET: `whsec_${btoa("25 bytes of key material.").replaceAll("=", "")}` })).toEqual([refused]);
    expect(
      configOf({ ...ok, KEFU_WEBHOOK_URL: "https://b.example/hook", KEFU_WEBHOOK_SECRET: `whsec_${btoa("24 bytes of key material")}` }).webhook?.secret,
    ).toMatch(/^whsec_/);
  });

  it("checks each app on its own and reports every problem at once; the good apps stay configured", () => {
    const vars = apps({
      good: { platform: "baidu", token: "t" },
      bad1: { platform: "wechat", token: "t", encodingAesKey: KEY },
      bad2: { platform: "baidu", userType: 0 },
    });
    expect([...configOf(vars).apps.keys()]).toEqual(["good"]);
    expect([...configOf(vars).brokenApps.keys()]).toEqual(["bad1", "bad2"]);
    const problems = problemsOf(vars);
    expect(problems).toEqual([
      "KEFU_APPS.bad1.appId is required with encodingAesKey: WeChat encrypted pushes are checked against it",
      "KEFU_APPS.bad2.token is required (the Token set in the console)",
      "KEFU_APPS.bad2.userType must be 1 (guest) or 2 (Baidu account)",
    ]);
  });

  it("never prints a value", () => {
    const secrets = ["s3cret-token-value", "s3cret-key-value", "s3cret app secret", "s3cret-json"];
    const problems = [
      ...problemsOf(
        apps({ a: { platform: "baidu", token: "s3cret-token-value", encodingAesKey: "s3cret-key-value", appSecret: ["s3cret app secret"], x: "s3cret-json" } }),
      ),
      ...problemsOf({ KEFU_APPS: '{"a":{"token":"s3cret-json"' }),
      ...problemsOf({
        ...apps({ a: { platform: "baidu", token: "t" } }),
        KEFU_API_KEYS: "ok-key, s3cret app secret",
        KEFU_WEBHOOK_SECRET: "whsec_s3cret app secret",
      }),
    ].join("\n");
    expect(problems).toMatch(/KEFU_APPS.a.encodingAesKey/);
    expect(problems).toMatch(/KEFU_API_KEYS\[1\]/);
    for (const secret of secrets) expect(problems).not.toContain(secret);
  });

  it("security mode: safe with a key, else plaintext, or as given", () => {
    const vars = apps({
      keyed: { platform: "baidu", token: "t", encodingAesKey: KEY },
      plain: { platform: "baidu", token: "t" },
      compat: { platform: "wechat", token: "t", encodingAesKey: KEY, appId: "wx1", mode: "compatible" },
      downgraded: { platform: "baidu", token: "t", encodingAesKey: KEY, mode: "plaintext" },
    });
    expect(app(vars, "keyed").mode).toBe("safe");
    expect(app(vars, "plain").mode).toBe("plaintext");
    expect(app(vars, "compat").mode).toBe("compatible");
    expect(app(vars, "downgraded").mode).toBe("plaintext");
  });

  it("signature tolerance: 300 s by default, ≥ 1", () => {
    const ok = apps({ a: { platform: "baidu", token: "t" } });
    expect(configOf(ok).signatureToleranceSeconds).toBe(300);
    expect(configOf({ ...ok, KEFU_SIGNATURE_TOLERANCE_SECONDS: "60" }).signatureToleranceSeconds).toBe(60);
    expect(problemsOf({ ...ok, KEFU_SIGNATURE_TOLERANCE_SECONDS: "0" })).toEqual(["KEFU_SIGNATURE_TOLERANCE_SECONDS must be an integer ≥ 1"]);
  });

  it("WeChat sends with appId alone; Baidu needs its App Key", () => {
    const vars = apps({
      wx: { platform: "wechat", token: "t", appId: "wx0123456789abcdef", appSecret: "s" },
      wxOwn: { platform: "wechat", token: "t", appId: "wx0123456789abcdef", appKey: "wxother", appSecret: "s" },
      bd: { platform: "baidu", token: "t", appId: "16824785", appSecret: "s" },
    });
    const wx = app(vars, "wx");
    expect(wx.appKey).toBe("wx0123456789abcdef");
    const token = wx.rules.api.tokenRequest("https://wechat.test", { appKey: wx.appKey!, appSecret: wx.appSecret! }, false);
    return token.json().then((body) => {
      expect(body).toMatchObject({ appid: "wx0123456789abcdef", secret: "s" });
      expect(app(vars, "wxOwn").appKey).toBe("wxother");
      expect(app(vars, "bd").appKey).toBeUndefined();
    });
  });

  it("API keys: KEFU_API_KEY and KEFU_API_KEYS together, each a bearer token", () => {
    const ok = apps({ a: { platform: "baidu", token: "t" } });
    expect(configOf(ok).apiKeys).toEqual([]);
    expect(configOf({ ...ok, KEFU_API_KEY: "old-key", KEFU_API_KEYS: " new-key , other.key=,old-key," }).apiKeys).toEqual(["old-key", "new-key", "other.key="]);
    expect(problemsOf({ ...ok, KEFU_API_KEY: "has space" })).toEqual(["KEFU_API_KEY is not a bearer token: use only A-Z a-z 0-9 - . _ ~ + / and = at the end"]);
    expect(problemsOf({ ...ok, KEFU_API_KEYS: "good,bad=key" })).toEqual([
      "KEFU_API_KEYS[1] is not a bearer token: use only A-Z a-z 0-9 - . _ ~ + / and = at the end",
    ]);
  });

  it("CORS origins: none by default, exact origins or *", () => {
    const ok = apps({ a: { platform: "baidu", token: "t" } });
    expect(configOf(ok).corsOrigins).toEqual([]);
    expect(configOf({ ...ok, KEFU_CORS_ORIGINS: "https://console.example, http://localhost:5173" }).corsOrigins).toEqual([
      "https://console.example",
      "http://localhost:5173",
    ]);
    expect(configOf({ ...ok, KEFU_CORS_ORIGINS: "*" }).corsOrigins).toEqual(["*"]);
    expect(problemsOf({ ...ok, KEFU_CORS_ORIGINS: "https://console.example/" })).toEqual([
      "KEFU_CORS_ORIGINS[0] must be origins such as https://console.example.com (no path, no trailing /), or *",
    ]);
  });
});
