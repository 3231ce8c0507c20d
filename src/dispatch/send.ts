import { requireConfig } from "../app-config.ts";
import type { AppConfig, Config } from "../config.ts";
import { conversation, type SendOutcome } from "../conversation/conversation.ts";
import type { ReplyRequest } from "../protocol/reply.ts";
import type { Env } from "../env.ts";
import { shortOpenid } from "../log.ts";
import { busy, consume } from "./consume.ts";
import type { SendJob } from "../conversation/jobs.ts";

const describe = (job: SendJob) => ({ app: job.app, openid: shortOpenid(job.openid), id: job.id });

/**
 * The SENDS consumer: delivers each reserved reply through the platform's send API and records the
 * outcome in the conversation. Queues deliver at least once: each attempt is claimed first, and a
 * reply already final is skipped.
 */
export async function sendBatch(batch: MessageBatch<SendJob>, env: Env): Promise<void> {
  const config = requireConfig(env);
  // A claim outlives the slowest attempt: a token fetch and two send calls.
  const leaseMs = config.callTimeoutMs * 3 + 5_000;
  await consume(batch, config, "dispatch", describe, async ({ app: appName, openid, id }) => {
    const stub = conversation(env, appName, openid);
    const claim = await stub.beginSend(id, leaseMs);
    if (claim.state === "done") return { done: true, fields: { outcome: "duplicate" } };
    if (claim.state === "busy") return busy(claim.retryInMs);
    const app = config.apps.get(appName);
    const outcome: SendOutcome = app
      ? await deliver(env, config, app, openid, claim.request)
      : { status: "failed", release: true, error: { code: "unknown_app", message: `app ${appName} is no longer configured` } };
    await stub.finishSend(id, outcome);
    if (outcome.status === "retry") return { done: false, fields: { outcome: "retry", error: outcome.error } };
    return { done: true, fields: { outcome: outcome.status, ...(outcome.status === "failed" && { error: outcome.error }) } };
  });
}

/** One send attempt: a token, the platform call, and one refresh-and-retry if the token was refused. */
async function deliver(env: Env, config: Config, app: AppConfig, openid: string, request: ReplyRequest): Promise<SendOutcome> {
  const tokens = env.ACCESS_TOKENS.getByName(app.name);
  const base = config.apiBase[app.platform];
  let rejected: string | undefined;
  for (let round = 0; round < 2; round++) {
    const token = await tokens.token(app.name, rejected);
    if (!token.ok) {
      const error = { code: "token_unavailable", message: token.error };
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

/** Sends that ran out of retries: failed, with the last error, and their slot given back. */
export async function sendDeadLetters(batch: MessageBatch<SendJob>, env: Env): Promise<void> {
  await consume(batch, requireConfig(env), "dispatch", describe, async ({ app, openid, id }) => {
    const stub = conversation(env, app, openid);
    const last = (await stub.reply(id))?.error;
    await stub.finishSend(id, {
      status: "failed",
      release: true,
      error: { code: "retries_exhausted", platformCode: last?.platformCode, message: `gave up after retries: ${last?.message ?? "unknown error"}` },
    });
    return { done: true, fields: { outcome: "failed", reason: "retries exhausted" } };
  });
}
