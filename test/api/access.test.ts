import { describe, expect, it } from "vitest";
import { app } from "../../src/app.ts";
import type { Env } from "../../src/env.ts";
import { env } from "../helpers.ts";

/** The Worker with some variables changed (the bindings stay). */
function call(vars: Partial<Env>, path: string, init: RequestInit = {}) {
  return app.fetch(new Request(`https://kefu.test${path}`, init), { ...env, ...vars });
}

const list = "/api/apps/bd-plain/conversations?limit=1";
const bearer = (key: string) => ({ headers: { authorization: `Bearer ${key}` } });

describe("API keys (Hono's bearerAuth)", () => {
  it("accepts KEFU_API_KEY and every key of KEFU_API_KEYS, so a key can be rotated", async () => {
    const vars = { KEFU_API_KEY: "old-key", KEFU_API_KEYS: "new-key,next-key" };
    for (const key of ["old-key", "new-key", "next-key"]) expect((await call(vars, list, bearer(key))).status, key).toBe(200);
    expect((await call(vars, list, bearer("test-api-key"))).status).toBe(401);
    // The old key retired: only the new ones open the API.
    const rotated = { KEFU_API_KEY: "", KEFU_API_KEYS: "new-key" };
    expect((await call(rotated, list, bearer("old-key"))).status).toBe(401);
    expect((await call(rotated, list, bearer("new-key"))).status).toBe(200);
  });

  it("401 in the API's shape with WWW-Authenticate, whatever is wrong; the scheme in any case", async () => {
    const cases: [RequestInit, RegExp][] = [
      [{}, /^Bearer realm=""/],
      [bearer("wrong-key"), /^Bearer error="invalid_token"/],
      [{ headers: { authorization: "Basic dXNlcjpwYXNz" } }, /^Bearer error="invalid_request"/],
      [{ headers: { authorization: "Bearer not a token" } }, /^Bearer error="invalid_request"/],
    ];
    for (const [init, challenge] of cases) {
      const response = await call({}, list, init);
      expect(response.status, JSON.stringify(init)).toBe(401);
      expect(response.headers.get("www-authenticate")).toMatch(challenge);
      const body = (await response.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe("unauthorized");
      expect(body.error.message).toMatch(/Authorization: Bearer/);
    }
    for (const scheme of ["bearer", "BEARER", "Bearer"]) {
      expect((await call({}, list, { headers: { authorization: `${scheme} test-api-key` } })).status, scheme).toBe(200);
    }
  });

  it("503 without any key, and when a configured key is not a bearer token", async () => {
    const none = await call({ KEFU_API_KEY: "" }, list, bearer("test-api-key"));
    expect(none.status).toBe(503);
    expect(await none.json()).toMatchObject({ error: { code: "config_invalid", message: "the API is disabled: KEFU_API_KEY and KEFU_API_KEYS are not set" } });
    const bad = await call({ KEFU_API_KEYS: "spaces are not allowed" }, list, bearer("test-api-key"));
    expect(bad.status).toBe(503);
    expect(((await bad.json()) as { error: { message: string } }).error.message).not.toContain("spaces");
  });

  it("an authenticated caller gets the configuration's problems by field", async () => {
    const response = await call({ KEFU_HISTORY_DAYS: "0" }, list, bearer("test-api-key"));
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({
      error: { code: "config_invalid", message: "configuration is invalid: KEFU_HISTORY_DAYS must be an integer ≥ 1" },
    });
    expect((await call({ KEFU_HISTORY_DAYS: "0" }, list)).status).toBe(401);
  });
});

describe("CORS (Hono's cors)", () => {
  const preflight = (origin: string) => ({
    method: "OPTIONS",
    headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type, idempotency-key" },
  });

  it("is off by default", async () => {
    const response = await call({}, "/api/apps/bd-plain/messages", preflight("https://console.example"));
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
    const get = await call({}, list, { headers: { origin: "https://console.example", authorization: "Bearer test-api-key" } });
    expect(get.status).toBe(200);
    expect(get.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("answers the preflight of an allowed origin without a key, and marks its answers", async () => {
    const vars = { KEFU_CORS_ORIGINS: "https://console.example,http://localhost:5173" };
    const response = await call(vars, "/api/apps/bd-plain/messages", preflight("https://console.example"));
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-origin")).toBe("https://console.example");
    expect(response.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("authorization");
    expect(response.headers.get("access-control-allow-methods")).toContain("POST");
    const get = await call(vars, list, { headers: { origin: "http://localhost:5173", authorization: "Bearer test-api-key" } });
    expect(get.status).toBe(200);
    expect(get.headers.get("access-control-allow-origin")).toBe("http://localhost:5173");
    expect(get.headers.get("access-control-expose-headers")).toContain("Idempotent-Replayed");
    const refused = await call(vars, list, { headers: { origin: "https://evil.example", authorization: "Bearer test-api-key" } });
    expect(refused.headers.get("access-control-allow-origin")).toBeNull();
    // A refusal carries the header too, so the page can read why.
    const unauthorized = await call(vars, list, { headers: { origin: "https://console.example" } });
    expect(unauthorized.status).toBe(401);
    expect(unauthorized.headers.get("access-control-allow-origin")).toBe("https://console.example");
  });
});
