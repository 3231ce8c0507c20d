import { Buffer } from "node:buffer";
import { createRoute, OpenAPIHono, z, type Hook } from "@hono/zod-openapi";
import { bearerAuth } from "hono/bearer-auth";
import { bodyLimit } from "hono/body-limit";
import { cors } from "hono/cors";
import { createMiddleware } from "hono/factory";
import type { Context, MiddlewareHandler } from "hono";
import { readAccess, readConfig, type AppConfig, type Config, type ThirdPartyConfig } from "../config.ts";
import { preAuthorizationUrl } from "../tp/credentials.ts";
import { conversation, decodeHistoryCursor } from "../conversation/conversation.ts";
import { decodeCursor } from "../conversation/directory.ts";
import { resolveApp, requireThirdParty } from "../tp/apps.ts";
import type { HonoEnv } from "../env.ts";
import { shortOpenid } from "../log.ts";
import { KefuError } from "../protocol/errors.ts";
import { safeEqual } from "../protocol/signature.ts";
import { issuePath } from "../zod.ts";
import {
  Accepted,
  AuthorizationLink,
  AuthorizerList,
  ConversationPage,
  ConversationSchema,
  errorSchema,
  ForwardList,
  IdempotencyHeaders,
  platformReply,
  RedriveAnswer,
  RedriveBody,
  ReplyBody,
  ReplyState,
} from "./schemas.ts";

const BODY_LIMIT = 64 * 1024;

/** A schema failure, in our words: the first wrong field and why. */
const schemaRefusal: Hook<unknown, HonoEnv, string, undefined> = (result) => {
  if (result.success) return;
  const issue = result.error.issues[0];
  const field = issuePath(issue?.path ?? []) || (result.target === "json" ? "body" : result.target);
  throw new KefuError("invalid_body", `${field}: ${issue?.message ?? "is not valid"}`, { field });
};

export const api = new OpenAPIHono<HonoEnv>({ defaultHook: schemaRefusal });

// ---- who may call: CORS (when configured), then the API key, then a valid configuration -------

/** The configured browser origins (KEFU_CORS_ORIGINS); none while they cannot be read. */
const corsOrigins = (c: Context<HonoEnv>) => {
  const access = readAccess(c.env);
  return access.ok ? access.corsOrigins : [];
};

const allowedOrigins = cors({
  origin: (origin, c) => {
    const allowed = corsOrigins(c);
    return allowed.includes("*") ? "*" : allowed.includes(origin) ? origin : null;
  },
  allowMethods: ["GET", "POST"],
  allowHeaders: ["Authorization", "Content-Type", "Idempotency-Key"],
  exposeHeaders: ["Idempotent-Replayed"],
  maxAge: 600,
});

// Hono's CORS, only when origins are configured; preflights are answered here, before the key check.
api.use("*", (c, next) => (corsOrigins(c).length > 0 ? allowedOrigins(c, next) : next()));

const refuse = (message: string) => (c: Context) => c.json({ error: { code: "unauthorized", message } }, 401);

/** Hono's bearerAuth against every configured key (KEFU_API_KEY and KEFU_API_KEYS). */
export const apiKeyCheck = bearerAuth({
  verifyToken: (token, c: Context<HonoEnv>) => {
    const access = readAccess(c.env);
    // Every key is compared, in constant time, so the answer's timing tells nothing.
    return access.ok && access.apiKeys.reduce((found, key) => safeEqual(token, key) || found, false);
  },
  noAuthenticationHeader: { message: refuse("no API key: send Authorization: Bearer <KEFU_API_KEY>") },
  invalidAuthenticationHeader: { message: refuse("malformed Authorization header: send Authorization: Bearer <KEFU_API_KEY>") },
  invalidToken: { message: refuse("wrong API key: send Authorization: Bearer <KEFU_API_KEY>") },
});

api.use("*", async (c, next) => {
  const access = readAccess(c.env);
  if (!access.ok || access.apiKeys.length === 0) {
    const why = access.ok ? "KEFU_API_KEY and KEFU_API_KEYS are not set" : "the API keys are not valid (see the config log line)";
    throw new KefuError("config_invalid", `the API is disabled: ${why}`);
  }
  return apiKeyCheck(c, next);
});

/** The caller holds a key, so the problems may be named by field. */
function apiConfig(env: HonoEnv["Bindings"]): Config {
  const result = readConfig(env);
  if (!result.ok) throw new KefuError("config_invalid", `configuration is invalid: ${result.problems.join("; ")}`);
  return result.config;
}

/** The app of the path, before the request's own fields are looked at (404 before 400). */
const knownApp = createMiddleware<HonoEnv & { Variables: { app: AppConfig } }>(async (c, next) => {
  c.set("app", await resolveApp(c.env, apiConfig(c.env), c.req.param("app") ?? "", "shown"));
  await next();
});

// ---- the routes, each declared once -------------------------------------------------------------

const limitedBody: MiddlewareHandler<HonoEnv> = bodyLimit({
  maxSize: BODY_LIMIT,
  onError: () => {
    throw new KefuError("body_too_large", `body exceeds the ${BODY_LIMIT}-byte limit`);
  },
});

const json = <T extends z.ZodType>(schema: T, description: string) => ({ description, content: { "application/json": { schema } } });

const appParam = z.string().openapi({ description: "The app's name in KEFU_APPS, or <tp>.<appId> for a mini program authorized to a third-party platform" });

/** The answers every /api route can give besides its own. */
const commonAnswers = {
  401: json(errorSchema(["unauthorized"]), "No, a malformed or a wrong API key (WWW-Authenticate says which)"),
  503: json(
    errorSchema(["config_invalid", "unavailable"]),
    "The API is disabled (no key configured), the configuration is invalid, or a temporary failure: retry",
  ),
};

const sendReply = createRoute({
  method: "post",
  path: "/apps/{app}/messages",
  summary: "Send a reply: reserves one slot of the user's window and queues the send",
  middleware: [knownApp, limitedBody] as const,
  request: {
    params: z.object({ app: appParam }),
    headers: IdempotencyHeaders,
    body: { required: true, content: { "application/json": { schema: ReplyBody } } },
  },
  responses: {
    202: {
      ...json(Accepted, "Queued; a replayed Idempotency-Key returns the first answer"),
      headers: z.object({ "idempotent-replayed": z.literal("true").optional().openapi({ description: "This is the first answer to this key, replayed" }) }),
    },
    400: json(errorSchema(["invalid_body"]), "A field is wrong for the schema or for the app's platform: `field` names the first"),
    404: json(errorSchema(["unknown_app", "not_found"]), "No such app"),
    409: json(
      errorSchema(["window_closed", "quota_exhausted", "unauthorized"]),
      "The platform would refuse this reply: nothing is sent; `quota` is the current quota. unauthorized: a third-party mini program whose authorization was withdrawn",
    ),
    413: json(errorSchema(["body_too_large"]), `Body over ${BODY_LIMIT} bytes`),
    415: json(errorSchema(["unsupported_media_type"]), "The body is not sent as application/json"),
    422: json(errorSchema(["idempotency_conflict"]), "The Idempotency-Key was used with another body"),
    ...commonAnswers,
  },
});

api.openapi(sendReply, async (c) => {
  const app = c.var.app;
  if (app.thirdParty?.state === "unauthorized") {
    throw new KefuError(
      "unauthorized",
      `the merchant withdrew ${app.name}'s authorization of platform ${app.thirdParty.platform}: it cannot be sent replies until authorized again`,
    );
  }
  if (!app.thirdParty && (!app.appKey || !app.appSecret)) {
    throw new KefuError("config_invalid", `app ${app.name} has no appKey/appSecret in KEFU_APPS: it cannot send replies`);
  }
  const { openid, request } = platformReply(c.req.valid("json"), app.rules);
  const idempotencyKey = c.req.valid("header")["idempotency-key"];
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

const getReply = createRoute({
  method: "get",
  path: "/apps/{app}/messages/{id}",
  summary: "A reply's delivery state",
  middleware: [knownApp] as const,
  request: { params: z.object({ app: appParam, id: z.string().openapi({ description: "The `id` of the 202 answer" }) }) },
  responses: {
    200: json(ReplyState, "The reply"),
    404: json(errorSchema(["unknown_app", "not_found"]), "No such app, or no such reply in it"),
    ...commonAnswers,
  },
});

api.openapi(getReply, async (c) => {
  const app = c.var.app;
  const { id } = c.req.valid("param");
  const openid = openidOfReply(id);
  const reply = openid ? await conversation(c.env, app.name, openid).reply(id) : null;
  if (!reply) throw new KefuError("not_found", `no reply ${id} in app ${app.name}`);
  return c.json(
    {
      id: reply.id,
      status: reply.status,
      attempts: reply.attempts,
      createdAt: reply.createdAt,
      updatedAt: reply.updatedAt,
      ...(reply.error && { error: reply.error }),
    },
    200,
  );
});

const limit = (fallback: number, max: number) => {
  const why = `must be an integer from 1 to ${max}`;
  return z.coerce
    .number({ error: why })
    .int({ error: why })
    .min(1, { error: why })
    .max(max, { error: why })
    .default(fallback)
    .openapi({ description: `How many, at most (default ${fallback})` });
};

const getConversation = createRoute({
  method: "get",
  path: "/apps/{app}/conversations/{openid}",
  summary: "One conversation: quota, window and a page of history (in and out), newest first; follow `next` for older entries",
  middleware: [knownApp] as const,
  request: {
    params: z.object({ app: appParam, openid: z.string() }),
    query: z.object({
      limit: limit(50, 200),
      before: z
        .string()
        .refine((s) => decodeHistoryCursor(s) !== undefined, "not a cursor from a previous page's `next`")
        .optional()
        .openapi({ description: "`next` of the previous page" }),
    }),
  },
  responses: {
    200: json(ConversationSchema, "The conversation"),
    400: json(errorSchema(["invalid_body"]), "`limit` out of range or `before` not a cursor"),
    404: json(errorSchema(["unknown_app", "not_found"]), "No such app, or no conversation with this user"),
    ...commonAnswers,
  },
});

api.openapi(getConversation, async (c) => {
  const app = c.var.app;
  const { openid } = c.req.valid("param");
  const { limit, before } = c.req.valid("query");
  const snapshot = await conversation(c.env, app.name, openid).snapshot(limit, before === undefined ? undefined : decodeHistoryCursor(before));
  if (!snapshot) throw new KefuError("not_found", `no conversation with ${openid} in app ${app.name}`);
  return c.json(snapshot, 200);
});

const listConversations = createRoute({
  method: "get",
  path: "/apps/{app}/conversations",
  summary: "The most recently active conversations, newest first; follow `next` for older ones",
  middleware: [knownApp] as const,
  request: {
    params: z.object({ app: appParam }),
    query: z.object({
      limit: limit(20, 100),
      before: z
        .string()
        .refine((s) => decodeCursor(s) !== undefined, "not a cursor from a previous page's `next`")
        .optional()
        .openapi({ description: "`next` of the previous page" }),
    }),
  },
  responses: {
    200: json(ConversationPage, "A page"),
    400: json(errorSchema(["invalid_body"]), "`limit` out of range or `before` not a cursor"),
    404: json(errorSchema(["unknown_app"]), "No such app"),
    ...commonAnswers,
  },
});

api.openapi(listConversations, async (c) => {
  const { limit, before } = c.req.valid("query");
  const page = await c.env.DIRECTORY.getByName(c.var.app.name).list(limit, before === undefined ? undefined : decodeCursor(before));
  return c.json(page, 200);
});

const listForwards = createRoute({
  method: "get",
  path: "/apps/{app}/forwards",
  summary: "Forwards to the webhook that failed: given up on (`failed`), or waiting for a retry after a failed attempt (`pending`)",
  middleware: [knownApp] as const,
  request: {
    params: z.object({ app: appParam }),
    query: z.object({
      status: z.enum(["failed", "pending"], { error: 'must be "failed" or "pending"' }).default("failed").openapi({ description: "Which (default failed)" }),
      limit: limit(100, 1000),
    }),
  },
  responses: {
    200: json(ForwardList, "The forwards, by conversation"),
    400: json(errorSchema(["invalid_body"]), "`status` or `limit` is wrong"),
    404: json(errorSchema(["unknown_app"]), "No such app"),
    ...commonAnswers,
  },
});

api.openapi(listForwards, async (c) => {
  const { status, limit } = c.req.valid("query");
  const forwards = await c.env.DIRECTORY.getByName(c.var.app.name).forwards(c.var.app.name, status, limit);
  return c.json({ forwards: forwards.map((f) => ({ ...f, status })) }, 200);
});

const redriveForwards = createRoute({
  method: "post",
  path: "/apps/{app}/forwards/redrive",
  summary: "Queue failed forwards again, with fresh attempts: every failed one of the app with `{}`, or those of `msgIds`",
  middleware: [knownApp, limitedBody] as const,
  request: {
    params: z.object({ app: appParam }),
    body: { required: true, content: { "application/json": { schema: RedriveBody } } },
  },
  responses: {
    200: json(RedriveAnswer, "How many were queued again, and which of `msgIds` are not failed forwards"),
    400: json(errorSchema(["invalid_body"]), "`msgIds` is not a list of MsgIds"),
    404: json(errorSchema(["unknown_app"]), "No such app"),
    413: json(errorSchema(["body_too_large"]), `Body over ${BODY_LIMIT} bytes`),
    415: json(errorSchema(["unsupported_media_type"]), "The body is not sent as application/json"),
    ...commonAnswers,
  },
});

api.openapi(redriveForwards, async (c) => {
  const { msgIds } = c.req.valid("json");
  const answer = await c.env.DIRECTORY.getByName(c.var.app.name).redrive(c.var.app.name, msgIds);
  c.set("log", { app: c.var.app.name, outcome: "redriven", redriven: answer.redriven });
  return c.json(answer, 200);
});

// ---- third-party platforms ---------------------------------------------------------------------

const tpParam = z.string().openapi({ description: "The platform's name in KEFU_THIRD_PARTY" });

/** The platform of the path, before anything else (404). */
const knownPlatform = createMiddleware<HonoEnv & { Variables: { platform: ThirdPartyConfig } }>(async (c, next) => {
  c.set("platform", requireThirdParty(apiConfig(c.env), c.req.param("tp") ?? ""));
  await next();
});

const authorizationLink = createRoute({
  method: "post",
  path: "/tp/{tp}/authorization-link",
  summary: "A link for a merchant: Baidu's authorization page with a fresh pre-auth code, coming back to GET /tp/{tp}/authorized",
  middleware: [knownPlatform] as const,
  request: { params: z.object({ tp: tpParam }) },
  responses: {
    200: json(AuthorizationLink, "The link (its pre-auth code is valid 1200 s)"),
    404: json(errorSchema(["unknown_app"]), "No such platform"),
    ...commonAnswers,
  },
});

api.openapi(authorizationLink, async (c) => {
  const platform = c.var.platform;
  const redirectUri = `${new URL(c.req.url).origin}/tp/${encodeURIComponent(platform.name)}/authorized`;
  const result = await preAuthorizationUrl(c.env, apiConfig(c.env), platform, redirectUri);
  c.set("log", { tp: platform.name, outcome: result.ok ? "link" : "failed" });
  if (!result.ok) throw new KefuError("unavailable", `no pre-auth code from Baidu: ${result.error}`);
  return c.json({ url: result.url }, 200);
});

const listAuthorizers = createRoute({
  method: "get",
  path: "/tp/{tp}/authorizers",
  summary: "Every mini program authorized to the platform (now or before), with its credentials' state",
  middleware: [knownPlatform] as const,
  request: { params: z.object({ tp: tpParam }) },
  responses: {
    200: json(AuthorizerList, "The mini programs"),
    404: json(errorSchema(["unknown_app"]), "No such platform"),
    ...commonAnswers,
  },
});

api.openapi(listAuthorizers, async (c) => {
  const platform = c.var.platform;
  const appIds = await c.env.THIRD_PARTIES.getByName(platform.name).appIds();
  const summaries = await Promise.all(appIds.map((appId) => c.env.AUTHORIZERS.getByName(`${platform.name}.${appId}`).summary()));
  const status = await c.env.THIRD_PARTIES.getByName(platform.name).status();
  c.set("log", { tp: platform.name, authorizers: appIds.length });
  return c.json({ platform: { name: platform.name, ...status }, authorizers: summaries.filter((s) => s !== null) }, 200);
});

api.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
  type: "http",
  scheme: "bearer",
  description: "KEFU_API_KEY, or any key of KEFU_API_KEYS",
});

/** Reply ids carry their conversation, so a reply can be found without an index. */
function newReplyId(openid: string): string {
  const random = crypto.randomUUID().replaceAll("-", "");
  return `rpl_${random}.${Buffer.from(openid).toString("base64url")}`;
}

function openidOfReply(id: string): string | undefined {
  const match = /^rpl_[0-9a-f]{32}\.([A-Za-z0-9_-]+)$/.exec(id);
  return match ? Buffer.from(match[1]!, "base64url").toString() : undefined;
}
