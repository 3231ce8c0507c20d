import { createExecutionContext, createMessageBatch, getQueueResult, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { Webhook } from "standardwebhooks";
import { describe, expect, it, vi } from "vitest";
import { app as worker } from "../../src/app.ts";
import { conversation, type Conversation } from "../../src/conversation/conversation.ts";
import type { ForwardJob, SendJob } from "../../src/conversation/jobs.ts";
import { HANDOFF_ATTEMPTS } from "../../src/conversation/outbox.ts";
import { forwardBatch, forwardDeadLetters } from "../../src/dispatch/forward.ts";
import { sendBatch, sendDeadLetters } from "../../src/dispatch/send.ts";
import type { Env } from "../../src/env.ts";
import type { Message } from "../../src/protocol/codec.ts";
import { testApps, WEBHOOK_SECRET } from "../fixtures/apps.ts";
import { api, env, logsOf, received, sendPush, standIn, standInRequests, textPush, uniqueId, uniqueMsgId, userWrites, webhookDeliveries } from "../helpers.ts";

/** A queue that records what is sent to it (nothing reaches a consumer). */
function recordingQueue() {
  const sent: { body: unknown; delaySeconds?: number }[] = [];
  return { sent, send: async (body: unknown, options?: { delaySeconds?: number }) => void sent.push({ body, delaySeconds: options?.delaySeconds }) };
}

/** One queue delivery of `job` to `consumer`, as the queue would make it; what the consumer did with it. */
async function deliver<Job>(consumer: (batch: MessageBatch<Job>, env: Env) => Promise<void>, queue: string, job: Job, workerEnv: Env, attempts = 1) {
  const batch = createMessageBatch<Job>(queue, [{ id: uniqueId("m"), timestamp: new Date(), attempts, body: job }]);
  const ctx = createExecutionContext();
  await consumer(batch, workerEnv);
  return getQueueResult(batch, ctx);
}

/** Runs `fn` in the conversation with its queues muted: the jobs it hands on reach no consumer, so the test delivers them. */
async function withMutedQueues<T>(app: string, openid: string, fn: (instance: Conversation) => T): Promise<T> {
  return runInDurableObject(conversation(env, app, openid), async (instance: Conversation) => {
    const bound = (instance as unknown as { env: Env }).env;
    const original = { forwards: bound.FORWARDS.send, sends: bound.SENDS.send };
    const muted = async () => ({}) as QueueSendResponse;
    bound.FORWARDS.send = muted;
    bound.SENDS.send = muted;
    try {
      const result = fn(instance);
      await vi.waitFor(() => expect((instance as unknown as { outbox: { inFlight: number } }).outbox.inFlight).toBe(0));
      return result;
    } finally {
      bound.FORWARDS.send = original.forwards;
      bound.SENDS.send = original.sends;
    }
  });
}

function messageOf(app: string, openid: string, content = "你好"): Message {
  const now = Math.floor(Date.now() / 1000);
  return { platform: "baidu", app, openid, to: testApps["bd-shop"].appId, createTime: now, type: "text", msgId: uniqueMsgId(), content, raw: {} };
}

/** The apps with bd-shop broken by a typo. */
const typo = JSON.stringify({ ...testApps, "bd-shop": { ...testApps["bd-shop"], platfrom: "baidu" } });

async function replyState(app: string, id: string) {
  return (await api("GET", `/apps/${app}/messages/${id}`)).body;
}

async function settled(app: string, id: string) {
  return vi.waitFor(
    async () => {
      const body = await replyState(app, id);
      if (body.status !== "sent" && body.status !== "failed") throw new Error(`still ${body.status}`);
      return body;
    },
    { timeout: 8000, interval: 50 },
  );
}

describe("configuration problems never lose or consume work", () => {
  it("a broken app answers 503 config_invalid; the other apps keep working; /health lists the problem", async () => {
    const brokenEnv = { ...env, KEFU_APPS: typo };
    const push = (app: "bd-shop" | "bd-plain") => {
      const openid = uniqueId("o");
      return Promise.resolve(worker.fetch(new Request(`https://kefu.test/push/${app}?x=1`, { method: "POST", body: "<xml/>" }), brokenEnv)).then((r) => ({
        r,
        openid,
      }));
    };
    const broken = await push("bd-shop");
    expect(broken.r.status).toBe(503);
    expect(await broken.r.json()).toMatchObject({ error: { code: "config_invalid" } });
    // The other app still verifies its pushes (this one is unsigned: 401, not 503).
    expect((await push("bd-plain")).r.status).toBe(401);
    const apiCall = await worker.fetch(
      new Request("https://kefu.test/api/apps/bd-shop/conversations", { headers: { authorization: "Bearer test-api-key" } }),
      brokenEnv,
    );
    expect(apiCall.status).toBe(503);
    expect(((await apiCall.json()) as { error: { message: string } }).error.message).toMatch(/KEFU_APPS\.bd-shop\.platfrom is not a known field/);
    const healthy = await worker.fetch(
      new Request("https://kefu.test/api/apps/bd-plain/conversations", { headers: { authorization: "Bearer test-api-key" } }),
      brokenEnv,
    );
    expect(healthy.status).toBe(200);
    const health = await worker.fetch(new Request("https://kefu.test/health", { headers: { authorization: "Bearer test-api-key" } }), brokenEnv);
    expect(health.status).toBe(503);
    const body = (await health.json()) as { ok: boolean; problems: string[]; apps: { name: string }[] };
    expect(body.ok).toBe(false);
    expect(body.problems.join("\n")).toMatch(/KEFU_APPS\.bd-shop\.platfrom/);
    expect(body.apps.map((a) => a.name)).toContain("bd-plain");
  });

  it("queued replies and forwards wait while the configuration is broken, then are all delivered once it is fixed", async () => {
    const openid = await userWrites("bd-shop");
    await vi.waitFor(async () => expect(await webhookDeliveries(openid)).toHaveLength(1));
    const id = `rpl_${crypto.randomUUID().replaceAll("-", "")}.${btoa(openid).replaceAll("=", "")}`;
    const message = messageOf("bd-shop", openid, "while broken");
    const key = `msg:${message.msgId}`;
    await withMutedQueues("bd-shop", openid, (instance) => {
      expect(instance.reserveReply("bd-shop", openid, id, { reply: { type: "text", content: "while broken" } }).ok).toBe(true);
      expect(instance.accept(message, { forward: true })).toEqual({ accepted: true });
    });
    const sendJob: SendJob = { app: "bd-shop", openid, id };
    const forwardJob: ForwardJob = { app: "bd-shop", openid, key };

    for (const KEFU_APPS of [typo, "{not json"]) {
      const queue = recordingQueue();
      const broken = { ...env, KEFU_APPS, SENDS: queue, FORWARDS: queue } as unknown as Env;
      for (let delivery = 1; delivery <= 3; delivery++) {
        const sends = await deliver(sendBatch, "kefu-sends", sendJob, broken, delivery);
        const forwards = await deliver(forwardBatch, "kefu-forwards", forwardJob, broken, delivery);
        // Acknowledged and queued anew with a delay: the queue's own count never grows.
        for (const result of [sends, forwards]) {
          expect(result.retryMessages).toEqual([]);
          expect(result.explicitAcks).toHaveLength(1);
        }
      }
      expect(queue.sent).toEqual([
        ...[1, 2, 3].flatMap(() => [
          { body: sendJob, delaySeconds: 60 },
          { body: forwardJob, delaySeconds: 60 },
        ]),
      ]);
    }
    // Nothing was tried, nothing consumed.
    expect(await replyState("bd-shop", id)).toMatchObject({ status: "queued", attempts: 0 });
    expect(await standInRequests({ platform: "baidu", kind: "send", match: openid })).toHaveLength(0);
    expect(await webhookDeliveries(openid)).toHaveLength(1);

    // Fixed: the next deliveries of the same jobs do the work.
    await deliver(sendBatch, "kefu-sends", sendJob, env);
    await deliver(forwardBatch, "kefu-forwards", forwardJob, env);
    expect(await settled("bd-shop", id)).toMatchObject({ status: "sent", attempts: 1 });
    const snapshot = await conversation(env, "bd-shop", openid).snapshot();
    expect(received(snapshot!.history).find((m) => m.message.content === "while broken")!.forward).toMatchObject({ status: "delivered", attempts: 1 });
  });

  it("dead-letter consumers record the final state with no configuration at all", async () => {
    const openid = await userWrites("bd-shop");
    const id = `rpl_${crypto.randomUUID().replaceAll("-", "")}.${btoa(openid).replaceAll("=", "")}`;
    const message = messageOf("bd-shop", openid);
    await withMutedQueues("bd-shop", openid, (instance) => {
      instance.reserveReply("bd-shop", openid, id, { reply: { type: "text", content: "never sent" } });
      instance.accept(message, { forward: true });
    });
    expect((await conversation(env, "bd-shop", openid).quota()).remaining).toBe(4);
    const bare = { CONVERSATIONS: env.CONVERSATIONS, DIRECTORY: env.DIRECTORY } as Env;
    expect((await deliver(sendDeadLetters, "kefu-sends-dlq", { app: "bd-shop", openid, id }, bare)).explicitAcks).toHaveLength(1);
    expect((await deliver(forwardDeadLetters, "kefu-forwards-dlq", { app: "bd-shop", openid, key: `msg:${message.msgId}` }, bare)).explicitAcks).toHaveLength(
      1,
    );
    expect(await replyState("bd-shop", id)).toMatchObject({ status: "failed", error: { code: "retries_exhausted" } });
    expect((await conversation(env, "bd-shop", openid).quota()).remaining).toBe(5); // its slot given back
    const snapshot = await conversation(env, "bd-shop", openid).snapshot();
    expect(received(snapshot!.history).find((m) => m.message.msgId === message.msgId)!.forward).toMatchObject({ status: "failed" });
  });

  it("the alarm never throws, even with the configuration unreadable", async () => {
    const openid = await userWrites("bd-shop");
    await runInDurableObject(conversation(env, "bd-shop", openid), async (instance: Conversation) => {
      const holder = instance as unknown as { env: Env };
      const original = holder.env;
      holder.env = { ...original, KEFU_APPS: "{not json" };
      try {
        await expect(instance.alarm()).resolves.toBeUndefined();
      } finally {
        holder.env = original;
      }
    });
  });
});

describe("per conversation, in order", () => {
  it("replies reach the platform in the order accepted: one waiting for a retry holds back the later ones", async () => {
    const openid = await userWrites("bd-shop");
    await standIn("/script", { platform: "baidu", kind: "send", match: openid, responses: [{ status: 502 }, { status: 502 }] });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await api("POST", "/apps/bd-shop/messages", { openid, type: "text", content: `#${i}` })).body.id);
    for (const id of ids) expect(await settled("bd-shop", id)).toMatchObject({ status: "sent" });
    const sends = await standInRequests({ platform: "baidu", kind: "send", match: openid });
    expect(sends.map((s) => s.body.content ?? JSON.stringify(s.body))).toEqual(["#0", "#0", "#0", "#1", "#2"]);
  });

  it("a waiting reply costs none of its attempts", async () => {
    const openid = await userWrites("bd-shop");
    const ids: string[] = [];
    await withMutedQueues("bd-shop", openid, (instance) => {
      for (let i = 0; i < 2; i++) {
        const id = `rpl_${crypto.randomUUID().replaceAll("-", "")}.${btoa(openid).replaceAll("=", "")}`;
        instance.reserveReply("bd-shop", openid, id, { reply: { type: "text", content: `#${i}` } });
        ids.push(id);
      }
    });
    const queue = recordingQueue();
    const result = await deliver(sendBatch, "kefu-sends", { app: "bd-shop", openid, id: ids[1]! }, { ...env, SENDS: queue } as unknown as Env);
    expect(result.explicitAcks).toHaveLength(1);
    expect(queue.sent).toHaveLength(1); // come back later
    expect(await replyState("bd-shop", ids[1]!)).toMatchObject({ status: "queued", attempts: 0 });
    await deliver(sendBatch, "kefu-sends", { app: "bd-shop", openid, id: ids[0]! }, env); // the first, and then the second is handed on
    for (const id of ids) expect(await settled("bd-shop", id)).toMatchObject({ status: "sent", attempts: 1 });
  });

  it("a reply waiting behind one whose job was lost hands that job on again, and both are sent in order", async () => {
    const openid = await userWrites("bd-shop");
    const ids: string[] = [];
    await withMutedQueues("bd-shop", openid, (instance) => {
      for (let i = 0; i < 2; i++) {
        const id = `rpl_${crypto.randomUUID().replaceAll("-", "")}.${btoa(openid).replaceAll("=", "")}`;
        instance.reserveReply("bd-shop", openid, id, { reply: { type: "text", content: `#${i}` } });
        ids.push(id);
      }
    });
    // The first reply's job never reached the queue, long enough ago to look lost.
    await runInDurableObject(conversation(env, "bd-shop", openid), (_instance, state) => {
      state.storage.sql.exec("UPDATE replies SET created_at = created_at - 60000 WHERE id = ?", ids[0]!);
    });
    await deliver(sendBatch, "kefu-sends", { app: "bd-shop", openid, id: ids[1]! }, { ...env, SENDS: recordingQueue() } as unknown as Env);
    for (const id of ids) expect(await settled("bd-shop", id)).toMatchObject({ status: "sent", attempts: 1 });
    const sends = await standInRequests({ platform: "baidu", kind: "send", match: openid });
    expect(sends.map((s) => s.body.content)).toEqual(["#0", "#1"]);
  });

  it("forwards reach the webhook in the order received, numbered by seq", async () => {
    const openid = uniqueId("o");
    await standIn("/script", { platform: "webhook", match: openid, responses: [{ status: 503 }] });
    for (let i = 0; i < 3; i++) {
      const response = await sendPush(textPush({ FromUserName: openid, Content: `m${i}` }), { app: "bd-shop" });
      expect(await response.text()).toBe("success");
    }
    await vi.waitFor(async () => expect((await webhookDeliveries(openid)).filter((d) => d.status === 204)).toHaveLength(3), { timeout: 8000 });
    const deliveries = await webhookDeliveries(openid);
    expect(deliveries.map((d) => [d.body.data.content, d.body.seq, d.status])).toEqual([
      ["m0", 1, 503],
      ["m0", 1, 204],
      ["m1", 2, 204],
      ["m2", 3, 204],
    ]);
    const history = received((await conversation(env, "bd-shop", openid).snapshot())!.history);
    expect(history.map((m) => m.forward?.seq)).toEqual([3, 2, 1]);
  });

  it("a failing forward holds the later ones back for at most the hold; then they go on", async () => {
    const openid = uniqueId("o");
    const [first, second] = [messageOf("bd-shop", openid, "a"), messageOf("bd-shop", openid, "b")];
    await withMutedQueues("bd-shop", openid, (instance) => {
      instance.accept(first, { forward: true });
      instance.accept(second, { forward: true });
      const claim = instance.claimForward(`msg:${first.msgId}`, 60_000, 60_000);
      if (claim.state !== "claimed") throw new Error("not claimed");
      expect(claim.seq).toBe(1);
      // While the first is under way, and then while it waits for its retry, the second waits.
      expect(instance.claimForward(`msg:${second.msgId}`, 60_000, 60_000)).toMatchObject({ state: "waiting" });
      claim.attempt.finish({ status: "pending", error: "webhook answered HTTP 503", retryAt: Date.now() + 600_000 });
      const waiting = instance.claimForward(`msg:${second.msgId}`, 60_000, 60_000);
      expect(waiting).toMatchObject({ state: "waiting" });
      expect(waiting.state === "waiting" && waiting.retryInMs).toBeLessThanOrEqual(60_500); // no later than the hold's end
      // Once the first has been failing for the hold, the second goes on.
      expect(instance.claimForward(`msg:${second.msgId}`, 60_000, 0)).toMatchObject({ state: "claimed", seq: 2 });
    });
    await runInDurableObject(conversation(env, "bd-shop", openid), (_instance, state) => {
      state.storage.sql.exec("UPDATE messages SET forward = 'delivered'"); // nothing left for the file's teardown to wait for
    });
  });
});

describe("attempts are kefu-edge's own setting", () => {
  it("KEFU_SEND_ATTEMPTS and KEFU_FORWARD_ATTEMPTS shorten the road to failed", async () => {
    const openid = await userWrites("bd-plain");
    await vi.waitFor(async () => expect(await webhookDeliveries(openid)).toHaveLength(1));
    const id = `rpl_${crypto.randomUUID().replaceAll("-", "")}.${btoa(openid).replaceAll("=", "")}`;
    const message = messageOf("bd-plain", openid, "once only");
    await withMutedQueues("bd-plain", openid, (instance) => {
      instance.reserveReply("bd-plain", openid, id, { reply: { type: "text", content: "once only" } });
      instance.accept(message, { forward: true });
    });
    await standIn("/script", { platform: "baidu", kind: "send", match: openid, responses: [{ status: 503 }] });
    await standIn("/script", { platform: "webhook", match: openid, responses: [{ status: 503 }] });
    const once = { ...env, KEFU_SEND_ATTEMPTS: "1", KEFU_FORWARD_ATTEMPTS: "1" };
    expect((await deliver(sendBatch, "kefu-sends", { app: "bd-plain", openid, id }, once)).explicitAcks).toHaveLength(1);
    expect((await deliver(forwardBatch, "kefu-forwards", { app: "bd-plain", openid, key: `msg:${message.msgId}` }, once)).explicitAcks).toHaveLength(1);
    expect(await settled("bd-plain", id)).toMatchObject({ status: "failed", attempts: 1, error: { code: "retries_exhausted" } });
    const snapshot = await conversation(env, "bd-plain", openid).snapshot();
    expect(received(snapshot!.history).find((m) => m.message.msgId === message.msgId)!.forward).toMatchObject({ status: "failed", attempts: 1 });
  });
});

describe("exactly one platform call per reply attempt", () => {
  it("a duplicate delivery while a send is under way consumes no attempt, and the dead-letter queue cannot fail it", async () => {
    const openid = await userWrites("bd-shop");
    const id = `rpl_${crypto.randomUUID().replaceAll("-", "")}.${btoa(openid).replaceAll("=", "")}`;
    const stub = conversation(env, "bd-shop", openid);
    await withMutedQueues("bd-shop", openid, (instance) => {
      instance.reserveReply("bd-shop", openid, id, { reply: { type: "text", content: "once" } });
    });
    await standIn("/script", { platform: "baidu", kind: "send", match: openid, responses: [{ delayMs: 600 }] });
    const job = { app: "bd-shop", openid, id };
    const queue = recordingQueue();
    const first = deliver(sendBatch, "kefu-sends", job, env);
    await vi.waitFor(async () => expect((await replyState("bd-shop", id)).status).toBe("sending"));
    // A second copy, and the dead-letter queue, while the first is under way.
    const copy = await deliver(sendBatch, "kefu-sends", job, { ...env, SENDS: queue } as unknown as Env);
    expect(copy.retryMessages).toEqual([]);
    expect(queue.sent).toHaveLength(1);
    const dead = await deliver(sendDeadLetters, "kefu-sends-dlq", job, env);
    expect(dead.retryMessages).toHaveLength(1); // asked to come back once the send is over
    expect(await replyState("bd-shop", id)).toMatchObject({ status: "sending", attempts: 1 });
    expect((await stub.quota()).remaining).toBe(4); // no slot given back
    await first;
    expect(await replyState("bd-shop", id)).toMatchObject({ status: "sent", attempts: 1 });
    expect(await standInRequests({ platform: "baidu", kind: "send", match: openid })).toHaveLength(1);
  });

  it("the lease covers the slowest attempt: a token fetch, a send, a refresh and a second send", async () => {
    const openid = await userWrites("bd-shop");
    await standIn("/script", { platform: "baidu", kind: "send", match: openid, responses: [{ delayMs: 400 }] });
    const { body } = await api("POST", "/apps/bd-shop/messages", { openid, type: "text", content: "lease" });
    await vi.waitFor(async () => expect((await replyState("bd-shop", body.id)).status).toBe("sending"));
    const lease = await runInDurableObject(
      conversation(env, "bd-shop", openid),
      (_instance, state) => state.storage.sql.exec<{ ms: number }>("SELECT lease_until - claimed_at AS ms FROM replies WHERE id = ?", body.id).one().ms,
    );
    expect(lease).toBeGreaterThanOrEqual(4 * Number(env.KEFU_CALL_TIMEOUT_MS));
    await settled("bd-shop", body.id);
  });
});

describe("the window follows the platform under any arrival order", () => {
  it("a late copy of an older message gives back no replies the platform already counted", async () => {
    const openid = uniqueId("o");
    const now = Math.floor(Date.now() / 1000);
    const older = textPush({ FromUserName: openid, CreateTime: now - 60, Content: "older" });
    expect(await (await sendPush(textPush({ FromUserName: openid, CreateTime: now }), { app: "bd-shop" })).text()).toBe("success");
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await api("POST", "/apps/bd-shop/messages", { openid, type: "text", content: `#${i}` })).body.id);
    for (const id of ids) expect(await settled("bd-shop", id)).toMatchObject({ status: "sent" });
    const before = await conversation(env, "bd-shop", openid).quota();
    expect(before.remaining).toBe(0);
    // The platform's retry of a message sent a minute before arrives only now.
    expect(await (await sendPush(older, { app: "bd-shop" })).text()).toBe("success");
    expect(await conversation(env, "bd-shop", openid).quota()).toEqual(before);
    expect((await api("POST", "/apps/bd-shop/messages", { openid, type: "text", content: "one too many" })).status).toBe(409);
  });
});

describe("failed forwards are recoverable", () => {
  it("lists failed forwards, re-drives them by msgId, and re-drives an app's failed ones when its webhook answers again", async () => {
    const openid = uniqueId("o");
    const push = textPush({ FromUserName: openid });
    await standIn("/script", { platform: "webhook", match: openid, responses: Array(4).fill({ status: 500 }) });
    await sendPush(push, { app: "bd-shop" });
    const failed = async () => (await api("GET", "/apps/bd-shop/forwards?status=failed")).body.forwards.filter((f: { openid: string }) => f.openid === openid);
    await vi.waitFor(async () => expect(await failed()).toHaveLength(1), { timeout: 8000 });
    expect((await failed())[0]).toEqual({
      openid,
      key: `msg:${push.MsgId}`,
      msgId: push.MsgId,
      status: "failed",
      attempts: 4,
      error: "gave up after 4 attempts: webhook answered HTTP 500",
    });
    expect((await api("POST", "/apps/bd-shop/forwards/redrive", { msgIds: [push.MsgId, "123"] })).body).toEqual({ redriven: 1, notFound: ["123"] });
    await vi.waitFor(async () => expect((await webhookDeliveries(openid)).map((d) => d.status)).toEqual([500, 500, 500, 500, 204]), { timeout: 8000 });
    expect(await failed()).toEqual([]);

    // Failing again, to the end; then another user's message gets through: this one follows by itself.
    const again = uniqueId("o");
    await standIn("/script", { platform: "webhook", match: again, responses: Array(4).fill({ status: 500 }) });
    await sendPush(textPush({ FromUserName: again }), { app: "bd-shop" });
    await vi.waitFor(async () => expect((await webhookDeliveries(again)).map((d) => d.status)).toEqual([500, 500, 500, 500]), { timeout: 8000 });
    await userWrites("bd-shop");
    await vi.waitFor(async () => expect((await webhookDeliveries(again)).map((d) => d.status)).toEqual([500, 500, 500, 500, 204]), { timeout: 8000 });
  });

  it("redrive with {} re-sends every failed one; bad input is a 400; an unknown app a 404", async () => {
    expect((await api("POST", "/apps/bd-shop/forwards/redrive", { msgIds: ["x"] })).status).toBe(400);
    expect((await api("POST", "/apps/bd-shop/forwards/redrive", { ids: [] })).status).toBe(400);
    expect((await api("GET", "/apps/bd-shop/forwards?status=delivered")).status).toBe(400);
    expect((await api("GET", "/apps/nope/forwards")).status).toBe(404);
    const answer = await api("POST", "/apps/bd-twin/forwards/redrive", {}); // an app with no failed forwards
    expect(answer).toMatchObject({ status: 200, body: { redriven: 0, notFound: [] } });
  });

  it("a forward whose webhook was unset after the message was accepted ends skipped", async () => {
    const openid = uniqueId("o");
    const message = messageOf("bd-shop", openid);
    await withMutedQueues("bd-shop", openid, (instance) => instance.accept(message, { forward: true }));
    const { KEFU_WEBHOOK_URL: _unset, ...unset } = env;
    await deliver(forwardBatch, "kefu-forwards", { app: "bd-shop", openid, key: `msg:${message.msgId}` }, unset as Env);
    const snapshot = await conversation(env, "bd-shop", openid).snapshot();
    expect(received(snapshot!.history)[0]!.forward).toMatchObject({ status: "skipped", error: "KEFU_WEBHOOK_URL is not set" });
  });
});

describe("delivery status is pushed", () => {
  const verifier = new Webhook(WEBHOOK_SECRET);
  const verified = (delivery: { headers: Record<string, string>; body: unknown }) =>
    verifier.verify(JSON.stringify(delivery.body), {
      "webhook-id": delivery.headers["webhook-id"]!,
      "webhook-timestamp": delivery.headers["webhook-timestamp"]!,
      "webhook-signature": delivery.headers["webhook-signature"]!,
    });

  it("message.sent and message.failed reach the webhook, signed like message.received (checked with the standardwebhooks package)", async () => {
    const openid = await userWrites("bd-shop");
    const sent = (await api("POST", "/apps/bd-shop/messages", { openid, type: "text", content: "ok" })).body.id;
    await settled("bd-shop", sent);
    await standIn("/script", { platform: "baidu", kind: "send", match: openid, responses: [{ body: { errno: 30022, msg: "invalid openid" } }] });
    const failed = (await api("POST", "/apps/bd-shop/messages", { openid, type: "text", content: "refused" })).body.id;
    await vi.waitFor(
      async () => expect((await webhookDeliveries(openid)).map((d) => d.body.type)).toEqual(["message.received", "message.sent", "message.failed"]),
      {
        timeout: 8000,
      },
    );
    const deliveries = await webhookDeliveries(openid);
    expect(deliveries[1]!.body.data).toEqual({ id: sent, app: "bd-shop", openid, attempts: 1 });
    expect(deliveries[2]!.body.data).toEqual({
      id: failed,
      app: "bd-shop",
      openid,
      attempts: 1,
      error: { code: "platform_rejected", platformCode: 30022, message: "invalid openid" },
    });
    for (const delivery of deliveries) {
      expect(delivery.verified).toBe(true);
      expect(verified(delivery)).toEqual(delivery.body);
    }
  });
});

describe("idle conversations cost nothing", () => {
  it("an outbox item that keeps failing is dropped after HANDOFF_ATTEMPTS, with a final log line", async () => {
    const openid = uniqueId("o");
    const stub = conversation(env, "bd-shop", openid);
    await userWrites("bd-shop", openid);
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec(
        "INSERT INTO handoffs (item, attempts) VALUES (?, ?)",
        JSON.stringify({ target: "sends", job: { app: "bd-shop", openid, id: "x" } }),
        HANDOFF_ATTEMPTS - 1,
      );
    });
    const lines = await logsOf(() =>
      runInDurableObject(stub, async (instance: Conversation) => {
        const bound = (instance as unknown as { env: Env }).env;
        const send = bound.SENDS.send;
        bound.SENDS.send = () => Promise.reject(new Error("queue unavailable"));
        try {
          await instance.alarm();
        } finally {
          bound.SENDS.send = send;
        }
      }),
    );
    expect(lines).toContainEqual(expect.objectContaining({ event: "outbox_gave_up", target: "sends", attempts: HANDOFF_ATTEMPTS }));
    await runInDurableObject(stub, (_instance, state) => {
      expect(state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM handoffs").one().n).toBe(0);
    });
    await runDurableObjectAlarm(stub);
  });
});
