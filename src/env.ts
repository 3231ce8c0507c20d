import type { KefuVars } from "./config.ts";
import type { Conversation } from "./conversation/conversation.ts";
import type { Directory } from "./conversation/directory.ts";
import type { ForwardJob, SendJob } from "./conversation/jobs.ts";
import type { AccessTokens } from "./dispatch/tokens.ts";
import type { Authorizer, ThirdParty } from "./tp/credentials.ts";

/** The Worker's bindings (wrangler.toml) and variables (vars and secrets). */
export interface Env extends KefuVars {
  /** Fast, eventually consistent "seen this push?" with a TTL. */
  DEDUPE: KVNamespace;
  CONVERSATIONS: DurableObjectNamespace<Conversation>;
  DIRECTORY: DurableObjectNamespace<Directory>;
  ACCESS_TOKENS: DurableObjectNamespace<AccessTokens>;
  /** Third-party platforms: one per platform (ticket, platform token), one per authorized mini program. */
  THIRD_PARTIES: DurableObjectNamespace<ThirdParty>;
  AUTHORIZERS: DurableObjectNamespace<Authorizer>;
  FORWARDS: Queue<ForwardJob>;
  SENDS: Queue<SendJob>;
}

/**
 * Hono's view: the bindings, the fields of the one log line each request writes, and whether the
 * caller showed a valid API key (GET /health).
 */
export type HonoEnv = { Bindings: Env; Variables: { log: Record<string, unknown>; authenticated?: boolean } };
