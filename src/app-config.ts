import { readConfig, type AppConfig, type Config, type KefuVars } from "./config.ts";
import { KefuError } from "./protocol/errors.ts";

/** The validated configuration, or a clear 503 naming every problem. */
export function requireConfig(env: KefuVars): Config {
  const result = readConfig(env);
  if (!result.ok) throw new KefuError("config_invalid", `configuration is invalid: ${result.problems.join("; ")}`);
  return result.config;
}

export function requireApp(config: Config, name: string): AppConfig {
  const app = config.apps.get(name);
  if (!app) throw new KefuError("unknown_app", `no app named "${name}" in KEFU_APPS`);
  return app;
}
