import { requireConfig } from "../app-config";
import type { AppConfig, Config } from "../config";
import { conversation, type SendOutcome } from "../conversation/conversation";
import type { ReplyRequest } from "../conversation/reply";
import type { Env } from "../env";
import { log, shortOpenid } from "../log";
import { backoffSeconds } from "./backoff";
import type { SendJob } from "./jobs";

/**
 * The SENDS consumer: delivers each reserved reply through the platform's send API and records the
 * outcome in the conversation. Queues deliver at least once: a reply already final is skipped.
 */
export async function sendBatch(batch: MessageBatch<SendJob>, env: Env): Promise<void> {
  const config = requireConfig(env);
  await Promise.all(
    batch.messages.map(async (queued) => {
      const { app: appName, openid, id } = queued.body;
      const started = Date.now();
      const fields = { app: appName, openid: shortOpenid(openid), id, attempt: queued.attempts };
      const stub = conversation(env, appName, openid);
      try {
        const claim = await stub.beginSend(id);
        if (!claim) {
          queued.ack();
          log("dispatch", { ...fields, outcome: "duplicate" });
          return;
        }
        const app = config.apps.get(appName);
        const outcome: SendOutcome = app
          ? await deliver(env, config, app, openid, claim.request)
          : { status: "failed", release: true, error: { code: "unknown_app", message: `app ${appName} is no longer configured` } };
        await stub.finishSend(id, outcome);
        if (outcome.status === "retry") {
          const delaySeconds = backoffSeconds(queued.attempts, config.retryDelaySeconds);
          queued.retry({ delaySeconds });
          log("dispatch", { ...fields, outcome: "retry", error: outcome.error, delaySeconds, ms: Date.now() - started });
        } else {
          queued.ack();
          log("dispatch", { ...fields, outcome: outcome.status, ...(outcome.status === "failed" && { error: outcome.error }), ms: Date.now() - started });
        }
      } catch (error) {
        // The conversation could not be reached: nothing was recorded, so try the whole job again.
        queued.retry({ delaySeconds: backoffSeconds(queued.attempts, config.retryDelaySeconds) });
        log("dispatch", { ...fields, outcome: "retry", reason: String(error), ms: Date.now() - started });
      }
    }),
  );
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
  await Promise.all(
    batch.messages.map(async (queued) => {
      const { app, openid, id } = queued.body;
      const stub = conversation(env, app, openid);
      const last = (await stub.reply(id))?.error;
      await stub.finishSend(id, {
        status: "failed",
        release: true,
        error: { code: "retries_exhausted", platformCode: last?.platformCode, message: `gave up after retries: ${last?.message ?? "unknown error"}` },
      });
      queued.ack();
      log("dispatch", { app, openid: shortOpenid(openid), id, outcome: "failed", reason: "retries exhausted" });
    }),
  );
}
