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

export function requireApp(config: Config, name: string): AppConfig {
  const app = config.apps.get(name);
  if (!app) throw new KefuError("unknown_app", `no app named "${name}" in KEFU_APPS`);
  return app;
}
