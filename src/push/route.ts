import { Hono } from "hono";
import type { HonoEnv } from "../env.ts";
import { readText } from "../http.ts";
import { shortOpenid } from "../log.ts";
import { requireApp, requireConfig } from "../app-config.ts";
import { accept } from "./accept.ts";
import { receive } from "./receive.ts";

/**
 * The largest genuine push is a long text in compatible mode, which carries it twice: as plaintext
 * and inside `Encrypt` (base64, 4/3 larger). We allow for 8,192 three-byte characters — more than
 * either platform's chat box takes — plus the other fields, and half as much again on top.
 */
const LONGEST_TEXT_BYTES = 8192 * 3;
const OTHER_FIELDS_BYTES = 1024;
export const PUSH_BODY_LIMIT = Math.ceil(1.5 * (LONGEST_TEXT_BYTES + OTHER_FIELDS_BYTES) * (1 + 4 / 3));

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
