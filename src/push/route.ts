import { Hono } from "hono";
import type { HonoEnv } from "../env.ts";
import { readText } from "../http.ts";
import { shortOpenid } from "../log.ts";
import { requireApp, requireConfig } from "../app-config.ts";
import { accept } from "./accept.ts";
import { receive } from "./receive.ts";
import { PUSH_BODY_LIMIT } from "../protocol/push.ts";

export const push = new Hono<HonoEnv>();

push.on(["GET", "POST"], "/:app", async (c) => {
  const config = requireConfig(c.env);
  const app = requireApp(config, c.req.param("app"));
  const body = await readText(c.req.raw, PUSH_BODY_LIMIT);
  const clock = { now: Date.now() / 1000, toleranceSeconds: config.signatureToleranceSeconds };
  const received = receive(app, { method: c.req.method, query: c.req.query(), body }, clock);
  if (received.kind === "handshake") {
    c.set("log", { app: app.name, outcome: "handshake" });
    return c.text(received.echo);
  }
  const { message, mode } = received;
  const acceptance = await accept(c.env, c.executionCtx, config, app, message);
  c.set("log", { app: app.name, openid: shortOpenid(message.openid), msgId: message.msgId, type: message.type, mode, ...acceptance });
  return c.text("success");
});
