import type { KefuVars } from "./config";

/** The Worker's bindings (wrangler.toml) and variables (vars and secrets). */
export interface Env extends KefuVars {
  DEDUPE: KVNamespace;
}
