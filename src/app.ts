import { OpenAPIHono } from "@hono/zod-openapi";
import { HTTPException } from "hono/http-exception";
import { apiKeyCheck, api } from "./api/routes.ts";
import { MessageFailedSchema, MessageReceivedSchema, MessageSentSchema } from "./api/schemas.ts";
import { readConfig } from "./config.ts";
import type { HonoEnv } from "./env.ts";
import { log } from "./log.ts";
import { KefuError } from "./protocol/errors.ts";
import { push } from "./push/route.ts";
import { tp } from "./tp/route.ts";
import { z } from "./zod.ts";

export const app = new OpenAPIHono<HonoEnv>();

// One JSON line per request: the handler adds what it knows (app, openid, msgId, outcome), and
// errors add their code and reason. Never secrets, never message bodies.
app.use("*", async (c, next) => {
  const started = Date.now();
  c.set("log", {});
  await next();
  const event = /^\/(push\/|tp\/[^/]+\/(events|messages)$)/.test(c.req.path) ? "push" : c.req.path.startsWith("/api/") ? "api" : "http";
  log(event, { method: c.req.method, path: c.req.routePath, status: c.res.status, ...c.get("log"), ms: Date.now() - started });
});

/**
 * Whether the configuration is valid. The push URL's host is public, so without the API key this
 * says only `{"ok"}`; with it, the apps, what they can do and the problems by field (never secrets).
 */
app.get(
  "/health",
  // A caller who sends a key has it checked (401 when wrong); one who sends none stays anonymous.
  async (c, next) => {
    if (c.req.header("authorization") !== undefined) await apiKeyCheck(c, async () => c.set("authenticated", true));
    await next();
  },
  (c) => {
    const result = readConfig(c.env);
    const status = result.ok && result.config.brokenApps.size === 0 ? 200 : 503;
    if (!c.get("authenticated")) return c.json({ ok: status === 200 }, status);
    if (!result.ok) return c.json({ ok: false, problems: result.problems }, 503);
    const { config } = result;
    const problems = [...config.brokenApps.values()].flat();
    return c.json(
      {
        ok: problems.length === 0,
        ...(problems.length > 0 && { problems }),
        apps: [...config.apps.values()].map((a) => ({
          name: a.name,
          platform: a.platform,
          mode: a.mode,
          encrypted: a.encodingAesKey !== undefined,
          canSend: a.appKey !== undefined && a.appSecret !== undefined,
        })),
        thirdParties: [...config.thirdParties.keys()],
        api: config.apiKeys.length > 0,
        cors: config.corsOrigins,
        webhook: config.webhook ? { host: new URL(config.webhook.url).host, signed: config.webhook.secret !== undefined } : null,
      },
      problems.length === 0 ? 200 : 503,
    );
  },
);

app.route("/push", push);
app.route("/tp", tp);
app.route("/api", api);

// What the business's webhook receives, from the schemas the deliveries are typed by.
const webhookHeaders = z.object({
  "webhook-id": z.string().openapi({ description: "Stable per message or reply event: de-duplicate on it" }),
  "webhook-timestamp": z.string().openapi({ description: "Unix seconds of this attempt" }),
  "webhook-signature": z.string().optional().openapi({ description: "v1,<base64 HMAC-SHA256>, with KEFU_WEBHOOK_SECRET set" }),
});
const webhookEvents = [
  ["message.received", "An accepted message, forwarded to KEFU_WEBHOOK_URL in the user's order (Standard Webhooks signing)", MessageReceivedSchema],
  ["message.sent", "A reply the platform accepted (Standard Webhooks signing)", MessageSentSchema],
  ["message.failed", "A reply that will not be sent, with the reason (Standard Webhooks signing)", MessageFailedSchema],
] as const;
for (const [event, summary, schema] of webhookEvents) {
  app.openAPIRegistry.registerWebhook({
    method: "post",
    path: event,
    summary,
    request: { headers: webhookHeaders, body: { required: true, content: { "application/json": { schema } } } },
    responses: {
      200: { description: "Any 2xx within KEFU_CALL_TIMEOUT_MS acknowledges; anything else is retried with backoff" },
    },
  });
}

app.doc31("/openapi.json", {
  openapi: "3.1.0",
  info: {
    title: "kefu-edge",
    version: "1",
    description: "Reply to mini-program users through Baidu's or WeChat's customer-service send API, within the platform's reply window and quota.",
  },
  security: [{ bearer: [] }],
});

app.notFound((c) => c.json({ error: { code: "not_found", message: `no route for ${c.req.method} ${c.req.path}` } }, 404));

/** Hono's own refusals (a body that is not JSON, not sent as JSON), in our words and shape. */
const httpExceptions: Record<number, { code: string; message: string; field?: string }> = {
  400: { code: "invalid_body", message: "body: must be a JSON object", field: "body" },
  415: { code: "unsupported_media_type", message: "send the body as application/json" },
};

// The one place errors become HTTP. Anything unexpected is a 503: the caller may retry, and
// nothing was acknowledged.
app.onError((error, c) => {
  const fields = { ...c.get("log"), app: c.req.param("app") };
  if (error instanceof KefuError) {
    c.set("log", { ...fields, outcome: "rejected", code: error.code, reason: error.message });
    return c.json({ error: { code: error.code, message: error.message, ...error.details } }, error.status as 400);
  }
  if (error instanceof HTTPException) {
    c.set("log", { ...fields, outcome: "rejected", status: error.status });
    // bearerAuth's refusals are already ours (401, WWW-Authenticate); the others get our shape.
    if (error.res) return error.getResponse();
    const known = httpExceptions[error.status] ?? { code: "bad_request", message: "request refused" };
    return c.json({ error: known }, error.status);
  }
  c.set("log", { ...fields, outcome: "error", reason: String(error), stack: (error as Error)?.stack });
  return c.json({ error: { code: "unavailable", message: "temporarily unavailable, retry" } }, 503);
});
