import { Hono } from "hono";
import { readConfig } from "./config";
import type { Env } from "./env";
import { log } from "./log";
import { KefuError } from "./protocol/errors";
import { api } from "./api/routes";
import { push } from "./push/route";

export const app = new Hono<{ Bindings: Env }>();

app.get("/health", (c) => {
  const result = readConfig(c.env);
  if (!result.ok) return c.json({ ok: false, problems: result.problems }, 503);
  const apps = [...result.config.apps.values()].map(({ name, platform }) => ({ name, platform }));
  return c.json({ ok: true, apps });
});

app.route("/push", push);
app.route("/api", api);

app.notFound((c) => c.json({ error: { code: "not_found", message: `no route for ${c.req.method} ${c.req.path}` } }, 404));

// The one place errors become HTTP. Anything unexpected is a 503: the caller may retry, and
// nothing was acknowledged.
app.onError((error, c) => {
  const route = c.req.routePath;
  const appName = c.req.param("app");
  if (error instanceof KefuError) {
    log("rejected", { route, app: appName, code: error.code, status: error.status, reason: error.message });
    return c.json({ error: { code: error.code, message: error.message, ...error.details } }, error.status as 400);
  }
  log("error", { route, app: appName, reason: String(error), stack: (error as Error)?.stack });
  return c.json({ error: { code: "unavailable", message: "temporarily unavailable, retry" } }, 503);
});
