import type { Stats } from "../../tools/stand-in-tp.ts";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { exports } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { readTpAnswer } from "../../src/platforms/baidu-tp.ts";
import { eventTimeMs, readPlatformEvent } from "../../src/protocol/tp-event.ts";
import { sha1Signature } from "../../src/protocol/signature.ts";
import { testThirdParties } from "../fixtures/third-party.ts";
import {
  api,
  authorizeByEvent,
  beijingTime,
  env,
  logsOf,
  postRaw,
  pushTicket,
  standIn,
  standInRequests,
  tpEvent,
  tpUserWrites,
  uniqueAppId,
  uniqueId,
  webhookDeliveries,
} from "../helpers.ts";

const mytp = testThirdParties.mytp;

const stats = (query: string) => standIn<Stats>(`/tp/stats?${query}`);

async function reply(app: string, openid: string, content = "您好，这里是客服") {
  return api("POST", `/apps/${app}/messages`, { openid, type: "text", content });
}

async function settled(app: string, id: string) {
  return vi.waitFor(
    async () => {
      const { body } = await api("GET", `/apps/${app}/messages/${id}`);
      if (body.status !== "sent" && body.status !== "failed") throw new Error(`still ${body.status ?? JSON.stringify(body)}`);
      return body;
    },
    { timeout: 10_000, interval: 50 },
  );
}

async function authorizer(appId: string, tp = "mytp") {
  const { body } = await api("GET", `/tp/${tp}/authorizers`);
  return (body.authorizers as { appId: string }[]).find((a) => a.appId === appId) as Record<string, any> | undefined;
}

/** An authorized mini program with `users` users who wrote to it. */
async function authorizedProgram(users = 1) {
  await pushTicket("mytp", mytp);
  const appId = uniqueAppId();
  expect(await (await authorizeByEvent("mytp", mytp, appId)).text()).toBe("success");
  const openids: string[] = [];
  for (let i = 0; i < users; i++) {
    const openid = uniqueId("o");
    expect(await (await tpUserWrites("mytp", mytp, appId, openid)).text()).toBe("success");
    openids.push(openid);
  }
  return { appId, app: `mytp.${appId}`, openids };
}

/** Makes the authorizer's access token due (our side) and expired (Baidu's side). */
async function expireAccessToken(appId: string) {
  await runInDurableObject(env.AUTHORIZERS.getByName(`mytp.${appId}`), (_instance, state) => {
    const record = state.storage.kv.get<Record<string, unknown>>("authorizer")!;
    state.storage.kv.put("authorizer", { ...record, renewAt: Date.now() - 1 });
  });
  await standIn("/tp/expire", { appId });
}

describe("decoding platform events", () => {
  it("tells the ticket, the authorization events and the others apart", () => {
    expect(readPlatformEvent({ Ticket: "t1", FromUserName: "SmartAPP", CreateTime: 1590483574, MsgType: "ticket", Event: "push" })).toEqual({
      kind: "ticket",
      ticket: "t1",
      createTime: 1590483574,
    });
    const authorized = readPlatformEvent({
      appId: 20073496,
      tpAppId: 1,
      eventTime: "2019-01-14 12:45:10",
      event: "AUTHORIZED",
      authorizationCode: "c",
      authorizationCodeExpiresIn: 60,
    });
    expect(authorized).toMatchObject({ kind: "authorized", appId: "20073496", code: "c", eventAt: Date.parse("2019-01-14T04:45:10Z") });
    expect(readPlatformEvent({ appId: 1, eventTime: "2019-01-14 12:45:10", event: "UNAUTHORIZED" })).toMatchObject({ kind: "unauthorized", appId: "1" });
    expect(readPlatformEvent({ appId: 1, event: "PACKAGE_AUDIT_PASS" })).toEqual({ kind: "other", name: "PACKAGE_AUDIT_PASS", appId: "1" });
    expect(eventTimeMs("yesterday")).toBeUndefined();
  });

  it("maps Baidu's three error families to what to do", () => {
    expect(readTpAnswer(200, { error_code: 111, error_msg: "expired" }).verdict).toBe("refresh");
    expect(readTpAnswer(200, { error_code: 18, error_msg: "qps" }).verdict).toBe("retry");
    expect(readTpAnswer(400, { error: "expired_token", error_description: "refresh token has been used" }).verdict).toBe("recover");
    expect(readTpAnswer(400, { error: "invalid_grant" }).verdict).toBe("recover");
    expect(readTpAnswer(400, { error: "invalid_client" }).verdict).toBe("final");
    expect(readTpAnswer(200, { errno: 50032, msg: "no relationship" }).verdict).toBe("unauthorized");
    expect(readTpAnswer(200, { errno: 0, data: { a: 1 } })).toMatchObject({ verdict: "ok", data: { a: 1 } });
    expect(readTpAnswer(200, { access_token: "45.x", refresh_token: "46.y", expires_in: 3600 }).verdict).toBe("ok");
    expect(readTpAnswer(502, undefined).verdict).toBe("retry");
  });
});

describe("the platform's URLs", () => {
  it("answer the handshake of both URLs, and refuse a wrong signature", async () => {
    const timestamp = String(Math.floor(Date.now() / 1000));
    for (const [path, token] of [
      ["events", testThirdParties.tpsplit.token],
      ["messages", testThirdParties.tpsplit.messageToken],
    ] as const) {
      const query = new URLSearchParams({ signature: sha1Signature(token, timestamp, "42"), timestamp, nonce: "42", echoStr: "hello" });
      const response = await postRaw(`/tp/tpsplit/${path}?${query}`, null);
      expect(await response.text()).toBe("hello");
    }
    const wrong = new URLSearchParams({ signature: sha1Signature("nope", timestamp, "42"), timestamp, nonce: "42", echoStr: "hello" });
    expect((await postRaw(`/tp/tpsplit/events?${wrong}`, null)).status).toBe(401);
    expect((await postRaw(`/tp/nosuch/events`, "{}", "application/json")).status).toBe(404);
  });

  it("each URL takes only its own Token and key", async () => {
    const split = testThirdParties.tpsplit;
    const withEventsPair = await tpUserWrites("tpsplit", { token: split.token, encodingAesKey: split.encodingAesKey }, uniqueAppId(), uniqueId("o"));
    expect(withEventsPair.status).toBe(401);
    expect(await (await tpUserWrites("tpsplit", split, uniqueAppId(), uniqueId("o"))).text()).toBe("success");
  });

  it("acknowledge every other event and log it", async () => {
    const logs = await logsOf(async () => {
      const response = await tpEvent("mytp", mytp, { appId: 123, event: "PACKAGE_AUDIT_PASS", eventTime: beijingTime() });
      expect(await response.text()).toBe("success");
    });
    expect(logs).toContainEqual(expect.objectContaining({ event: "push", tp: "mytp", tpEvent: "PACKAGE_AUDIT_PASS", outcome: "ignored" }));
  });

  it("a message for a mini program that is not authorized is acknowledged, logged, and never a conversation", async () => {
    const appId = uniqueAppId();
    const openid = uniqueId("o");
    const logs = await logsOf(async () => {
      expect(await (await tpUserWrites("mytp", mytp, appId, openid)).text()).toBe("success");
    });
    expect(logs).toContainEqual(expect.objectContaining({ tp: "mytp", appId, outcome: "not_authorized" }));
    const conversation = await api("GET", `/apps/mytp.${appId}/conversations/${openid}`);
    expect(conversation.status).toBe(404);
    expect(conversation.body.error.code).toBe("unknown_app");
  });
});

describe("the ticket and the platform token", () => {
  it("one platform token, fetched with the latest ticket, serves every authorization and send", async () => {
    const tpcount = testThirdParties.tpcount;
    const before = await stats("clientId=tpcount-client");
    expect(before.tokenFetches).toBe(0);
    // No ticket yet: the authorization cannot be applied, Baidu is asked to push again.
    const early = uniqueAppId();
    expect((await authorizeByEvent("tpcount", tpcount, early)).status).toBe(503);

    await pushTicket("tpcount", tpcount);
    const apps = [uniqueAppId(), uniqueAppId(), uniqueAppId()];
    for (const appId of apps) expect(await (await authorizeByEvent("tpcount", tpcount, appId)).text()).toBe("success");
    await pushTicket("tpcount", tpcount); // a newer ticket does not make a new token
    const replies = [];
    for (const appId of apps) {
      const openid = uniqueId("o");
      await tpUserWrites("tpcount", tpcount, appId, openid);
      replies.push([`tpcount.${appId}`, (await reply(`tpcount.${appId}`, openid)).body.id]);
    }
    for (const [app, id] of replies) expect(await settled(app!, id)).toMatchObject({ status: "sent" });
    expect((await stats("clientId=tpcount-client")).tokenFetches).toBe(1);
    const { body } = await api("GET", "/tp/tpcount/authorizers");
    expect(body.platform).toMatchObject({ name: "tpcount", tokenFetches: 1 });
    expect(Date.parse(body.platform.tokenExpiresAt) - Date.now()).toBeGreaterThan(29 * 86_400_000);
  });
});

describe("the platform token refused", () => {
  it("is fetched again once with the latest ticket, and shared again", async () => {
    const split = testThirdParties.tpsplit;
    await pushTicket("tpsplit", split);
    const appId = uniqueAppId();
    expect(await (await authorizeByEvent("tpsplit", split, appId)).text()).toBe("success");
    const before = (await stats("clientId=tpsplit-client")).tokenFetches;
    await standIn("/tp/expire", { clientId: "tpsplit-client" });
    await pushTicket("tpsplit", split);
    const second = uniqueAppId();
    expect(await (await authorizeByEvent("tpsplit", split, second)).text()).toBe("success");
    expect(await (await authorizeByEvent("tpsplit", split, uniqueAppId())).text()).toBe("success");
    expect((await stats("clientId=tpsplit-client")).tokenFetches).toBe(before + 1);
    const refused = (await standInRequests({ platform: "baidu", kind: "token", match: second })).filter((r) => r.response?.error_code === 111);
    expect(refused).toHaveLength(1);
  });
});

describe("authorization", () => {
  it("by redirect: a link, Baidu's page, the code exchanged, a plain page for the merchant", async () => {
    await pushTicket("mytp", mytp);
    const { status, body } = await api("POST", "/tp/mytp/authorization-link");
    expect(status).toBe(200);
    const link = new URL(body.url);
    expect(link.searchParams.get("client_id")).toBe("mytp-client");
    expect(link.searchParams.get("redirect_uri")).toBe("https://kefu.test/tp/mytp/authorized");
    const appId = uniqueAppId();
    link.searchParams.set("app_id", appId); // the stand-in's page: which mini program the merchant picks
    const page = await fetch(link, { redirect: "manual" });
    expect(page.status).toBe(302);
    const back = page.headers.get("location")!;
    expect(back).toMatch(/^https:\/\/kefu\.test\/tp\/mytp\/authorized\?authorization_code=/);

    const done = await exports.default.fetch(new Request(back));
    expect(done.status).toBe(200);
    expect(await done.text()).toContain("授权成功");
    expect(await authorizer(appId)).toMatchObject({ app: `mytp.${appId}`, state: "authorized", kefuGranted: true, refreshGeneration: 1 });

    // The same code again (a reload): it worked once, so the merchant is told it failed, plainly.
    const again = await exports.default.fetch(new Request(back));
    expect(again.status).toBe(400);
    expect(await again.text()).toContain("授权失败");
    expect((await exports.default.fetch(new Request("https://kefu.test/tp/mytp/authorized"))).status).toBe(400);
  });

  it("by event: the code exchanged before answering, 客服 checked, retries de-duplicated", async () => {
    await pushTicket("mytp", mytp);
    const appId = uniqueAppId();
    const { authorizationCode } = await standIn<{ authorizationCode: string }>("/tp/authorize", { clientId: "mytp-client", appId, scopes: ["基础信息"] });
    const event = { appId: Number(appId), tpAppId: 1, eventTime: beijingTime(), event: "AUTHORIZED", authorizationCode, authorizationCodeExpiresIn: 60 };
    for (let i = 0; i < 3; i++) expect(await (await tpEvent("mytp", mytp, event)).text()).toBe("success");
    expect((await stats(`appId=${appId}`)).exchanges).toBe(1);
    expect(await authorizer(appId)).toMatchObject({ state: "authorized", kefuGranted: false });
  });

  it("an event whose code no longer works is recovered: the merchant did authorize", async () => {
    await pushTicket("mytp", mytp);
    const appId = uniqueAppId();
    await standIn("/tp/authorize", { clientId: "mytp-client", appId }); // the grant; its code is left unused
    const event = {
      appId: Number(appId),
      tpAppId: 1,
      eventTime: beijingTime(),
      event: "UPDATE_AUTHORIZED",
      authorizationCode: "code.expired",
      authorizationCodeExpiresIn: 60,
    };
    expect(await (await tpEvent("mytp", mytp, event)).text()).toBe("success");
    expect(await stats(`appId=${appId}`)).toMatchObject({ retrieves: 1 });
    expect(await authorizer(appId)).toMatchObject({ state: "authorized", kefuGranted: true, refreshGeneration: 1 });
  });

  it("an authorized mini program is an app: its messages are forwarded with tp and appId, replies go by sendbytp", async () => {
    const { appId, app, openids } = await authorizedProgram();
    const [openid] = openids as [string];
    const deliveries = await vi.waitFor(async () => {
      const found = await webhookDeliveries(openid);
      if (found.length === 0) throw new Error("not yet");
      return found;
    });
    expect(deliveries[0]!.body.data).toMatchObject({ app, tp: "mytp", appId, platform: "baidu", openid });
    const { status, body } = await reply(app, openid);
    expect(status).toBe(202);
    expect(await settled(app, body.id)).toMatchObject({ status: "sent", attempts: 1 });
    const [send] = await standInRequests({ platform: "baidu", kind: "send", match: openid });
    expect(send).toMatchObject({ path: "/rest/2.0/smartapp/message/custom/sendbytp", response: { errno: 0 } });
    expect(send!.query.access_token).toMatch(/^45\./);
    const conversation = await api("GET", `/apps/${app}/conversations/${openid}`);
    expect(conversation.body.quota.remaining).toBe(4);
  });
});

describe("the authorizer's tokens", () => {
  it("20 concurrent sends on an expired access token: exactly one refresh, the chain never broken", async () => {
    const { appId, app, openids } = await authorizedProgram(4);
    await expireAccessToken(appId);
    const before = await stats(`appId=${appId}`);
    const replies = await Promise.all(openids.flatMap((openid) => Array.from({ length: 5 }, (_, i) => reply(app, openid, `reply ${i}`))));
    expect(replies.map((r) => r.status)).toEqual(Array(20).fill(202));
    for (const r of replies) expect(await settled(app, r.body.id)).toMatchObject({ status: "sent" });
    const after = await stats(`appId=${appId}`);
    expect(after.refreshes - before.refreshes).toBe(1);
    expect(after.reusedRefreshTokens).toBe(0);
    expect(after.retrieves).toBe(0);
    expect(await authorizer(appId)).toMatchObject({ state: "authorized", refreshGeneration: 2, lastRefreshError: null });

    // The next refresh presents the token the last one returned.
    await expireAccessToken(appId);
    const more = await reply(app, openids[0]!);
    expect(more.status).toBe(409); // five replies used: the window says so before any call
    // A later message (a second on: the window counts the replies sent since each user action).
    await tpUserWrites("mytp", mytp, appId, openids[0]!, { CreateTime: Math.floor(Date.now() / 1000) + 1 });
    expect(await settled(app, (await reply(app, openids[0]!)).body.id)).toMatchObject({ status: "sent" });
    const last = await stats(`appId=${appId}`);
    expect(last.refreshes - after.refreshes).toBe(1);
    expect(last.reusedRefreshTokens).toBe(0);
  }, 30_000); // replies to one user go out one after the other

  it("a refresh whose answer is lost is never presented again: the authorization is recovered and sends resume", async () => {
    const { appId, app, openids } = await authorizedProgram();
    await expireAccessToken(appId);
    await standIn("/tp/fault", { appId, fault: "drop-refresh-answer" });
    const { body } = await reply(app, openids[0]!);
    expect(await settled(app, body.id)).toMatchObject({ status: "sent" });
    const after = await stats(`appId=${appId}`);
    expect(after).toMatchObject({ refreshes: 1, reusedRefreshTokens: 0, retrieves: 1 });
    expect(await authorizer(appId)).toMatchObject({ state: "authorized", refreshGeneration: 2 });
    expect((await authorizer(appId))!.lastRefreshError.message).toMatch(/^refresh: lost/);

    // The recovered pair refreshes normally.
    await expireAccessToken(appId);
    expect(await settled(app, (await reply(app, openids[0]!)).body.id)).toMatchObject({ status: "sent" });
    expect(await stats(`appId=${appId}`)).toMatchObject({ refreshes: 2, reusedRefreshTokens: 0, retrieves: 1 });
  });

  it("a refresh answered 5xx or too slowly may have burned the token: recovered, never presented again", async () => {
    for (const fault of [{ status: 502 }, { delayMs: 1500 }]) {
      const { appId, app, openids } = await authorizedProgram();
      await expireAccessToken(appId);
      await standIn("/script", { platform: "baidu", kind: "token", match: appId, responses: [fault] });
      expect(await settled(app, (await reply(app, openids[0]!)).body.id)).toMatchObject({ status: "sent" });
      const refreshes = (await standInRequests({ platform: "baidu", kind: "token", match: appId })).filter(
        (r) => r.query.grant_type === "app_to_tp_refresh_token",
      );
      expect(refreshes).toHaveLength(1);
      expect(await stats(`appId=${appId}`)).toMatchObject({ retrieves: 1, reusedRefreshTokens: 0 });
    }
  });

  it("a refresh cut off mid-flight (the object died) is recovered, not presented again", async () => {
    const { appId, app, openids } = await authorizedProgram();
    await runInDurableObject(env.AUTHORIZERS.getByName(app), (_instance, state) => {
      const record = state.storage.kv.get<Record<string, unknown>>("authorizer")!;
      state.storage.kv.put("authorizer", { ...record, presenting: record.refreshToken, renewAt: Date.now() - 1 });
    });
    expect(await settled(app, (await reply(app, openids[0]!)).body.id)).toMatchObject({ status: "sent" });
    expect(await stats(`appId=${appId}`)).toMatchObject({ refreshes: 0, retrieves: 1 });
  });

  it("restarts keep every credential: ticket, platform token, access and refresh tokens", async () => {
    const { appId, app, openids } = await authorizedProgram();
    const platformBefore = await stats("clientId=mytp-client");
    const summary = await authorizer(appId);
    await evictDurableObject(env.THIRD_PARTIES.getByName("mytp"));
    await evictDurableObject(env.AUTHORIZERS.getByName(app));
    expect(await settled(app, (await reply(app, openids[0]!)).body.id)).toMatchObject({ status: "sent" });
    expect(await authorizer(appId)).toEqual(summary);
    expect((await stats("clientId=mytp-client")).tokenFetches).toBe(platformBefore.tokenFetches);
    // And the refresh token survived too.
    await expireAccessToken(appId);
    await evictDurableObject(env.AUTHORIZERS.getByName(app));
    await tpUserWrites("mytp", mytp, appId, openids[0]!);
    expect(await settled(app, (await reply(app, openids[0]!)).body.id)).toMatchObject({ status: "sent" });
    expect(await stats(`appId=${appId}`)).toMatchObject({ refreshes: 1, reusedRefreshTokens: 0, retrieves: 0 });
  });
});

describe("withdrawn authorizations", () => {
  it("UNAUTHORIZED stops sends (409 unauthorized), keeps the history, and later messages make no conversation", async () => {
    const { appId, app, openids } = await authorizedProgram();
    const event = { appId: Number(appId), tpAppId: 1, eventTime: beijingTime(), event: "UNAUTHORIZED" };
    expect(await (await tpEvent("mytp", mytp, event)).text()).toBe("success");
    expect(await authorizer(appId)).toMatchObject({ state: "unauthorized", accessTokenExpiresAt: null });
    const refused = await reply(app, openids[0]!);
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe("unauthorized");
    expect((await api("GET", `/apps/${app}/conversations/${openids[0]}`)).status).toBe(200);
    const newcomer = uniqueId("o");
    expect(await (await tpUserWrites("mytp", mytp, appId, newcomer)).text()).toBe("success");
    expect((await api("GET", `/apps/${app}/conversations/${newcomer}`)).status).toBe(404);
    // An older AUTHORIZED arriving late changes nothing.
    const { authorizationCode } = await standIn<{ authorizationCode: string }>("/tp/authorize", { clientId: "mytp-client", appId });
    const late = { appId: Number(appId), tpAppId: 1, eventTime: beijingTime(Date.now() - 60_000), event: "AUTHORIZED", authorizationCode };
    expect(await (await tpEvent("mytp", mytp, late)).text()).toBe("success");
    expect(await authorizer(appId)).toMatchObject({ state: "unauthorized" });
  });

  it("a withdrawal Baidu has not told us of yet: the queued reply ends failed unauthorized", async () => {
    const { appId, app, openids } = await authorizedProgram();
    await standIn("/tp/unauthorize", { clientId: "mytp-client", appId });
    await expireAccessToken(appId);
    const { body } = await reply(app, openids[0]!);
    expect(await settled(app, body.id)).toMatchObject({ status: "failed", error: { code: "unauthorized" } });
    expect(await stats(`appId=${appId}`)).toMatchObject({ retrieves: 1, reusedRefreshTokens: 0 });
    expect(await authorizer(appId)).toMatchObject({ state: "unauthorized" });
    expect((await reply(app, openids[0]!)).body.error.code).toBe("unauthorized");
  });
});
