import { requireConfig } from "../app-config";
import { conversation } from "../conversation/conversation";
import type { Env } from "../env";
import { log, shortOpenid } from "../log";
import { backoffSeconds } from "./backoff";
import type { ForwardJob } from "./jobs";
import { webhookRequest } from "./webhook";

/**
 * The FORWARDS consumer: POSTs each accepted message to KEFU_WEBHOOK_URL. Queues deliver at least
 * once, so the conversation is asked first whether the message still needs forwarding.
 */
export async function forwardBatch(batch: MessageBatch<ForwardJob>, env: Env): Promise<void> {
  const config = requireConfig(env);
  await Promise.all(
    batch.messages.map(async (queued) => {
      const job = queued.body;
      const started = Date.now();
      const fields = { app: job.app, openid: shortOpenid(job.openid), key: job.key, attempt: queued.attempts };
      const retry = (reason: string) => {
        const delaySeconds = backoffSeconds(queued.attempts, config.retryDelaySeconds);
        queued.retry({ delaySeconds });
        log("forward", { ...fields, outcome: "retry", reason, delaySeconds, ms: Date.now() - started });
      };
      try {
        if (!config.webhook) {
          queued.ack(); // the webhook was unset since: nothing to forward to
          log("forward", { ...fields, outcome: "skipped", reason: "KEFU_WEBHOOK_URL is not set" });
          return;
        }
        const stub = conversation(env, job.app, job.openid);
        const item = await stub.forwardItem(job.key);
        if (!item) {
          queued.ack();
          log("forward", { ...fields, outcome: "duplicate" });
          return;
        }
        const request = webhookRequest(config.webhook.url, config.webhook.secret, `${job.app}/${job.key}`, item.message);
        const status = await fetch(request, { signal: AbortSignal.timeout(config.callTimeoutMs) }).then(
          (response) => response.status,
          (error: unknown) => `unreachable: ${String(error)}`,
        );
        if (typeof status === "number" && status >= 200 && status < 300) {
          await stub.forwardResult(job.key, "delivered");
          queued.ack();
          log("forward", { ...fields, outcome: "delivered", status, ms: Date.now() - started });
          return;
        }
        const reason = typeof status === "number" ? `webhook answered HTTP ${status}` : `webhook ${status}`;
        await stub.forwardResult(job.key, "pending", reason);
        retry(reason);
      } catch (error) {
        retry(String(error));
      }
    }),
  );
}

/** Forwards that ran out of retries: recorded as failed on the message, and logged. */
export async function forwardDeadLetters(batch: MessageBatch<ForwardJob>, env: Env): Promise<void> {
  await Promise.all(
    batch.messages.map(async (queued) => {
      const job = queued.body;
      await conversation(env, job.app, job.openid).forwardResult(job.key, "failed", "gave up: retries exhausted");
      queued.ack();
      log("forward", { app: job.app, openid: shortOpenid(job.openid), key: job.key, outcome: "failed", reason: "retries exhausted" });
    }),
  );
}
