import { createExecutionContext, createMessageBatch, getQueueResult, runInDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import type { SendJob } from "../../src/conversation/jobs.ts";
import { sendBatch } from "../../src/dispatch/send.ts";
import { refreshAt, type AccessTokens } from "../../src/dispatch/tokens.ts";
import { api, env, sleep, standIn, standInRequests, uniqueId, userWrites } from "../helpers.ts";

type Quota = { remaining: number; windowExpiresAt: string | null };

async function reply(app: string, openid: string, body: Record<string, unknown> = {}, headers?: Record<string, string>) {
  return api("POST", `/apps/${app}/messages`, { openid, type: "text", content: "您好，这里是客服", ...body }, headers);
}

/** Waits until the reply reaches a final state, and returns it. */
async function settled(app: string, id: string) {
  return vi.waitFor(
    async () => {
      const { body } = await api("GET", `/apps/${app}/messages/${id}`);
      if (body.status !== "sent" && body.status !== "failed") throw new Error(`still ${body.status}`);
      return body;
    },
    { timeout: 8000, interval: 50 },
  );
}

async function quotaOf(app: string, openid: string): Promise<Quota> {
  return (await api("GET", `/apps/${app}/conversations/${openid}`)).body.quota;
}

describe("auth and validation", () => {
  it("401 without or with a wrong API key", async () => {
    const none = await api("GET", "/apps/bd-shop/conversations", undefined, { authorization: "" });
    expect(none.status).toBe(401);
    expect(none.body.error.code).toBe("unauthorized");
    const wrong = await api("GET", "/apps/bd-shop/conversations", undefined, { authorization: "Bearer test-api-kez" });
    expect(wrong.status).toBe(401);
  });

  it("404 for an unknown app, 503 for an app without send credentials", async () => {
    expect((await reply("nope", "o1")).body.error.code).toBe("unknown_app");
    const noCreds = await reply("bd-nocreds", "o1");
    expect(noCreds.status).toBe(503);
    expect(noCreds.body.error.message).toMatch(/appKey\/appSecret/);
  });

  it("400 naming the field that is wrong", async () => {
    const cases: [string, unknown, string][] = [
      ["bd-shop", "not json", "body: must be a JSON object"],
      ["bd-shop", [], "body: must be an object"],
      ["bd-shop", { type: "text", content: "x" }, "openid: is required"],
      ["bd-shop", { openid: "o", type: "video" }, "type: must be one of text, image, link, miniprogrampage"],
      [
        "bd-shop",
        { openid: "o", type: "link", link: { title: "t", description: "d", url: "https://a", thumbUrl: "https://b" } },
        "type: must be one of text, image on baidu",
      ],
      ["bd-shop", { openid: "o", type: "text", content: "" }, "content: must be a non-empty string"],
      ["bd-shop", { openid: "o", type: "image", mediaId: "m" }, "picUrl: is required for image on baidu"],
      ["bd-shop", { openid: "o", type: "image", picUrl: "ftp://x" }, "picUrl: must be an http(s) URL"],
      ["bd-shop", { openid: "o", type: "text", content: "x", userType: 3 }, "userType: must be 1 (guest) or 2 (Baidu account)"],
      ["wx-sample", { openid: "o", type: "image", picUrl: "https://p" }, "mediaId: is required for image on wechat"],
      ["wx-sample", { openid: "o", type: "miniprogrampage", miniprogrampage: { title: "t" } }, "miniprogrampage.pagePath: is required"],
      ["wx-sample", { openid: "o", type: "link", link: { title: "t", description: "d", url: "https://a", thumbUrl: 5 } }, "link.thumbUrl: must be a string"],
    ];
    for (const [app, body, message] of cases) {
      const response = await api("POST", `/apps/${app}/messages`, body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(response.body.error.code).toBe("invalid_body");
      expect(response.body.error.message).toContain(message);
      expect(message.startsWith(`${response.body.error.field}:`), JSON.stringify(response.body)).toBe(true);
      expect(Object.keys(response.body.error).sort()).toEqual(["code", "field", "message"]);
    }
  });

  it("400 for a wrong Idempotency-Key, query or cursor; 415 for a body not sent as JSON; 413 past 64 KB", async () => {
    const openid = uniqueId("o");
    const longKey = await api("POST", "/apps/bd-shop/messages", { openid, type: "text", content: "x" }, { "idempotency-key": "k".repeat(256) });
    expect(longKey.body.error).toEqual({ code: "invalid_body", field: "idempotency-key", message: "idempotency-key: must be 1-255 characters" });
    expect((await api("GET", "/apps/bd-shop/conversations?limit=abc")).body.error).toMatchObject({
      field: "limit",
      message: "limit: must be an integer from 1 to 100",
    });
    expect((await api("GET", "/apps/bd-shop/conversations?limit=0")).status).toBe(400);
    expect((await api("GET", `/apps/bd-shop/conversations/${openid}?limit=201`)).body.error.field).toBe("limit");
    const plain = await api("POST", "/apps/bd-shop/messages", JSON.stringify({ openid, type: "text", content: "x" }), { "content-type": "text/plain" });
    expect(plain.status).toBe(415);
    expect(plain.body.error.code).toBe("unsupported_media_type");
    const huge = await api("POST", "/apps/bd-shop/messages", { openid, type: "text", content: "x".repeat(70_000) });
    expect(huge.status).toBe(413);
    expect(huge.body.error.code).toBe("body_too_large");
  });

  it("409 window_closed for a user who never wrote, and nothing is sent", async () => {
    const openid = uniqueId("o");
    const response = await reply("bd-shop", openid);
    expect(response.status).toBe(409);
    expect(response.body.error).toMatchObject({ code: "window_closed", quota: { remaining: 0, windowExpiresAt: null } });
    await sleep(100);
    expect((await standIn<{ sends: number }>(`/counters?match=${openid}`)).sends).toBe(0);
  });
});

describe("sending", () => {
  it("Baidu: reserves, queues, sends through custom/send and records it in the conversation", async () => {
    const openid = await userWrites("bd-shop");
    const accepted = await reply("bd-shop", openid);
    expect(accepted.status).toBe(202);
    expect(accepted.body).toMatchObject({ status: "queued", quota: { remaining: 4 } });
    expect(await settled("bd-shop", accepted.body.id)).toMatchObject({ status: "sent", attempts: 1 });

    const [send] = await standInRequests({ platform: "baidu", kind: "send", match: openid });
    expect(send!.headers["content-type"]).toBe("application/x-www-form-urlencoded");
    expect(send!.body).toEqual({ user_type: "1", open_id: openid, msg_type: "text", content: "您好，这里是客服" });
    expect(send!.response).toMatchObject({ errno: 0 });

    const { body: conversation } = await api("GET", `/apps/bd-shop/conversations/${openid}`);
    expect(conversation.quota.remaining).toBe(4);
    expect(conversation.history.map((h: { direction: string }) => h.direction)).toEqual(["out", "in"]);
    // Flat: the delivery state beside the reply, not a reply nested in a reply.
    expect(conversation.history[0]).toMatchObject({
      direction: "out",
      id: accepted.body.id,
      status: "sent",
      attempts: 1,
      reply: { type: "text", content: "您好，这里是客服" },
    });
    expect(conversation.history[0].reply.reply).toBeUndefined();
  });

  it("Baidu: image by URL, and user_type from the call", async () => {
    const openid = await userWrites("bd-shop");
    const { body } = await reply("bd-shop", openid, { type: "image", picUrl: "https://cdn.example/a.png", userType: 2, content: undefined });
    expect(await settled("bd-shop", body.id)).toMatchObject({ status: "sent" });
    const [send] = await standInRequests({ platform: "baidu", kind: "send", match: openid });
    expect(send!.body).toEqual({ user_type: "2", open_id: openid, msg_type: "image", pic_url: "https://cdn.example/a.png" });
  });

  it("WeChat: sends JSON to cgi-bin/message/custom/send with a stable token", async () => {
    const openid = await userWrites("wx-sample");
    const { body } = await reply("wx-sample", openid, {
      type: "miniprogrampage",
      content: undefined,
      miniprogrampage: { title: "订单", pagePath: "pages/order?id=1", thumbMediaId: "thumb1" },
    });
    expect(await settled("wx-sample", body.id)).toMatchObject({ status: "sent" });
    const [send] = await standInRequests({ platform: "wechat", kind: "send", match: openid });
    expect(send!.body).toEqual({
      touser: openid,
      msgtype: "miniprogrampage",
      miniprogrampage: { title: "订单", pagepath: "pages/order?id=1", thumb_media_id: "thumb1" },
    });
  });

  it("WeChat: an app with appId and appSecret alone sends, its appId asking for the token", async () => {
    const openid = await userWrites("wx-idonly");
    const { status, body } = await reply("wx-idonly", openid);
    expect(status).toBe(202);
    expect(await settled("wx-idonly", body.id)).toMatchObject({ status: "sent" });
    const [token] = await standInRequests({ platform: "wechat", kind: "token", match: "wxidonly00000001" });
    expect(token!.body).toMatchObject({ grant_type: "client_credential", appid: "wxidonly00000001", secret: "wx-idonly-secret" });
  });

  it("never exceeds the quota under concurrent POSTs", async () => {
    const openid = await userWrites("bd-shop");
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => reply("bd-shop", openid, { content: `#${i}` })));
    const accepted = answers.filter((a) => a.status === 202);
    expect(accepted).toHaveLength(5);
    expect(answers.filter((a) => a.status === 409).every((a) => a.body.error.code === "quota_exhausted")).toBe(true);
    for (const a of accepted) expect((await settled("bd-shop", a.body.id)).status).toBe("sent");
    expect(await standInRequests({ platform: "baidu", kind: "send", match: openid })).toHaveLength(5);
  });

  it("an Idempotency-Key makes a retried POST return the first answer, and sends once", async () => {
    const openid = await userWrites("bd-shop");
    const key = { "idempotency-key": uniqueId("idem") };
    const first = await reply("bd-shop", openid, {}, key);
    const again = await reply("bd-shop", openid, {}, key);
    expect(again.status).toBe(202);
    expect(again.body.id).toBe(first.body.id);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    const conflict = await reply("bd-shop", openid, { content: "something else" }, key);
    expect(conflict.status).toBe(422);
    expect(conflict.body.error.code).toBe("idempotency_conflict");
    await settled("bd-shop", first.body.id);
    const late = await reply("bd-shop", openid, {}, key);
    expect(late.body).toEqual(first.body); // the first answer, even after the reply went out
    expect(await standInRequests({ platform: "baidu", kind: "send", match: openid })).toHaveLength(1);
    expect((await quotaOf("bd-shop", openid)).remaining).toBe(4);
  });

  it("sends once when the queue delivers the same job twice at the same time", async () => {
    const openid = await userWrites("bd-shop");
    await standIn("/script", { platform: "baidu", kind: "send", match: openid, responses: [{ delayMs: 400 }] });
    const { body } = await reply("bd-shop", openid);
    const job = { app: "bd-shop", openid, id: body.id };
    const copies = [1, 2].map((n) => {
      const batch = createMessageBatch<SendJob>("kefu-sends", [{ id: `copy-${n}`, timestamp: new Date(), attempts: 1, body: job }]);
      const ctx = createExecutionContext();
      return sendBatch(batch, env).then(() => getQueueResult(batch, ctx));
    });
    await Promise.all(copies);
    expect(await settled("bd-shop", body.id)).toMatchObject({ status: "sent" });
    await sleep(200);
    expect(await standInRequests({ platform: "baidu", kind: "send", match: openid })).toHaveLength(1);
  });

  it("404 for an unknown reply id", async () => {
    expect((await api("GET", "/apps/bd-shop/messages/rpl_nope")).status).toBe(404);
    expect((await api("GET", `/apps/bd-shop/messages/rpl_${"0".repeat(32)}.b2Q`)).status).toBe(404);
  });
});

describe("access tokens", () => {
  it("are fetched once under concurrent sends, and refreshed once after expiry", async () => {
    const openids = await Promise.all([userWrites("bd-tokens"), userWrites("bd-tokens"), userWrites("bd-tokens")]);
    const before = (await standIn<{ tokenFetches: number }>("/counters?match=bd-tokens-key")).tokenFetches;
    const first = await Promise.all(openids.flatMap((o) => [reply("bd-tokens", o), reply("bd-tokens", o)]));
    for (const r of first) expect((await settled("bd-tokens", r.body.id)).status).toBe("sent");
    expect((await standIn<{ tokenFetches: number }>("/counters?match=bd-tokens-key")).tokenFetches).toBe(before + 1);

    await standIn("/expire-tokens", { match: "bd-tokens-key" });
    const second = await Promise.all(openids.map((o) => reply("bd-tokens", o)));
    for (const r of second) expect(await settled("bd-tokens", r.body.id)).toMatchObject({ status: "sent", attempts: 1 });
    expect((await standIn<{ tokenFetches: number }>("/counters?match=bd-tokens-key")).tokenFetches).toBe(before + 2);
    // The expired token was refused (111) exactly where it was used, then replaced.
    const refused = (await Promise.all(openids.map((o) => standInRequests({ platform: "baidu", kind: "send", match: o }))))
      .flat()
      .filter((r) => r.response?.error_code === 111);
    expect(refused.length).toBeGreaterThanOrEqual(1);
  });

  it("are renewed 5 minutes before expiry, or halfway through a shorter life", () => {
    expect(refreshAt(0, 7200)).toBe(6900_000);
    expect(refreshAt(0, 200)).toBe(100_000);
    expect(refreshAt(0, 0)).toBe(0);
  });

  it("are fetched again once due for renewal, and not before", async () => {
    const tokens = env.ACCESS_TOKENS.getByName("bd-tokens");
    const fetches = async () => (await standIn<{ tokenFetches: number }>("/counters?match=bd-tokens-key")).tokenFetches;
    const first = await tokens.token("bd-tokens");
    const before = await fetches();
    expect(await tokens.token("bd-tokens")).toEqual(first);
    expect(await fetches()).toBe(before);
    await runInDurableObject(tokens, (_instance: AccessTokens, state) => {
      state.storage.kv.put("token", { token: "due-token", refreshAt: Date.now() - 1 });
    });
    const renewed = await tokens.token("bd-tokens");
    expect(renewed).toMatchObject({ ok: true });
    expect(renewed).not.toEqual({ ok: true, token: "due-token" });
    expect(await fetches()).toBe(before + 1);
  });

  it("WeChat: a refused token (40001/42001) is refreshed and the send retried once", async () => {
    const openid = await userWrites("wx-tokens");
    const warm = await reply("wx-tokens", openid);
    await settled("wx-tokens", warm.body.id);
    await standIn("/expire-tokens", { match: "wxtokens00000001" });
    const { body } = await reply("wx-tokens", openid);
    expect(await settled("wx-tokens", body.id)).toMatchObject({ status: "sent", attempts: 1 });
    const sends = await standInRequests({ platform: "wechat", kind: "send", match: openid });
    expect(sends.map((s) => s.response?.errcode)).toEqual([0, 42001, 0]);
  });
});

describe("outcomes", () => {
  async function scripted(app: "bd-shop" | "wx-sample", platform: string, responses: unknown[]) {
    const openid = await userWrites(app);
    await standIn("/script", { platform, kind: "send", match: openid, responses });
    const { body } = await reply(app, openid);
    return { openid, final: await settled(app, body.id) };
  }

  it("Baidu 90001: failed quota_exhausted, and the conversation's quota follows the platform", async () => {
    const { openid, final } = await scripted("bd-shop", "baidu", [{ body: { errno: 90001, msg: "quota exceeded" } }]);
    expect(final).toMatchObject({ status: "failed", error: { code: "quota_exhausted", platformCode: 90001 } });
    expect((await quotaOf("bd-shop", openid)).remaining).toBe(0);
  });

  it("WeChat 45047 and 45015: failed, quota used up or window closed", async () => {
    const quota = await scripted("wx-sample", "wechat", [{ body: { errcode: 45047, errmsg: "out of response count limit" } }]);
    expect(quota.final).toMatchObject({ status: "failed", error: { code: "quota_exhausted", platformCode: 45047 } });
    expect((await quotaOf("wx-sample", quota.openid)).remaining).toBe(0);
    const window = await scripted("wx-sample", "wechat", [{ body: { errcode: 45015, errmsg: "response out of time limit" } }]);
    expect(window.final).toMatchObject({ status: "failed", error: { code: "window_closed", platformCode: 45015 } });
    expect(await quotaOf("wx-sample", window.openid)).toEqual({ remaining: 0, windowExpiresAt: null });
  });

  it("permanent errors fail with the code and give the slot back", async () => {
    const { openid, final } = await scripted("bd-shop", "baidu", [{ body: { errno: 30022, msg: "invalid openid" } }]);
    expect(final).toMatchObject({ status: "failed", attempts: 1, error: { code: "platform_rejected", platformCode: 30022, message: "invalid openid" } });
    expect((await quotaOf("bd-shop", openid)).remaining).toBe(5);
  });

  it("5xx, dropped connections, timeouts and WeChat -1 are retried, then sent", async () => {
    const baidu = await scripted("bd-shop", "baidu", [{ status: 502 }, { drop: true }, { delayMs: 1500 }]);
    expect(baidu.final).toMatchObject({ status: "sent", attempts: 4 });
    const wechat = await scripted("wx-sample", "wechat", [{ body: { errcode: -1, errmsg: "system error" } }]);
    expect(wechat.final).toMatchObject({ status: "sent", attempts: 2 });
  });

  it("gives up after KEFU_SEND_ATTEMPTS attempts (4 in the tests) and releases the slot", async () => {
    const { openid, final } = await scripted("bd-shop", "baidu", Array(4).fill({ status: 503 }));
    expect(final).toMatchObject({ status: "failed", attempts: 4, error: { code: "retries_exhausted" } });
    expect(final.error.message).toMatch(/HTTP 503/);
    expect((await quotaOf("bd-shop", openid)).remaining).toBe(5);
  });
});

describe("conversations", () => {
  it("lists the most recently active first, paged", async () => {
    const older = await userWrites("bd-plain");
    await sleep(5);
    const newer = await userWrites("bd-plain");
    const first = await vi.waitFor(async () => {
      const page = await api("GET", "/apps/bd-plain/conversations?limit=1");
      expect(page.body.conversations[0].openid).toBe(newer);
      return page.body;
    });
    expect(first.next).toBeTruthy();
    const second = await api("GET", `/apps/bd-plain/conversations?limit=1&before=${first.next}`);
    expect(second.body.conversations[0].openid).toBe(older);
    expect((await api("GET", "/apps/bd-plain/conversations?before=garbage")).status).toBe(400);
    expect((await api("GET", "/apps/bd-plain/conversations?limit=1000")).status).toBe(400);
  });

  it("pages a conversation's history with a cursor, losing nothing between pages", async () => {
    const openid = uniqueId("o");
    for (let i = 0; i < 4; i++) await userWrites("bd-plain", openid);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await reply("bd-plain", openid)).body.id);
    const seen: Array<{ direction: string; at: string; id?: string; message?: { msgId: string } }> = [];
    let before: string | undefined;
    let pages = 0;
    do {
      const { status, body } = await api("GET", `/apps/bd-plain/conversations/${openid}?limit=2${before ? `&before=${before}` : ""}`);
      expect(status).toBe(200);
      expect(body.history.length).toBeLessThanOrEqual(2);
      seen.push(...body.history);
      before = body.next;
      pages++;
    } while (before && pages < 10);
    expect(pages).toBe(4);
    expect(seen).toHaveLength(7);
    expect(
      seen
        .filter((h) => h.direction === "out")
        .map((h) => h.id)
        .sort(),
    ).toEqual([...ids].sort());
    expect(new Set(seen.filter((h) => h.direction === "in").map((h) => h.message!.msgId)).size).toBe(4);
    const times = seen.map((h) => h.at);
    expect([...times].sort().reverse()).toEqual(times); // newest first across pages
    expect((await api("GET", `/apps/bd-plain/conversations/${openid}?before=garbage`)).status).toBe(400);
  });

  it("404 for a conversation that does not exist", async () => {
    const response = await api("GET", `/apps/bd-plain/conversations/${uniqueId("o")}`);
    expect(response.status).toBe(404);
  });
});
