import { Buffer } from "node:buffer";
import { Hono } from "hono";
import { requireApp, requireConfig } from "../app-config.ts";
import { conversation } from "../conversation/conversation.ts";
import { decodeCursor } from "../conversation/directory.ts";
import type { HonoEnv } from "../env.ts";
import { readText } from "../http.ts";
import { shortOpenid } from "../log.ts";
import { KefuError } from "../protocol/errors.ts";
import { safeEqual } from "../protocol/signature.ts";
import { parseReplyBody } from "./reply-body.ts";

const BODY_LIMIT = 64 * 1024;

export const api = new Hono<HonoEnv>();

// Bearer auth on everything under /api, compared in constant time.
api.use("*", async (c, next) => {
  const { apiKey } = requireConfig(c.env);
  if (!apiKey) throw new KefuError("config_invalid", "KEFU_API_KEY is not set: the API is disabled");
  const given = /^Bearer (.+)$/.exec(c.req.header("authorization") ?? "")?.[1];
  if (!given || !safeEqual(given, apiKey)) {
    throw new KefuError("unauthorized", "missing or wrong API key: send Authorization: Bearer <KEFU_API_KEY>");
  }
  await next();
});

/** Send a reply: reserve a slot in the user's window, then hand the send to the SENDS queue. */
api.post("/apps/:app/messages", async (c) => {
  const app = requireApp(requireConfig(c.env), c.req.param("app"));
  if (!app.appKey || !app.appSecret) {
    throw new KefuError("config_invalid", `app ${app.name} has no appKey/appSecret in KEFU_APPS: it cannot send replies`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(await readText(c.req.raw, BODY_LIMIT));
  } catch (error) {
    if (error instanceof KefuError) throw error;
    throw new KefuError("invalid_body", "body must be a JSON object");
  }
  const { openid, request } = parseReplyBody(raw, app);
  const idempotencyKey = c.req.header("idempotency-key");
  if (idempotencyKey !== undefined && (idempotencyKey.length === 0 || idempotencyKey.length > 255)) {
    throw new KefuError("invalid_body", "Idempotency-Key must be 1-255 characters");
  }
  const result = await conversation(c.env, app.name, openid).reserveReply(app.name, openid, newReplyId(openid), request, idempotencyKey);
  c.set("log", {
    app: app.name,
    openid: shortOpenid(openid),
    type: request.reply.type,
    outcome: result.ok ? (result.replayed ? "replayed" : "queued") : result.code,
  });
  if (!result.ok) throw new KefuError(result.code, result.message, { quota: result.quota });
  if (result.replayed) c.header("Idempotent-Replayed", "true");
  return c.json(result.answer, 202);
});

/** A reply's delivery state. */
api.get("/apps/:app/messages/:id", async (c) => {
  const app = requireApp(requireConfig(c.env), c.req.param("app"));
  const id = c.req.param("id");
  const openid = openidOfReply(id);
  const reply = openid ? await conversation(c.env, app.name, openid).reply(id) : null;
  if (!reply) throw new KefuError("not_found", `no reply ${id} in app ${app.name}`);
  return c.json({ id: reply.id, status: reply.status, attempts: reply.attempts, createdAt: reply.createdAt, updatedAt: reply.updatedAt, ...(reply.error && { error: reply.error }) });
});

/** One conversation: the window, the replies left and the recent history, newest first. */
api.get("/apps/:app/conversations/:openid", async (c) => {
  const app = requireApp(requireConfig(c.env), c.req.param("app"));
  const openid = c.req.param("openid");
  const limit = pageSize(c.req.query("limit"), 50, 200);
  const snapshot = await conversation(c.env, app.name, openid).snapshot(limit);
  if (!snapshot) throw new KefuError("not_found", `no conversation with ${openid} in app ${app.name}`);
  return c.json(snapshot);
});

/** The most recently active conversations, newest first; follow `next` for older ones. */
api.get("/apps/:app/conversations", async (c) => {
  const app = requireApp(requireConfig(c.env), c.req.param("app"));
  const limit = pageSize(c.req.query("limit"), 20, 100);
  const before = c.req.query("before");
  const cursor = before === undefined ? undefined : decodeCursor(before);
  if (before !== undefined && !cursor) throw new KefuError("invalid_body", "before: not a cursor from a previous page's `next`");
  return c.json(await c.env.DIRECTORY.getByName(app.name).list(limit, cursor));
});

function pageSize(raw: string | undefined, fallback: number, max: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new KefuError("invalid_body", `limit: must be an integer from 1 to ${max}`);
  return n;
}

/** Reply ids carry their conversation, so a reply can be found without an index. */
function newReplyId(openid: string): string {
  const random = crypto.randomUUID().replaceAll("-", "");
  return `rpl_${random}.${Buffer.from(openid).toString("base64url")}`;
}

function openidOfReply(id: string): string | undefined {
  const match = /^rpl_[0-9a-f]{32}\.([A-Za-z0-9_-]+)$/.exec(id);
  return match ? Buffer.from(match[1]!, "base64url").toString() : undefined;
}
