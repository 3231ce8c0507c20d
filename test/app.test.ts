import { describe, expect, it } from "vitest";
import { exports } from "cloudflare:workers";
import { testApps } from "./fixtures/apps.ts";

const get = (path: string, headers: Record<string, string> = {}) => exports.default.fetch(new Request(`https://kefu.test${path}`, { headers }));

describe("service routes", () => {
  it("GET /health says only ok without the API key", async () => {
    const response = await get("/health");
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ ok: true });
  });

  it("GET /health with the API key names the apps and what they can do, never a secret", async () => {
    const response = await get("/health", { authorization: "bearer test-api-key" });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { ok: boolean; apps: { name: string }[] };
    expect(body).toMatchObject({ ok: true, api: true, webhook: { signed: true } });
    expect(body.apps.map((a) => a.name).sort()).toEqual(Object.keys(testApps).sort());
    expect(body.apps.find((a) => a.name === "bd-shop")).toEqual({ name: "bd-shop", platform: "baidu", mode: "safe", encrypted: true, canSend: true });
    expect(body.apps.find((a) => a.name === "wx-doc")).toMatchObject({ mode: "plaintext", encrypted: false, canSend: false });
    const text = JSON.stringify(body);
    for (const app of Object.values(testApps) as { token: string; appSecret?: string }[]) {
      expect(text).not.toContain(app.token);
      if (app.appSecret) expect(text).not.toContain(app.appSecret);
    }
  });

  it("GET /health with a wrong API key is 401, in the API's shape", async () => {
    const response = await get("/health", { authorization: "Bearer not-the-key" });
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toMatch(/^Bearer error="invalid_token"/);
    expect(await response.json()).toMatchObject({ error: { code: "unauthorized" } });
  });

  it("serves the OpenAPI document", async () => {
    const body = (await (await get("/openapi.json")).json()) as { openapi: string; paths: Record<string, unknown> };
    expect(body.openapi).toBe("3.1.0");
    expect(Object.keys(body.paths)).toContain("/api/apps/{app}/messages");
  });

  it("404s unknown routes with JSON", async () => {
    const response = await get("/nope");
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: { code: "not_found" } });
  });
});
