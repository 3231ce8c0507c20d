import { conversation } from "../conversation/conversation.ts";
import type { ForwardJob, MessageForwardJob, StatusEventJob } from "../conversation/jobs.ts";
import type { Env } from "../env.ts";
import { log, shortOpenid } from "../log.ts";
import { configFor, consume, later, retryDelay, type Settled } from "./consume.ts";
import { callWebhook, webhookRequest } from "./webhook.ts";

const describe = (job: ForwardJob) => ({
  app: job.app,
  openid: shortOpenid(job.openid),
  ...("event" in job ? { event: job.event, id: job.id } : { key: job.key }),
});

/**
 * The FORWARDS consumer: POSTs each accepted message, and each reply's final state, to
 * KEFU_WEBHOOK_URL. Queues deliver at least once, so each forward is claimed in the conversation
 * first: a delivered message is not sent again, a second copy waits while the first is under way,
 * and a later message of the same user waits for the earlier ones (the user's order).
 */
export async function forwardBatch(batch: MessageBatch<ForwardJob>, env: Env): Promise<void> {
  await consume(batch, env.FORWARDS, "forward", describe, (job) => ("event" in job ? deliverEvent(env, job) : forwardMessage(env, job)));
}

async function forwardMessage(env: Env, job: MessageForwardJob): Promise<Settled<ForwardJob>> {
  const found = configFor(env, job.app);
  if (!found.ok) return found.settled;
  const { config } = found;
  const stub = conversation(env, job.app, job.openid);
  if (!config.webhook) {
    const ended = await stub.endForwardUnclaimed(job.key, "skipped", "KEFU_WEBHOOK_URL is not set");
    return ended.state === "busy" ? later(ended.retryInMs, "busy") : { done: true, fields: { outcome: "skipped", reason: "KEFU_WEBHOOK_URL is not set" } };
  }
  const claim = await stub.claimForward(job.key, config.callTimeoutMs + 5_000, config.forwardHoldSeconds * 1000);
  if (claim.state === "done") return { done: true, fields: { outcome: "duplicate" } };
  if (claim.state !== "claimed") return later(claim.retryInMs, claim.state);

  // Claim and result are one RPC session with the conversation: one request, however long the call.
  const { attempt, attempts } = claim;
  try {
    const payload = {
      type: "message.received" as const,
      timestamp: new Date().toISOString(),
      ...(claim.seq !== null && { seq: claim.seq }),
      data: claim.message,
    };
    const result = await callWebhook(webhookRequest(config.webhook.url, config.webhook.secret, `${job.app}/${job.key}`, payload), config.callTimeoutMs);
    if (result.ok) {
      await attempt.finish({ status: "delivered" });
      await webhookRecovered(env, job, attempts > 1);
      return { done: true, fields: { outcome: "delivered", status: result.status, attempt: attempts } };
    }
    webhookFailing.add(job.app);
    // Listed for GET /api/apps/:app/forwards and a re-drive (the listing reads the live state).
    if (attempts === 1) await env.DIRECTORY.getByName(job.app).forwardFailing(job.openid, job.key, claim.message.msgId ?? null);
    if (attempts >= config.forwardAttempts) {
      await attempt.finish({ status: "failed", error: `gave up after ${attempts} attempts: ${result.reason}` });
      return { done: true, fields: { outcome: "failed", reason: result.reason, attempt: attempts } };
    }
    const delaySeconds = retryDelay(config, attempts);
    await attempt.finish({ status: "pending", error: result.reason, retryAt: Date.now() + delaySeconds * 1000 });
    return { done: false, delaySeconds, fields: { outcome: "retry", reason: result.reason, attempt: attempts } };
  } finally {
    attempt[Symbol.dispose]();
  }
}

/** Apps whose webhook calls failed in this isolate since the last success. */
const webhookFailing = new Set<string>();

/**
 * The webhook answers again after failing: the app's failed forwards are queued again (each in
 * its conversation's order), and this one leaves the list. Known from this forward's own earlier
 * failures, or this isolate's.
 */
async function webhookRecovered(env: Env, job: MessageForwardJob, failedBefore: boolean): Promise<void> {
  if (!failedBefore && !webhookFailing.has(job.app)) return;
  webhookFailing.delete(job.app);
  try {
    const redriven = await env.DIRECTORY.getByName(job.app).recovered(job.app, job.openid, job.key);
    if (redriven.redriven > 0) log("forward_redrive", { app: job.app, outcome: "automatic", redriven: redriven.redriven });
  } catch (error) {
    log("forward_redrive", { app: job.app, outcome: "error", reason: String(error) });
  }
}

/** A reply's `message.sent` / `message.failed`, from its state in the conversation. */
async function deliverEvent(env: Env, job: StatusEventJob): Promise<Settled<ForwardJob>> {
  const found = configFor(env, job.app);
  if (!found.ok) return found.settled;
  const { config } = found;
  if (!config.webhook) return { done: true, fields: { outcome: "skipped", reason: "KEFU_WEBHOOK_URL is not set" } };
  const reply = await conversation(env, job.app, job.openid).reply(job.id);
  if (!reply) return { done: true, fields: { outcome: "skipped", reason: "the reply is no longer kept" } };
  const data = { id: reply.id, app: job.app, openid: job.openid, attempts: reply.attempts };
  const timestamp = new Date().toISOString();
  const payload =
    job.event === "message.failed"
      ? { type: job.event, timestamp, data: { ...data, error: reply.error ?? { code: "unknown", message: "no error recorded" } } }
      : { type: job.event, timestamp, data };
  const result = await callWebhook(
    webhookRequest(config.webhook.url, config.webhook.secret, `${job.app}/${job.id}/${job.event}`, payload),
    config.callTimeoutMs,
  );
  const attempt = job.attempt ?? 1;
  if (result.ok) return { done: true, fields: { outcome: "delivered", status: result.status, attempt } };
  if (attempt >= config.forwardAttempts) return { done: true, fields: { outcome: "failed", reason: result.reason, attempt } };
  return {
    done: false,
    delaySeconds: retryDelay(config, attempt),
    fields: { outcome: "retry", reason: result.reason },
    next: { ...job, attempt: attempt + 1 },
  };
}

/**
 * Forwards the queue gave up on (its delivery count ran out: the conversation kept failing to
 * answer): recorded as failed on the message. Needs no configuration.
 */
export async function forwardDeadLetters(batch: MessageBatch<ForwardJob>, env: Env): Promise<void> {
  await consume(batch, undefined, "forward", describe, async (job) => {
    if ("event" in job) return { done: true, fields: { outcome: "failed", reason: "retries exhausted" } };
    const ended = await conversation(env, job.app, job.openid).endForwardUnclaimed(job.key, "failed", "gave up: the queue's retries ran out");
    if (ended.state === "busy") return later(ended.retryInMs, "busy");
    await env.DIRECTORY.getByName(job.app).forwardFailing(job.openid, job.key, ended.msgId ?? null);
    return { done: true, fields: { outcome: "failed", reason: "retries exhausted" } };
  });
}
