import { type Doc, expectDocumented as expectDocumentedIn, loadDocument, pointer, validate as validateIn } from "./document.ts";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { app } from "../src/app.ts";
import { testApps } from "./fixtures/apps.ts";
import { api, env, standIn, textPush, sendPush, uniqueId, userWrites, webhookDeliveries } from "./helpers.ts";

/**
 * The document is checked against the app itself: its route table, its real answers and real
 * webhook deliveries, validated by an independent JSON Schema validator (not by the zod schemas the
 * document came from, which would agree with themselves whatever the generator dropped).
 */

let doc: Doc;

beforeAll(async () => {
  doc = await loadDocument();
});

const validate = (ref: string, instance: unknown) => validateIn(doc, ref, instance);
const expectDocumented = (method: string, path: string, answer: { status: number; body: unknown }) => expectDocumentedIn(doc, method, path, answer);

describe("GET /openapi.json", () => {
  it("is OpenAPI 3.1 and lists every /api route of the app's own route table", () => {
    expect(doc.openapi).toBe("3.1.0");
    const routes = new Set(
      app.routes.filter((r) => r.path.startsWith("/api/") && r.method !== "ALL").map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:([^/]+)/g, "{$1}")}`),
    );
    expect(routes.size).toBeGreaterThanOrEqual(4);
    const documented = new Set(Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((m) => `${m} ${path}`)));
    for (const route of routes) expect(documented, route).toContain(route);
    for (const operation of documented) expect(routes, operation).toContain(operation);
    // Every route says how it refuses a caller without the key, and what a disabled API answers.
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(item))
        expect(Object.keys(operation.responses), `${method} ${path}`).toEqual(expect.arrayContaining(["401", "503"]));
    }
  });

  it("says which platform takes which reply type, from the platforms' data", () => {
    const description = doc.components.schemas.ReplyBody!.description!;
    expect(description).toContain("Baidu: text (content), image (picUrl)");
    expect(description).toContain("WeChat: text (content), image (mediaId), link (title, description, url, thumbUrl)");
  });

  it("the validator is not vacuous: a wrong answer fails the schema", () => {
    const ref = pointer("paths", "/api/apps/{app}/messages", "post", "responses", "202", "content", "application/json", "schema");
    expect(validate(ref, { id: "rpl_x", status: "queued", quota: { remaining: 4, windowExpiresAt: null } }).valid).toBe(true);
    expect(validate(ref, { id: "rpl_x", status: "sent", quota: { remaining: 4, windowExpiresAt: null } }).valid).toBe(false);
    expect(validate(ref, { id: "rpl_x", status: "queued", quota: { remaining: 4, windowExpiresAt: null }, extra: 1 }).valid).toBe(false);
  });
});

describe("real answers fit the document", () => {
  it("POST messages: 202, 400, 401, 404, 409, 422", async () => {
    const messages = "/api/apps/{app}/messages";
    const openid = await userWrites("bd-shop");
    const body = { openid, type: "text", content: "您好" };
    const key = { "idempotency-key": uniqueId("k") };
    expectDocumented("post", messages, await api("POST", "/apps/bd-shop/messages", body, key));
    expectDocumented("post", messages, await api("POST", "/apps/bd-shop/messages", { ...body, content: "other" }, key)); // 422
    expectDocumented("post", messages, await api("POST", "/apps/bd-shop/messages", { ...body, openid: uniqueId("o") })); // 409
    expectDocumented("post", messages, await api("POST", "/apps/bd-shop/messages", { ...body, type: "video" })); // 400
    expectDocumented("post", messages, await api("POST", "/apps/bd-shop/messages", "{oops")); // 400, not JSON
    expectDocumented("post", messages, await api("POST", "/apps/nope/messages", body)); // 404
    const unauthorized = await api("POST", "/apps/bd-shop/messages", body, { authorization: "Bearer wrong" });
    expect(unauthorized.status).toBe(401);
    expectDocumented("post", messages, unauthorized);
  });

  it("GET a reply, a conversation and the list: 200 and 404", async () => {
    const openid = await userWrites("wx-sample");
    const sent = await api("POST", "/apps/wx-sample/messages", { openid, type: "text", content: "hi" });
    expect(sent.status).toBe(202);
    const reply = await api("GET", `/apps/wx-sample/messages/${sent.body.id}`);
    expect(reply.status).toBe(200);
    expectDocumented("get", "/api/apps/{app}/messages/{id}", reply);
    expectDocumented("get", "/api/apps/{app}/messages/{id}", await api("GET", "/apps/wx-sample/messages/rpl_nope"));
    const snapshot = await api("GET", `/apps/wx-sample/conversations/${openid}`);
    expect(snapshot.body.history.map((h: { direction: string }) => h.direction)).toEqual(["out", "in"]);
    expectDocumented("get", "/api/apps/{app}/conversations/{openid}", snapshot);
    expectDocumented("get", "/api/apps/{app}/conversations/{openid}", await api("GET", `/apps/wx-sample/conversations/${uniqueId("o")}`));
    expectDocumented("get", "/api/apps/{app}/conversations/{openid}", await api("GET", `/apps/wx-sample/conversations/${openid}?limit=0`));
    const page = await vi.waitFor(async () => {
      const answer = await api("GET", "/apps/wx-sample/conversations?limit=1");
      expect(answer.body.conversations).toHaveLength(1);
      return answer;
    });
    expectDocumented("get", "/api/apps/{app}/conversations", page);
  });

  it("a real webhook delivery fits the document's message.received payload", async () => {
    const openid = await userWrites("bd-plain");
    const [delivery] = await vi.waitFor(async () => {
      const deliveries = await webhookDeliveries(openid);
      expect(deliveries).toHaveLength(1);
      return deliveries;
    });
    expect(delivery!.body).toMatchObject({ type: "message.received", data: { openid, type: "text" } });
    const ref = pointer("webhooks", "message.received", "post", "requestBody", "content", "application/json", "schema");
    const result = validate(ref, delivery!.body);
    expect(result.valid, JSON.stringify(result.errors.slice(-3))).toBe(true);
    const { openid: _dropped, ...incomplete } = delivery!.body.data;
    expect(validate(ref, { ...delivery!.body, data: incomplete }).valid).toBe(false);
  });

  it("real message.sent and message.failed deliveries fit the document's payloads", async () => {
    const openid = await userWrites("bd-shop");
    await standIn("/script", { platform: "baidu", kind: "send", match: openid, responses: [{ body: { errno: 30022, msg: "invalid openid" } }] });
    await api("POST", "/apps/bd-shop/messages", { openid, type: "text", content: "refused" });
    const failed = await vi.waitFor(
      async () => {
        const found = (await webhookDeliveries(openid)).find((d) => d.body.type === "message.failed");
        expect(found).toBeDefined();
        return found!;
      },
      { timeout: 8000 },
    );
    await api("POST", "/apps/bd-shop/messages", { openid, type: "text", content: "ok" });
    const sent = await vi.waitFor(
      async () => {
        const found = (await webhookDeliveries(openid)).find((d) => d.body.type === "message.sent");
        expect(found).toBeDefined();
        return found!;
      },
      { timeout: 8000 },
    );
    for (const delivery of [failed, sent]) {
      const ref = pointer("webhooks", delivery.body.type, "post", "requestBody", "content", "application/json", "schema");
      const result = validate(ref, delivery.body);
      expect(result.valid, JSON.stringify(result.errors.slice(-3))).toBe(true);
    }
    const { error: _dropped, ...incomplete } = failed.body.data;
    expect(
      validate(pointer("webhooks", "message.failed", "post", "requestBody", "content", "application/json", "schema"), { ...failed.body, data: incomplete })
        .valid,
    ).toBe(false);
  });
});

describe("real answers of the forward routes fit the document", () => {
  it("GET forwards and POST redrive: 200, 400, 404, and 503 for a broken app", async () => {
    const list = "/api/apps/{app}/forwards";
    const redrive = "/api/apps/{app}/forwards/redrive";
    const openid = uniqueId("o");
    await standIn("/script", { platform: "webhook", match: openid, responses: Array(4).fill({ status: 500 }) });
    await sendPush(textPush({ FromUserName: openid }), { app: "bd-plain" });
    const failed = await vi.waitFor(
      async () => {
        const answer = await api("GET", "/apps/bd-plain/forwards?status=failed");
        expect(answer.body.forwards.some((f: { openid: string }) => f.openid === openid)).toBe(true);
        return answer;
      },
      { timeout: 8000 },
    );
    expectDocumented("get", list, failed);
    expectDocumented("get", list, await api("GET", "/apps/bd-plain/forwards?status=pending"));
    expectDocumented("get", list, await api("GET", "/apps/bd-plain/forwards?status=lost"));
    expectDocumented("get", list, await api("GET", "/apps/nope/forwards"));
    expectDocumented("post", redrive, await api("POST", "/apps/bd-plain/forwards/redrive", {}));
    expectDocumented("post", redrive, await api("POST", "/apps/bd-plain/forwards/redrive", { msgIds: ["1"] }));
    expectDocumented("post", redrive, await api("POST", "/apps/bd-plain/forwards/redrive", { msgIds: "1" }));
    expectDocumented("post", redrive, await api("POST", "/apps/nope/forwards/redrive", {}));
    // An app whose entry is broken: 503 config_invalid, as documented.
    const broken = { ...env, KEFU_APPS: JSON.stringify({ ...testApps, "bd-plain": { platform: "baidu" } }) };
    const response = await app.fetch(
      new Request("https://kefu.test/api/apps/bd-plain/forwards", { headers: { authorization: "Bearer test-api-key" } }),
      broken,
    );
    const answer = { status: response.status, body: await response.json() };
    expect(answer).toMatchObject({ status: 503, body: { error: { code: "config_invalid" } } });
    expectDocumented("get", list, answer);
  });
});
