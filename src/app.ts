import { Hono } from "hono";
import { openapi } from "./api/openapi.ts";
import { api } from "./api/routes.ts";
import { readConfig } from "./config.ts";
import type { HonoEnv } from "./env.ts";
import { log } from "./log.ts";
import { KefuError } from "./protocol/errors.ts";
import { push } from "./push/route.ts";

export const app = new Hono<HonoEnv>();

// One JSON line per request: the handler adds what it knows (app, openid, msgId, outcome), and
// errors add their code and reason. Never secrets, never message bodies.
app.use("*", async (c, next) => {
  const started = Date.now();
  c.set("log", {});
  await next();
  const event = c.req.path.startsWith("/push/") ? "push" : c.req.path.startsWith("/api/") ? "api" : "http";
  log(event, { method: c.req.method, path: c.req.routePath, status: c.res.status, ...c.get("log"), ms: Date.now() - started });
});

/** Whether the configuration is valid, and which apps it has; no secrets. */
app.get("/health", (c) => {
  const result = readConfig(c.env);
  if (!result.ok) return c.json({ ok: false, problems: result.problems }, 503);
  const { config } = result;
  return c.json({
    ok: true,
    apps: [...config.apps.values()].map((a) => ({
      name: a.name,
      platform: a.platform,
      encrypted: a.encodingAesKey !== undefined,
      canSend: a.appKey !== undefined && a.appSecret !== undefined,
    })),
    api: config.apiKey !== undefined,
    webhook: config.webhook ? { host: new URL(config.webhook.url).host, signed: config.webhook.secret !== undefined } : null,
  });
});

app.get("/openapi.json", (c) => c.json(openapi));

app.route("/push", push);
app.route("/api", api);

app.notFound((c) => c.json({ error: { code: "not_found", message: `no route for ${c.req.method} ${c.req.path}` } }, 404));

// The one place errors become HTTP. Anything unexpected is a 503: the caller may retry, and
// nothing was acknowledged.
app.onError((error, c) => {
  const fields = { ...c.get("log"), app: c.req.param("app") };
  if (error instanceof KefuError) {
    c.set("log", { ...fields, outcome: "rejected", code: error.code, reason: error.message });
    return c.json({ error: { code: error.code, message: error.message, ...error.details } }, error.status as 400);
  }
  c.set("log", { ...fields, outcome: "error", reason: String(error), stack: (error as Error)?.stack });
  return c.json({ error: { code: "unavailable", message: "temporarily unavailable, retry" } }, 503);
});
