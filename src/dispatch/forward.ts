import { requireConfig } from "../app-config.ts";
import { conversation } from "../conversation/conversation.ts";
import type { Env } from "../env.ts";
import { shortOpenid } from "../log.ts";
import { busy, consume } from "./consume.ts";
import type { ForwardJob } from "../conversation/jobs.ts";
import { webhookRequest } from "./webhook.ts";

const describe = (job: ForwardJob) => ({ app: job.app, openid: shortOpenid(job.openid), key: job.key });

/**
 * The FORWARDS consumer: POSTs each accepted message to KEFU_WEBHOOK_URL. Queues deliver at least
 * once, so each attempt is claimed in the conversation first: a delivered message is not sent again,
 * and a second copy waits while the first is under way.
 */
export async function forwardBatch(batch: MessageBatch<ForwardJob>, env: Env): Promise<void> {
  const config = requireConfig(env);
  await consume(batch, config, "forward", describe, async (job) => {
    const { webhook } = config;
    if (!webhook) return { done: true, fields: { outcome: "skipped", reason: "KEFU_WEBHOOK_URL is not set" } };
    const claim = await conversation(env, job.app, job.openid).claimForward(job.key, config.callTimeoutMs + 5_000);
    if (claim.state === "done") return { done: true, fields: { outcome: "duplicate" } };
    if (claim.state === "busy") return busy(claim.retryInMs);

    // Claim and result are one RPC session with the conversation: one request, however long the call.
    const { attempt } = claim;
    try {
      const request = webhookRequest(webhook.url, webhook.secret, `${job.app}/${job.key}`, claim.message);
      const status = await fetch(request, { signal: AbortSignal.timeout(config.callTimeoutMs) }).then(
        (response) => response.status,
        (error: unknown) => `unreachable: ${String(error)}`,
      );
      if (typeof status === "number" && status >= 200 && status < 300) {
        await attempt.finish("delivered");
        return { done: true, fields: { outcome: "delivered", status } };
      }
      const reason = typeof status === "number" ? `webhook answered HTTP ${status}` : `webhook ${status}`;
      await attempt.finish("pending", reason);
      return { done: false, fields: { outcome: "retry", reason } };
    } finally {
      attempt[Symbol.dispose]();
    }
  });
}

/** Forwards that ran out of retries: recorded as failed on the message, and logged. */
export async function forwardDeadLetters(batch: MessageBatch<ForwardJob>, env: Env): Promise<void> {
  await consume(batch, requireConfig(env), "forward", describe, async (job) => {
    await conversation(env, job.app, job.openid).forwardResult(job.key, "failed", "gave up: retries exhausted");
    return { done: true, fields: { outcome: "failed", reason: "retries exhausted" } };
  });
}
