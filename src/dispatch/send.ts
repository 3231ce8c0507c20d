import type { AppConfig, Config } from "../config.ts";
import { conversation, type SendOutcome } from "../conversation/conversation.ts";
import type { ReplyError, ReplyRequest } from "../protocol/reply.ts";
import type { Env } from "../env.ts";
import { shortOpenid } from "../log.ts";
import { configFor, consume, later, retryDelay } from "./consume.ts";
import type { SendJob } from "../conversation/jobs.ts";
import { tokenSource } from "./tokens.ts";

const describe = (job: SendJob) => ({ app: job.app, openid: shortOpenid(job.openid), id: job.id });

/** What one attempt came to; kefu-edge decides when (and whether) a "retry" is tried again. */
type Attempted = Exclude<SendOutcome, { status: "retry" }> | { status: "retry"; error: ReplyError };

/**
 * The SENDS consumer: delivers each reserved reply through the platform's send API and records the
 * outcome in the conversation. Queues deliver at least once: each attempt is claimed first, a reply
 * already final is skipped, and a reply waits while an earlier one to the same user is not final.
 */
export async function sendBatch(batch: MessageBatch<SendJob>, env: Env): Promise<void> {
  await consume(batch, env.SENDS, "dispatch", describe, async ({ app: appName, openid, id }) => {
    const found = configFor(env, appName);
    if (!found.ok) return found.settled;
    const { config, app } = found;
    // A claim outlives the slowest attempt: a token fetch, a send, a refresh and a second send.
    const leaseMs = config.callTimeoutMs * 4 + 5_000;
    const stub = conversation(env, appName, openid);
    const claim = await stub.beginSend(id, leaseMs);
    if (claim.state === "done") return { done: true, fields: { outcome: "duplicate" } };
    if (claim.state !== "claimed") return later(claim.retryInMs, claim.state);
    const attempted: Attempted = app
      ? await deliver(env, config, app, openid, claim.request)
      : { status: "failed", release: true, error: { code: "unknown_app", message: `app ${appName} is no longer configured` } };
    const outcome = decide(attempted, claim.attempts, config);
    await stub.finishSend(id, claim.token, outcome);
    const fields = { outcome: outcome.status, attempt: claim.attempts, ...(outcome.status !== "sent" && { error: outcome.error }) };
    if (outcome.status === "retry") return { done: false, delaySeconds: Math.ceil((outcome.retryAt - Date.now()) / 1000), fields };
    return { done: true, fields };
  });
}

/** A retry while attempts are left (KEFU_SEND_ATTEMPTS), after a backoff; then failed, with the slot given back. */
function decide(attempted: Attempted, attempts: number, config: Config): SendOutcome {
  if (attempted.status !== "retry") return attempted;
  if (attempts >= config.sendAttempts) {
    const { platformCode, message } = attempted.error;
    return { status: "failed", release: true, error: { code: "retries_exhausted", platformCode, message: `gave up after ${attempts} attempts: ${message}` } };
  }
  return { ...attempted, retryAt: Date.now() + retryDelay(config, attempts) * 1000 };
}

/** One send attempt: a token, the platform call, and one refresh-and-retry if the token was refused. */
async function deliver(env: Env, config: Config, app: AppConfig, openid: string, request: ReplyRequest): Promise<Attempted> {
  const tokens = tokenSource(env, app);
  const base = config.apiBase[app.platform];
  let rejected: string | undefined;
  for (let round = 0; round < 2; round++) {
    const token = await tokens.token(rejected);
    if (!token.ok) {
      const error = { code: token.code ?? "token_unavailable", message: token.error };
      return token.retry ? { status: "retry", error } : { status: "failed", release: true, error };
    }
    const call = app.rules.api.sendRequest(base, token.token, openid, request.reply, request.userType ?? app.userType);
    let body: unknown;
    try {
      const response = await fetch(call, { signal: AbortSignal.timeout(config.callTimeoutMs) });
      if (response.status >= 500 || response.status === 429) {
        return { status: "retry", error: { code: "platform_unavailable", message: `send API answered HTTP ${response.status}` } };
      }
      body = await response.json();
    } catch (error) {
      return { status: "retry", error: { code: "platform_unavailable", message: `send API unreachable or unreadable: ${String(error)}` } };
    }
    const answer = app.rules.api.readSend(body);
    const error = (code: string) => ({ code, platformCode: answer.platformCode, message: answer.message });
    switch (answer.verdict) {
      case "sent":
        return { status: "sent" };
      case "token":
        rejected = token.token;
        if (round === 0) continue;
        return { status: "retry", error: error("token_rejected") };
      case "quota":
        return { status: "failed", release: false, window: "exhausted", error: error("quota_exhausted") };
      case "window":
        return { status: "failed", release: false, window: "closed", error: error("window_closed") };
      case "retry":
        return { status: "retry", error: error("platform_busy") };
      case "rejected":
        return { status: "failed", release: true, error: error("platform_rejected") };
    }
  }
  throw new Error("unreachable");
}

/**
 * Sends the queue gave up on (the conversation kept failing to answer): failed, with the last
 * error, and their slot given back; never while a send of the reply is under way. Needs no
 * configuration.
 */
export async function sendDeadLetters(batch: MessageBatch<SendJob>, env: Env): Promise<void> {
  await consume(batch, undefined, "dispatch", describe, async ({ app, openid, id }) => {
    const ended = await conversation(env, app, openid).giveUpSend(id);
    if (ended.state === "busy") return later(ended.retryInMs, "busy");
    return { done: true, fields: { outcome: "failed", reason: "retries exhausted" } };
  });
}
