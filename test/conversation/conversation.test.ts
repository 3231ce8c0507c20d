import { createExecutionContext, evictDurableObject, runDurableObjectAlarm, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { app as worker } from "../../src/app.ts";
import { conversation, type Conversation } from "../../src/conversation/conversation.ts";
import type { Env } from "../../src/env.ts";
import type { Fields } from "../../src/protocol/codec.ts";
import { queryString, sealPush } from "../../src/protocol/seal.ts";
import { testApps } from "../fixtures/apps.ts";
import { env, logsOf, sendPush, sleep, standIn, textPush, uniqueId, webhookDeliveries } from "../helpers.ts";

const bd = testApps["bd-shop"];

/** A safe-mode Baidu push, sealed once: retries carry the very same bytes. */
function sealed(fields: Fields) {
  const push = sealPush(fields, { token: bd.token, encodingAesKey: bd.encodingAesKey, trailingId: "20073496", mode: "safe", format: "json" });
  return () => new Request(`https://kefu.test/push/bd-shop${queryString(push.query)}`, { method: "POST", body: push.body });
}

const brokenKv = {
  get: () => Promise.reject(new Error("KV is down")),
  put: () => Promise.reject(new Error("KV is down")),
} as unknown as KVNamespace;

async function burst(request: () => Request, count: number, workerEnv: Env) {
  const ctx = createExecutionContext();
  const responses = await Promise.all(Array.from({ length: count }, () => worker.fetch(request(), workerEnv, ctx)));
  await waitOnExecutionContext(ctx);
  return Promise.all(responses.map(async (r) => `${r.status} ${await r.text()}`));
}

describe("exactly once", () => {
  for (const [label, kv] of [
    ["with KV", env.DEDUPE],
    ["with KV down", brokenKv],
  ] as const) {
    it(`a burst of identical pushes makes one history entry and one forward (${label})`, async () => {
      const fields = textPush({ ToUserName: bd.appId });
      const openid = fields.FromUserName as string;
      const answers = await burst(sealed(fields), 12, { ...env, DEDUPE: kv });
      expect(answers).toEqual(Array(12).fill("200 success"));

      await vi.waitFor(async () => expect(await webhookDeliveries(openid)).toHaveLength(1), { timeout: 5000 });
      await sleep(300); // and no second one follows
      const deliveries = await webhookDeliveries(openid);
      expect(deliveries).toHaveLength(1);
      expect(deliveries[0]).toMatchObject({ status: 204, verified: true });
      expect(deliveries[0]!.body).toMatchObject({ type: "message.received", data: { openid, msgId: fields.MsgId, content: "你好" } });

      const snapshot = await conversation(env, "bd-shop", openid).snapshot();
      expect(snapshot!.history).toHaveLength(1);
      expect(snapshot!.history[0]).toMatchObject({ direction: "in", forward: { status: "delivered", attempts: 1 } });
    });
  }

  it("answers a later retry from KV at the edge, without reaching the conversation", async () => {
    const fields = textPush({ ToUserName: bd.appId });
    const request = sealed(fields);
    expect(await burst(request, 1, env)).toEqual(["200 success"]);
    const kvKey = `bd-shop/${fields.FromUserName}/msg:${fields.MsgId}`;
    expect(await env.DEDUPE.get(kvKey)).toBe("1");
    const lines = await logsOf(() => burst(request, 3, env));
    expect(lines.filter((l) => l.event === "push").map((l) => [l.outcome, l.dedupedBy])).toEqual(Array(3).fill(["duplicate", "kv"]));
  });

  it("takes a retry the conversation already has, when KV missed it, as a duplicate", async () => {
    const fields = textPush({ ToUserName: bd.appId });
    const request = sealed(fields);
    await burst(request, 1, { ...env, DEDUPE: brokenKv });
    const lines = await logsOf(() => burst(request, 1, { ...env, DEDUPE: brokenKv }));
    expect(lines.find((l) => l.event === "push")).toMatchObject({ outcome: "duplicate", dedupedBy: "conversation" });
  });

  it("acknowledges but does not record a push older than the history kept (a replay)", async () => {
    const fields = textPush({ ToUserName: bd.appId, CreateTime: Math.floor(Date.now() / 1000) - 8 * 86_400 });
    const lines = await logsOf(async () => expect(await burst(sealed(fields), 1, env)).toEqual(["200 success"]));
    expect(lines.find((l) => l.event === "push")).toMatchObject({ outcome: "stale" });
    expect(await conversation(env, "bd-shop", fields.FromUserName as string).snapshot()).toBeNull();
  });

  it("de-duplicates events by sender + CreateTime", async () => {
    const openid = uniqueId("o");
    const t = Math.floor(Date.now() / 1000) - 10;
    const event = { ToUserName: "gh_x", FromUserName: openid, CreateTime: t, MsgType: "event", Event: "user_enter_tempsession", SessionFrom: "s" };
    for (let i = 0; i < 3; i++) expect(await (await sendPush(event, { app: "wx-sample", mode: "safe", format: "xml" })).text()).toBe("success");
    await sendPush({ ...event, CreateTime: t + 1 }, { app: "wx-sample", mode: "safe", format: "xml" });
    const snapshot = await conversation(env, "wx-sample", openid).snapshot();
    expect(snapshot!.history.map((h) => h.message!.createTime)).toEqual([t + 1, t]);
  });
});

describe("forwarding", () => {
  it("delivers a message acknowledged while the webhook was down once it is back", async () => {
    const fields = textPush({ ToUserName: bd.appId });
    const openid = fields.FromUserName as string;
    await standIn("/script", { platform: "webhook", match: openid, responses: [{ status: 503 }, { drop: true }] });
    expect(await burst(sealed(fields), 1, env)).toEqual(["200 success"]);

    await vi.waitFor(
      async () => {
        const snapshot = await conversation(env, "bd-shop", openid).snapshot();
        expect(snapshot!.history[0]!.forward).toMatchObject({ status: "delivered", attempts: 3 });
      },
      { timeout: 8000, interval: 100 },
    );
    const deliveries = await webhookDeliveries(openid);
    expect(deliveries.map((d) => d.status)).toEqual([503, null, 204]);
    // The same webhook-id every time, so the business can de-duplicate too.
    expect(new Set(deliveries.map((d) => d.headers["webhook-id"])).size).toBe(1);
  });

  it("marks a forward failed, visibly, when retries run out (dead-letter queue)", async () => {
    const fields = textPush({ ToUserName: bd.appId });
    const openid = fields.FromUserName as string;
    await standIn("/script", { platform: "webhook", match: openid, responses: Array(4).fill({ status: 500 }) });
    expect(await burst(sealed(fields), 1, env)).toEqual(["200 success"]);
    await vi.waitFor(
      async () => {
        const snapshot = await conversation(env, "bd-shop", openid).snapshot();
        expect(snapshot!.history[0]!.forward).toMatchObject({ status: "failed", error: "gave up: retries exhausted" });
      },
      { timeout: 8000, interval: 100 },
    );
    expect(await webhookDeliveries(openid)).toHaveLength(4);
  });
});

describe("reply window in the Durable Object", () => {
  it("opens on a message, survives eviction, and counts reservations", async () => {
    const fields = textPush({ ToUserName: bd.appId });
    const openid = fields.FromUserName as string;
    await burst(sealed(fields), 1, env);
    const stub = conversation(env, "bd-shop", openid);
    const before = await stub.quota();
    expect(before.remaining).toBe(5);
    expect(Date.parse(before.windowExpiresAt!)).toBeCloseTo((fields.CreateTime as number) * 1000 + 48 * 3_600_000, -4);

    await evictDurableObject(stub);
    expect(await stub.quota()).toEqual(before);

    for (let i = 0; i < 5; i++) expect((await stub.reserveReply("bd-shop", openid, uniqueId("rpl"), { reply: { type: "text", content: `r${i}` } })).ok).toBe(true);
    await evictDurableObject(stub);
    const over = await stub.reserveReply("bd-shop", openid, uniqueId("rpl"), { reply: { type: "text", content: "one too many" } });
    expect(over).toMatchObject({ ok: false, code: "quota_exhausted", quota: { remaining: 0 } });
  });

  it("ignores a platform refusal of a send made before the user wrote again", async () => {
    const first = textPush({ ToUserName: bd.appId });
    const openid = first.FromUserName as string;
    await burst(sealed(first), 1, env);
    const stub = conversation(env, "bd-shop", openid);
    const id = uniqueId("rpl");
    await runInDurableObject(stub, async (instance: Conversation) => {
      expect(instance.reserveReply("bd-shop", openid, id, { reply: { type: "text", content: "hi" } }).ok).toBe(true);
      expect(instance.beginSend(id, 60_000).state).toBe("claimed");
    });
    await sleep(5);
    await burst(sealed(textPush({ ToUserName: bd.appId, FromUserName: openid })), 1, env); // a new 48 h window
    await stub.finishSend(id, { status: "failed", release: false, window: "exhausted", error: { code: "quota_exhausted", platformCode: 90001, message: "" } });
    expect((await stub.quota()).remaining).toBe(4); // 5, less the one in flight when the user wrote
  });

  it("lets one consumer at a time hold a send; a lapsed claim can be taken over", async () => {
    const first = textPush({ ToUserName: bd.appId });
    const openid = first.FromUserName as string;
    await burst(sealed(first), 1, env);
    const id = uniqueId("rpl");
    await runInDurableObject(conversation(env, "bd-shop", openid), async (instance: Conversation) => {
      instance.reserveReply("bd-shop", openid, id, { reply: { type: "text", content: "hi" } });
      expect(instance.beginSend(id, 60_000)).toMatchObject({ state: "claimed", attempts: 1 });
      expect(instance.beginSend(id, 60_000)).toMatchObject({ state: "busy" });
      expect(instance.beginSend(id, 0)).toMatchObject({ state: "claimed", attempts: 2 });
      instance.finishSend(id, { status: "sent" });
      expect(instance.beginSend(id, 0)).toEqual({ state: "done" });
    });
  });

  it("is closed for a user who never wrote", async () => {
    const stub = conversation(env, "bd-shop", uniqueId("o"));
    expect(await stub.reserveReply("bd-shop", "x", uniqueId("rpl"), { reply: { type: "text", content: "hi" } })).toMatchObject({ ok: false, code: "window_closed" });
  });

  it("WeChat's tempsession event opens the short session window", async () => {
    const openid = uniqueId("o");
    const now = Math.floor(Date.now() / 1000);
    await sendPush({ ToUserName: "gh_x", FromUserName: openid, CreateTime: now, MsgType: "event", Event: "user_enter_tempsession" }, { app: "wx-sample", mode: "safe", format: "xml" });
    const quota = await conversation(env, "wx-sample", openid).quota();
    expect(quota.remaining).toBe(2);
    expect(Date.parse(quota.windowExpiresAt!)).toBe(now * 1000 + 60_000);
  });

  it("forgets history older than the retention, in the alarm", async () => {
    const fields = textPush({ ToUserName: bd.appId });
    const openid = fields.FromUserName as string;
    await burst(sealed(fields), 1, env);
    const stub = conversation(env, "bd-shop", openid);
    await vi.waitFor(async () => expect((await stub.snapshot())!.history[0]!.forward!.status).toBe("delivered"));
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec("UPDATE inbound SET received_at = received_at - 8 * 86400000");
    });
    await runDurableObjectAlarm(stub);
    expect((await stub.snapshot())!.history).toEqual([]);
  });
});
