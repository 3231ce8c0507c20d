import { describe, expect, it } from "vitest";
import { exports } from "cloudflare:workers";
import { testApps } from "./fixtures/apps.ts";

const get = (path: string) => exports.default.fetch(new Request(`https://kefu.test${path}`));

describe("service routes", () => {
  it("GET /health names the apps and what they can do, never a secret", async () => {
    const response = await get("/health");
    expect(response.status).toBe(200);
    const body = (await response.json()) as { ok: boolean; apps: { name: string }[] };
    expect(body).toMatchObject({ ok: true, api: true, webhook: { signed: true } });
    expect(body.apps.map((a) => a.name).sort()).toEqual(Object.keys(testApps).sort());
    expect(body.apps.find((a) => a.name === "bd-shop")).toEqual({ name: "bd-shop", platform: "baidu", encrypted: true, canSend: true });
    const text = JSON.stringify(body);
    for (const app of Object.values(testApps) as { token: string; appSecret?: string }[]) {
      expect(text).not.toContain(app.token);
      if (app.appSecret) expect(text).not.toContain(app.appSecret);
    }
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
