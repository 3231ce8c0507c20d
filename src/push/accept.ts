import type { AppConfig, Config } from "../config";
import { conversation } from "../conversation/conversation";
import type { Env } from "../env";
import { log } from "../log";
import { dedupeKey, type Message } from "../protocol/codec";
import { grantFor } from "../platforms/platform";

export type Acceptance = "accepted" | "duplicate" | "system";

/**
 * Records a verified push exactly once. KV answers most retries at the edge; the conversation's
 * Durable Object is the authority, so the result is the same when KV is stale, empty or down.
 * Resolves only once the message and its forward are durable: then the push may be acknowledged.
 */
export async function accept(env: Env, ctx: Pick<ExecutionContext, "waitUntil">, config: Config, app: AppConfig, message: Message): Promise<Acceptance> {
  if (app.rules.systemTypes.includes(message.type)) return "system";
  const seenKey = `${app.name}/${message.openid}/${dedupeKey(message)}`;
  if (await seenRecently(env.DEDUPE, seenKey)) return "duplicate";
  const { accepted } = await conversation(env, app.name, message.openid).accept(message, {
    grant: grantFor(app.rules, message),
    forward: config.webhook !== undefined,
    retentionDays: config.historyRetentionDays,
  });
  if (accepted) ctx.waitUntil(markSeen(env.DEDUPE, seenKey, config.dedupeTtlSeconds));
  return accepted ? "accepted" : "duplicate";
}

async function seenRecently(kv: KVNamespace, key: string): Promise<boolean> {
  try {
    return (await kv.get(key)) !== null;
  } catch (error) {
    log("kv_unavailable", { op: "get", reason: String(error) });
    return false;
  }
}

async function markSeen(kv: KVNamespace, key: string, ttlSeconds: number): Promise<void> {
  try {
    await kv.put(key, "1", { expirationTtl: ttlSeconds });
  } catch (error) {
    log("kv_unavailable", { op: "put", reason: String(error) });
  }
}
