import type { KefuVars } from "./config.ts";
import type { Conversation } from "./conversation/conversation.ts";
import type { Directory } from "./conversation/directory.ts";
import type { ForwardJob, SendJob } from "./conversation/jobs.ts";
import type { AccessTokens } from "./dispatch/tokens.ts";

/** The Worker's bindings (wrangler.toml) and variables (vars and secrets). */
export interface Env extends KefuVars {
  /** Fast, eventually consistent "seen this push?" with a TTL. */
  DEDUPE: KVNamespace;
  CONVERSATIONS: DurableObjectNamespace<Conversation>;
  DIRECTORY: DurableObjectNamespace<Directory>;
  ACCESS_TOKENS: DurableObjectNamespace<AccessTokens>;
  FORWARDS: Queue<ForwardJob>;
  SENDS: Queue<SendJob>;
}

/**
 * Hono's view: the bindings, the fields of the one log line each request writes, and whether the
 * caller showed a valid API key (GET /health).
 */
export type HonoEnv = { Bindings: Env; Variables: { log: Record<string, unknown>; authenticated?: boolean } };
