import type { AppConfig, Config } from "../config.ts";
import { conversation } from "../conversation/conversation.ts";
import type { Env } from "../env.ts";
import { log } from "../log.ts";
import { seenKey, type Message } from "../protocol/codec.ts";
import { grantFor } from "../platforms/platform.ts";

export type Acceptance =
  | { outcome: "accepted" }
  /** A retry: answered by KV at the edge, or by the conversation (the authority). */
  | { outcome: "duplicate"; dedupedBy: "kv" | "conversation" }
  /** The platform talking about itself (Baidu's ticket): acknowledged, no conversation. */
  | { outcome: "system" }
  /** Older than the history kept: a replay, not a platform retry (those come within seconds). */
  | { outcome: "stale" };

const DAY_SECONDS = 86_400;

/**
 * The platforms retry only once they have dropped the connection at their timeout (Baidu 2 s,
 * WeChat 5 s): a push whose CreateTime is younger than this is a first delivery, and KV is not
 * asked about it. Should a clock skew make a retry look younger, the conversation still answers it.
 */
const RETRY_MIN_AGE_MS = 2_000;

/**
 * Records a verified push exactly once. KV answers repeated retries at the edge (it is read only
 * for pushes old enough to be retries, written only for messages that were retried); the
 * conversation's Durable Object is the authority, so the result is the same when KV is stale,
 * empty or down.
 * Resolves only once the message and its forward are durable: then the push may be acknowledged.
 */
export async function accept(env: Env, ctx: Pick<ExecutionContext, "waitUntil">, config: Config, app: AppConfig, message: Message): Promise<Acceptance> {
  if (app.rules.systemTypes.includes(message.type)) return { outcome: "system" };
  if (message.createTime < Date.now() / 1000 - config.historyRetentionDays * DAY_SECONDS) return { outcome: "stale" };
  const key = seenKey(app.name, message);
  const mayBeRetry = Date.now() - message.createTime * 1000 >= RETRY_MIN_AGE_MS;
  if (mayBeRetry && (await seenRecently(env.DEDUPE, key))) return { outcome: "duplicate", dedupedBy: "kv" };
  const answer = await conversation(env, app.name, message.openid).accept(message, {
    grant: grantFor(app.rules, message),
    forward: config.webhook !== undefined,
  });
  if (answer.accepted) return { outcome: "accepted" };
  // The platform retries this one: from now on KV answers its retries at the edge. Most pushes
  // are never retried, so KV is written only for those that are (once per message, not per push).
  if (answer.markSeen) ctx.waitUntil(markSeen(env.DEDUPE, key, config.dedupeTtlSeconds));
  return { outcome: "duplicate", dedupedBy: "conversation" };
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
