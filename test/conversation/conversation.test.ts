import { createExecutionContext, evictDurableObject, runDurableObjectAlarm, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { app as worker } from "../../src/app.ts";
import { conversation, DIRECTORY_QUIET_MS, type Conversation } from "../../src/conversation/conversation.ts";
import type { Env } from "../../src/env.ts";
import type { Fields } from "../../src/protocol/codec.ts";
import { queryString, sealPush } from "../../src/protocol/seal.ts";
import { testApps } from "../fixtures/apps.ts";
import { env, logsOf, sendPush, sleep, standIn, textPush, uniqueId, webhookDeliveries, received } from "../helpers.ts";

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

/** KV that counts its reads and records the keys written through it. */
function countingKv(kv: KVNamespace) {
  const puts: string[] = [];
  const counted = {
    puts,
    gets: 0,
    get: (key: string) => {
      counted.gets++;
      return kv.get(key);
    },
    put: (key: string, value: string, options?: KVNamespacePutOptions) => {
      puts.push(key);
      return kv.put(key, value, options);
    },
  };
  return counted as unknown as KVNamespace & { puts: string[]; gets: number };
}

async function burst(request: () => Request, count: number, workerEnv: Env) {
  const ctx = createExecutionContext();
  const responses = await Promise.all(Array.from({ length: count }, () => worker.fetch(request(), workerEnv, ctx)));
  await waitOnExecutionContext(ctx);
  return Promise.all(responses.map(async (r) => `${r.status} ${await r.text()}`));
}

const listed = async (openid: string) => (await env.DIRECTORY.getByName("bd-shop").list(1000)).conversations.find((c) => c.openid === openid)?.lastActiveAt;

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

  it("writes KV only once a message is retried: the conversation answers the first retry, KV the later ones", async () => {
    const fields = textPush({ ToUserName: bd.appId, CreateTime: Math.floor(Date.now() / 1000) - 10 }); // retries come seconds later
    const request = sealed(fields);
    const kv = countingKv(env.DEDUPE);
    expect(await burst(request, 1, { ...env, DEDUPE: kv })).toEqual(["200 success"]);
    expect(kv.puts).toEqual([]); // a unique push costs no KV write

    const first = await logsOf(() => burst(request, 1, { ...env, DEDUPE: kv }));
    expect(first.find((l) => l.event === "push")).toMatchObject({ outcome: "duplicate", dedupedBy: "conversation" });
    const kvKey = `bd-shop/${fields.FromUserName}/msg:${fields.MsgId}`;
    expect(kv.puts).toEqual([kvKey]);
    expect(await env.DEDUPE.get(kvKey)).toBe("1");

    const later = await logsOf(() => burst(request, 3, { ...env, DEDUPE: kv }));
    expect(later.filter((l) => l.event === "push").map((l) => [l.outcome, l.dedupedBy])).toEqual(Array(3).fill(["duplicate", "kv"]));
    expect(kv.puts).toHaveLength(1);
  });

  it("asks KV only about a push old enough to be a retry", async () => {
    const kv = countingKv(env.DEDUPE);
    await burst(sealed(textPush({ ToUserName: bd.appId })), 1, { ...env, DEDUPE: kv });
    expect(kv.gets).toBe(0); // just written: a first delivery, the platform has not timed out yet
    await burst(sealed(textPush({ ToUserName: bd.appId, CreateTime: Math.floor(Date.now() / 1000) - 6 })), 1, { ...env, DEDUPE: kv });
    expect(kv.gets).toBe(1);
  });

  it("writes KV once for a burst of retries that all miss it", async () => {
    const fields = textPush({ ToUserName: bd.appId });
    const kv = countingKv(env.DEDUPE);
    expect(await burst(sealed(fields), 8, { ...env, DEDUPE: kv })).toEqual(Array(8).fill("200 success"));
    expect(kv.puts).toHaveLength(1);
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
    expect(received(snapshot!.history).map((h) => h.message.createTime)).toEqual([t + 1, t]);
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
        expect(received(snapshot!.history)[0]!.forward).toMatchObject({ status: "delivered", attempts: 3 });
      },
      { timeout: 8000, interval: 100 },
    );
    const deliveries = await webhookDeliveries(openid);
    expect(deliveries.map((d) => d.status)).toEqual([503, null, 204]);
    // The same webhook-id every time, so the business can de-duplicate too.
    expect(new Set(deliveries.map((d) => d.headers["webhook-id"])).size).toBe(1);
  });

  it("marks a forward failed, visibly, when its attempts (KEFU_FORWARD_ATTEMPTS) run out", async () => {
    const fields = textPush({ ToUserName: bd.appId });
    const openid = fields.FromUserName as string;
    await standIn("/script", { platform: "webhook", match: openid, responses: Array(4).fill({ status: 500 }) });
    expect(await burst(sealed(fields), 1, env)).toEqual(["200 success"]);
    await vi.waitFor(
      async () => {
        const snapshot = await conversation(env, "bd-shop", openid).snapshot();
        // KEFU_FORWARD_ATTEMPTS is 4 in the tests
        expect(received(snapshot!.history)[0]!.forward).toMatchObject({
          status: "failed",
          attempts: 4,
          error: "gave up after 4 attempts: webhook answered HTTP 500",
        });
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

    for (let i = 0; i < 5; i++)
      expect((await stub.reserveReply("bd-shop", openid, uniqueId("rpl"), { reply: { type: "text", content: `r${i}` } })).ok).toBe(true);
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
    const token = await runInDurableObject(stub, async (instance: Conversation) => {
      expect(instance.reserveReply("bd-shop", openid, id, { reply: { type: "text", content: "hi" } }).ok).toBe(true);
      const claim = instance.beginSend(id, 60_000);
      if (claim.state !== "claimed") throw new Error("not claimed");
      return claim.token;
    });
    await sleep(5);
    await burst(sealed(textPush({ ToUserName: bd.appId, FromUserName: openid })), 1, env); // a new 48 h window
    await stub.finishSend(id, token, {
      status: "failed",
      release: false,
      window: "exhausted",
      error: { code: "quota_exhausted", platformCode: 90001, message: "" },
    });
    expect((await stub.quota()).remaining).toBe(4); // 5, less the one in flight when the user wrote
  });

  it("lets one consumer at a time hold a send; a lapsed claim can be taken over", async () => {
    const first = textPush({ ToUserName: bd.appId });
    const openid = first.FromUserName as string;
    await burst(sealed(first), 1, env);
    const id = uniqueId("rpl");
    await runInDurableObject(conversation(env, "bd-shop", openid), async (instance: Conversation) => {
      instance.reserveReply("bd-shop", openid, id, { reply: { type: "text", content: "hi" } });
      const first = instance.beginSend(id, 50);
      expect(first).toMatchObject({ state: "claimed", attempts: 1 });
      expect(instance.beginSend(id, 60_000)).toMatchObject({ state: "busy" });
      await sleep(60); // the first claim lapses
      const second = instance.beginSend(id, 60_000);
      expect(second).toMatchObject({ state: "claimed", attempts: 2 });
      if (first.state !== "claimed" || second.state !== "claimed") throw new Error("not claimed");
      // The lapsed holder's result is not recorded: the second holder's is.
      expect(instance.finishSend(id, first.token, { status: "sent" })).toMatchObject({ status: "sending" });
      expect(instance.finishSend(id, second.token, { status: "sent" })).toMatchObject({ status: "sent" });
      expect(instance.beginSend(id, 0)).toEqual({ state: "done" });
    });
  });

  it("is closed for a user who never wrote", async () => {
    const stub = conversation(env, "bd-shop", uniqueId("o"));
    expect(await stub.reserveReply("bd-shop", "x", uniqueId("rpl"), { reply: { type: "text", content: "hi" } })).toMatchObject({
      ok: false,
      code: "window_closed",
    });
  });

  it("WeChat's tempsession event opens the short session window", async () => {
    const openid = uniqueId("o");
    const now = Math.floor(Date.now() / 1000);
    await sendPush(
      { ToUserName: "gh_x", FromUserName: openid, CreateTime: now, MsgType: "event", Event: "user_enter_tempsession" },
      { app: "wx-sample", mode: "safe", format: "xml" },
    );
    const quota = await conversation(env, "wx-sample", openid).quota();
    expect(quota.remaining).toBe(2);
    expect(Date.parse(quota.windowExpiresAt!)).toBe(now * 1000 + 60_000);
  });

  it("forgets history older than the retention, in the alarm", async () => {
    const fields = textPush({ ToUserName: bd.appId });
    const openid = fields.FromUserName as string;
    await burst(sealed(fields), 1, env);
    const stub = conversation(env, "bd-shop", openid);
    await vi.waitFor(async () => expect(received((await stub.snapshot())!.history)[0]!.forward!.status).toBe("delivered"));
    await vi.waitFor(async () => expect(await listed(openid)).toBeDefined());
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec("UPDATE messages SET received_at = received_at - 8 * 86400000");
    });
    await runDurableObjectAlarm(stub);
    expect(await stub.snapshot()).toBeNull();
    // Nothing left: the storage is deleted whole (no rows, no alarm), and the Directory forgets it.
    await runInDurableObject(stub, async (_instance, state) => {
      for (const table of ["messages", "replies", "conversation", "handoffs"]) {
        expect(state.storage.sql.exec<{ n: number }>(`SELECT count(*) AS n FROM ${table}`).one().n).toBe(0);
      }
      expect(await state.storage.getAlarm()).toBeNull();
    });
    expect(await listed(openid)).toBeUndefined();
    // And it works again as new when the user comes back.
    await burst(sealed(textPush({ ToUserName: bd.appId, FromUserName: openid })), 1, env);
    expect(received((await stub.snapshot())!.history)).toHaveLength(1);
  });
});

describe("work per push", () => {
  it("tells the Directory of a new conversation, not of a second push within the quiet period, again after it", async () => {
    const first = textPush({ ToUserName: bd.appId });
    const openid = first.FromUserName as string;
    await burst(sealed(first), 1, env);
    await vi.waitFor(async () => expect(await listed(openid)).toBeDefined());
    const listedFirst = await listed(openid);

    await sleep(5);
    await burst(sealed(textPush({ ToUserName: bd.appId, FromUserName: openid })), 1, env);
    const stub = conversation(env, "bd-shop", openid);
    await sleep(200);
    expect(await listed(openid)).toBe(listedFirst); // not touched
    expect(Date.parse((await stub.snapshot())!.lastActiveAt!)).toBeGreaterThan(Date.parse(listedFirst!)); // the conversation knows

    // Quiet for longer than DIRECTORY_QUIET_MS: the next push is listed again.
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec("UPDATE conversation SET listed_at = listed_at - ?", DIRECTORY_QUIET_MS);
    });
    await burst(sealed(textPush({ ToUserName: bd.appId, FromUserName: openid })), 1, env);
    await vi.waitFor(async () => expect(Date.parse((await listed(openid))!)).toBeGreaterThan(Date.parse(listedFirst!)));
  });

  it("keeps no AUTOINCREMENT bookkeeping and no outbox rows after a push and a reply", async () => {
    const fields = textPush({ ToUserName: bd.appId });
    const openid = fields.FromUserName as string;
    await burst(sealed(fields), 1, env);
    const stub = conversation(env, "bd-shop", openid);
    expect((await stub.reserveReply("bd-shop", openid, uniqueId("rpl"), { reply: { type: "text", content: "hi" } })).ok).toBe(true);
    await runInDurableObject(stub, (_instance, state) => {
      const tables = state.storage.sql
        .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")
        .toArray()
        .map((t) => t.name);
      expect(tables).not.toContain("sqlite_sequence");
      expect(state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM handoffs").one().n).toBe(0); // handed on directly
    });
  });

  it("lets one consumer at a time hold a forward, in one session with its result", async () => {
    const stub = conversation(env, "bd-shop", uniqueId("o"));
    const fields = textPush({ ToUserName: bd.appId });
    await runInDurableObject(stub, async (instance: Conversation, state) => {
      const message = {
        platform: "baidu",
        app: "bd-shop",
        openid: fields.FromUserName,
        createTime: fields.CreateTime,
        type: "text",
        msgId: fields.MsgId,
        content: "hi",
        raw: {},
      } as never;
      instance.accept(message, { forward: false });
      state.storage.sql.exec("UPDATE messages SET forward = 'pending'"); // as if forwarded, without a queue job
      const key = `msg:${fields.MsgId}`;
      const claim = instance.claimForward(key, 60_000, 60_000);
      expect(claim).toMatchObject({ state: "claimed", attempts: 1 });
      expect(instance.claimForward(key, 60_000, 60_000)).toMatchObject({ state: "busy" });
      if (claim.state !== "claimed") throw new Error("not claimed");
      claim.attempt.finish({ status: "pending", error: "webhook answered HTTP 503", retryAt: Date.now() });
      const again = instance.claimForward(key, 60_000, 60_000);
      expect(again).toMatchObject({ state: "claimed", attempts: 2 });
      if (again.state === "claimed") again.attempt.finish({ status: "delivered" });
      expect(instance.claimForward(key, 60_000, 60_000)).toEqual({ state: "done" });
    });
  });

  it("hands on, in the first alarm after a restart, a forward a crash kept from the queue", async () => {
    const fields = textPush({ ToUserName: bd.appId });
    const openid = fields.FromUserName as string;
    await burst(sealed(fields), 1, env);
    await vi.waitFor(async () => expect(await webhookDeliveries(openid)).toHaveLength(1));
    const stub = conversation(env, "bd-shop", openid);
    // As if an earlier instance committed a message and died before handing its forward on.
    const lost = { ...JSON.parse(JSON.stringify(received((await stub.snapshot())!.history)[0]!.message)), msgId: "1", content: "lost" };
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec(
        "INSERT INTO messages (key, received_at, message, forward) VALUES ('msg:1', ?, ?, 'pending')",
        Date.now() - 60_000,
        JSON.stringify(lost),
      );
    });
    await evictDurableObject(stub);
    await runDurableObjectAlarm(stub);
    await vi.waitFor(async () => expect((await webhookDeliveries(openid)).map((d) => d.body.data.content)).toEqual(["你好", "lost"]), { timeout: 5000 });
  });

  it("moves storage of the first version to the new tables", async () => {
    const openid = uniqueId("o");
    const stub = conversation(env, "bd-shop", openid);
    const message = { platform: "baidu", app: "bd-shop", openid, createTime: 1, type: "text", msgId: "7", content: "old", raw: {} };
    await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      sql.exec("DROP TABLE messages; DROP TABLE handoffs; DROP TABLE conversation;");
      sql.exec(`
        CREATE TABLE conversation (id INTEGER PRIMARY KEY CHECK (id = 1), app TEXT NOT NULL, openid TEXT NOT NULL,
          window_expires_at INTEGER NOT NULL DEFAULT 0, replies_remaining INTEGER NOT NULL DEFAULT 0,
          replies_allowed INTEGER NOT NULL DEFAULT 0, window_granted_at INTEGER NOT NULL DEFAULT 0, last_active_at INTEGER);
        CREATE TABLE inbound (key TEXT PRIMARY KEY, received_at INTEGER NOT NULL, message TEXT NOT NULL, forward TEXT,
          forward_attempts INTEGER NOT NULL DEFAULT 0, forward_claimed_at INTEGER, forward_error TEXT);
        CREATE INDEX inbound_by_time ON inbound (received_at);
        CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, item TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0);
      `);
      sql.exec("INSERT INTO conversation (id, app, openid, last_active_at) VALUES (1, 'bd-shop', ?, ?)", openid, Date.now());
      sql.exec(
        "INSERT INTO inbound (key, received_at, message, forward, forward_attempts) VALUES ('msg:7', ?, ?, 'delivered', 1)",
        Date.now(),
        JSON.stringify(message),
      );
      sql.exec("INSERT INTO outbox (item) VALUES (?)", JSON.stringify({ target: "directory", at: Date.now() }));
    });
    await evictDurableObject(stub);
    const snapshot = await stub.snapshot();
    expect(snapshot!.history).toEqual([expect.objectContaining({ message, forward: { status: "delivered", attempts: 1 } })]);
    await runInDurableObject(stub, (_instance, state) => {
      const tables = state.storage.sql
        .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")
        .toArray()
        .map((t) => t.name);
      expect(tables).not.toContain("inbound");
      expect(tables).not.toContain("outbox");
      expect(state.storage.sql.exec<{ item: string }>("SELECT item FROM handoffs").toArray()).toHaveLength(1);
    });
    await runDurableObjectAlarm(stub); // the kept hand-off is retried
    await vi.waitFor(async () => expect(await listed(openid)).toBeDefined());
  });
});

describe("hand-off fallbacks", () => {
  it("keeps a forward the queue refused in the outbox, and the alarm hands it on", async () => {
    const fields = textPush({ ToUserName: bd.appId });
    const openid = fields.FromUserName as string;
    const stub = conversation(env, "bd-shop", openid);
    const message = {
      platform: "baidu",
      app: "bd-shop",
      openid,
      to: bd.appId,
      createTime: fields.CreateTime,
      type: "text",
      msgId: fields.MsgId,
      content: "你好",
      raw: {},
    } as never;
    await runInDurableObject(stub, async (instance: Conversation, state) => {
      const forwards = (instance as unknown as { env: Env }).env.FORWARDS;
      const send = forwards.send;
      forwards.send = () => Promise.reject(new Error("queue unavailable"));
      try {
        expect(instance.accept(message, { forward: true })).toEqual({ accepted: true });
        await vi.waitFor(() => expect(state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM handoffs").one().n).toBe(1));
      } finally {
        forwards.send = send;
      }
    });
    expect(await webhookDeliveries(openid)).toHaveLength(0);
    await runDurableObjectAlarm(stub);
    await vi.waitFor(async () => expect(await webhookDeliveries(openid)).toHaveLength(1), { timeout: 5000 });
  });

  it("holds a forward's claim across a restart of the conversation", async () => {
    const stub = conversation(env, "bd-shop", uniqueId("o"));
    const fields = textPush({ ToUserName: bd.appId });
    const key = `msg:${fields.MsgId}`;
    await runInDurableObject(stub, (instance: Conversation, state) => {
      const message = {
        platform: "baidu",
        app: "bd-shop",
        openid: fields.FromUserName,
        createTime: fields.CreateTime,
        type: "text",
        msgId: fields.MsgId,
        content: "hi",
        raw: {},
      } as never;
      instance.accept(message, { forward: false });
      state.storage.sql.exec("UPDATE messages SET forward = 'pending'"); // as if forwarded, without a queue job
      expect(instance.claimForward(key, 60_000, 60_000)).toMatchObject({ state: "claimed", attempts: 1 });
    });
    await evictDurableObject(stub);
    await runInDurableObject(stub, (instance: Conversation, state) => {
      expect(instance.claimForward(key, 60_000, 60_000)).toMatchObject({ state: "busy" });
      state.storage.sql.exec("UPDATE messages SET forward = 'delivered'");
    });
  });
});
