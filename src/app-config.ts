import { readConfig, type AppConfig, type Config, type KefuVars } from "./config.ts";
import { KefuError } from "./protocol/errors.ts";

/**
 * The validated configuration, or a 503 that names no field: the push URL is public. The problems
 * by field are for whoever holds the API key (GET /health) and in the log.
 */
export function requireConfig(env: KefuVars): Config {
  const result = readConfig(env);
  if (!result.ok) throw new KefuError("config_invalid", "configuration is invalid: GET /health with the API key lists the problems");
  return result.config;
}

/**
 * The app `name`: 404 when KEFU_APPS has no such entry, 503 when its entry is not valid (the
 * other apps keep working). `problems` may name the fields only to a caller holding the API key.
 */
export function requireApp(config: Config, name: string, problems: "hidden" | "shown" = "hidden"): AppConfig {
  const app = config.apps.get(name);
  if (app) return app;
  const broken = config.brokenApps.get(name);
  if (broken) {
    // The push URL is public: it says no more than that the configuration is invalid.
    if (problems === "hidden") throw new KefuError("config_invalid", "configuration is invalid: GET /health with the API key lists the problems");
    throw new KefuError("config_invalid", `app ${name} is not configured validly: ${broken.join("; ")}`);
  }
  throw new KefuError("unknown_app", `no app named "${name}" in KEFU_APPS`);
}
