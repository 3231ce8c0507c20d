import { Hono, type Context } from "hono";
import { html } from "hono/html";
import { requireConfig } from "../app-config.ts";
import type { Config, ThirdPartyConfig } from "../config.ts";
import type { HonoEnv } from "../env.ts";
import { readText } from "../http.ts";
import { shortOpenid } from "../log.ts";
import { KefuError } from "../protocol/errors.ts";
import { answerHandshake, openPush, PUSH_BODY_LIMIT } from "../protocol/push.ts";
import { readPlatformEvent, type PlatformEvent } from "../protocol/tp-event.ts";
import { accept } from "../push/accept.ts";
import { handshakeParams, receive } from "../push/receive.ts";
import { findApp, requireThirdParty, tpApp, tpAppName } from "./apps.ts";
import { authorizeByRedirect } from "./credentials.ts";

/**
 * A third-party platform's URLs (README, "Third-party platform mode"): the 授权事件接收URL
 * (`/tp/:tp/events`), the 消息与事件接收URL (`/tp/:tp/messages`) and the page a merchant comes
 * back to after authorizing (`/tp/:tp/authorized`). One log line per request, as for /push.
 */
export const tp = new Hono<HonoEnv>();

const clockOf = (config: Config) => ({ now: Date.now() / 1000, toleranceSeconds: config.signatureToleranceSeconds });

tp.post("/:tp/events", async (c) => {
  const config = requireConfig(c.env);
  const platform = requireThirdParty(config, c.req.param("tp"));
  const body = await readText(c.req.raw, PUSH_BODY_LIMIT);
  const query = c.req.query();
  const handshake = handshakeParams(query, body);
  if (handshake) {
    const echo = answerHandshake(handshake, platform.token, clockOf(config));
    c.set("log", { tp: platform.name, outcome: "handshake" });
    return c.text(echo);
  }
  const opened = openPush(query, body, { token: platform.token, mode: "safe", encodingAesKey: platform.encodingAesKey }, clockOf(config));
  const event = readPlatformEvent(opened.fields);
  c.set("log", { tp: platform.name, ...(await handle(c, platform, event)) });
  return c.text("success");
});

/** Applies one platform event; throws (503, Baidu retries) only when it could not be applied yet. */
async function handle(c: Context<HonoEnv>, platform: ThirdPartyConfig, event: PlatformEvent): Promise<Record<string, unknown>> {
  const env = c.env;
  const tp = platform.name;
  switch (event.kind) {
    case "ticket": {
      const { kept } = await env.THIRD_PARTIES.getByName(tp).saveTicket(event.ticket, event.createTime);
      return { tpEvent: "ticket", outcome: kept ? "kept" : "older" };
    }
    case "other":
      return { tpEvent: event.name, appId: event.appId, outcome: "ignored" };
    case "authorized":
    case "unauthorized": {
      const key = `${event.appId}:${event.event}:${event.eventTime}`;
      const platformStub = env.THIRD_PARTIES.getByName(tp);
      const fields = { tpEvent: event.event, appId: event.appId };
      if (await platformStub.wasHandled(key)) return { ...fields, outcome: "duplicate" };
      const authorizer = env.AUTHORIZERS.getByName(tpAppName(tp, event.appId));
      if (event.kind === "unauthorized") {
        const { applied } = await authorizer.revoke(tp, event.appId, event.eventAt);
        await platformStub.markHandled(key);
        return { ...fields, outcome: applied ? "unauthorized" : "stale" };
      }
      const result = await authorizer.authorize(tp, event.appId, event.code, event.eventAt);
      if (!result.ok) {
        c.set("log", { tp, ...fields, reason: result.error });
        // Not applied: a refusal that is not ours to fix is acknowledged (and logged); anything
        // transient asks Baidu to push again.
        if (result.retry) throw new KefuError("unavailable", "the authorization could not be applied yet: retry");
        return { ...fields, outcome: "failed", reason: result.error };
      }
      await platformStub.markHandled(key);
      return { ...fields, outcome: result.stale ? "stale" : "authorized", kefuGranted: result.summary.kefuGranted };
    }
  }
}

tp.on(["GET", "POST"], "/:tp/messages", async (c) => {
  const config = requireConfig(c.env);
  const platform = requireThirdParty(config, c.req.param("tp"));
  const body = await readText(c.req.raw, PUSH_BODY_LIMIT);
  // Verified and decoded as a push to any of the platform's mini programs; the addressee says which.
  const received = receive(tpApp(platform, "", "authorized"), { method: c.req.method, query: c.req.query(), body }, clockOf(config));
  if (received.kind === "handshake") {
    c.set("log", { tp: platform.name, outcome: "handshake" });
    return c.text(received.echo);
  }
  const { message, mode } = received;
  const fields = { tp: platform.name, openid: shortOpenid(message.openid), msgId: message.msgId, type: message.type, mode };
  const app = /^[A-Za-z0-9]{1,64}$/.test(message.to) ? await findApp(c.env, config, tpAppName(platform.name, message.to)) : undefined;
  if (!app || app.thirdParty?.state === "unauthorized") {
    c.set("log", { ...fields, appId: message.to.slice(0, 64), outcome: "not_authorized" });
    return c.text("success");
  }
  const acceptance = await accept(c.env, c.executionCtx, config, app, { ...message, app: app.name, tp: platform.name, appId: message.to });
  c.set("log", { ...fields, app: app.name, ...acceptance });
  return c.text("success");
});

/** Where Baidu sends the merchant after the authorization page: the code is exchanged, the merchant told. */
tp.get("/:tp/authorized", async (c) => {
  const config = requireConfig(c.env);
  const platform = requireThirdParty(config, c.req.param("tp"));
  const code = c.req.query("authorization_code");
  const page = (status: 200 | 400 | 503, title: string, detail: string) =>
    c.html(html`<!doctype html><html lang="zh"><meta charset="utf-8"><title>${title}</title><body><h1>${title}</h1><p>${detail}</p></body></html>`, status);
  if (!code || code.length > 512) {
    c.set("log", { tp: platform.name, outcome: "no_code" });
    return page(400, "授权未完成 Authorization not completed", "Baidu did not send an authorization code back. Start again from the authorization link.");
  }
  const result = await authorizeByRedirect(c.env, config, platform, code);
  if (!result.ok) {
    c.set("log", { tp: platform.name, outcome: "failed", reason: result.error });
    return result.retry
      ? page(
          503,
          "授权暂未完成 Authorization not completed yet",
          "Baidu could not be reached to complete it. Reload this page within the hour, or start again.",
        )
      : page(
          400,
          "授权失败 Authorization failed",
          "Baidu refused the authorization code (used, expired or not for this platform). Start again from the authorization link.",
        );
  }
  const { summary } = result;
  c.set("log", { tp: platform.name, app: summary.app, outcome: "authorized", kefuGranted: summary.kefuGranted });
  const kefu = summary.kefuGranted
    ? "客服消息 (customer service) is granted: replies will work."
    : "客服消息 (customer service) was not granted: replies will be refused by Baidu until you grant it.";
  return page(200, "授权成功 Authorized", `Mini program ${summary.appId} is now served by ${platform.name}. ${kefu}`);
});
