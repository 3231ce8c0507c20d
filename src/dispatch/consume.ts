import { backoffSeconds } from "../backoff.ts";
import { readConfig, type AppConfig, type Config } from "../config.ts";
import type { Env } from "../env.ts";
import { log } from "../log.ts";
import { appByName } from "../tp/apps.ts";

/**
 * How a job's attempt ended, for the queue: done (ack), or again after a delay. A job to be run
 * again is queued anew and acknowledged, so the queue's own delivery count never grows: kefu-edge
 * counts the attempts of forwards and sends itself (KEFU_FORWARD_ATTEMPTS, KEFU_SEND_ATTEMPTS), and
 * waiting (for the configuration, for another consumer, for an earlier message) costs none.
 */
export type Settled<Job = never> =
  | { done: true; fields: Record<string, unknown> }
  /** `next`: the body to queue instead of the same one. */
  | { done: false; delaySeconds: number; fields: Record<string, unknown>; next?: Job };

/** When the configuration cannot be read, or the job's app is broken in it: come back then. */
export const CONFIG_RETRY_SECONDS = 60;

/** A consumer's delay when the configuration is unreadable: its own setting is unreadable too. */
const FALLBACK_RETRY_SECONDS = 10;

/**
 * Runs one job per queue message, each on its own: one message's failure never holds up or
 * fails another. Every attempt ends in an ack or a delayed retry, and one log line; nothing here
 * throws, so a batch is never redelivered whole.
 */
export async function consume<Job>(
  batch: MessageBatch<Job>,
  queue: Queue<Job> | undefined,
  event: string,
  describe: (job: Job) => Record<string, unknown>,
  attempt: (job: Job, queued: Message<Job>) => Promise<Settled<Job>>,
): Promise<void> {
  await Promise.all(
    batch.messages.map(async (queued) => {
      const started = Date.now();
      const base = { ...describe(queued.body), delivery: queued.attempts };
      let settled: Settled<Job>;
      try {
        settled = await attempt(queued.body, queued);
      } catch (error) {
        // Nothing was recorded (the conversation could not be reached): the whole job runs again,
        // and this delivery counts against the queue's max_retries (then its dead-letter queue).
        const delaySeconds = backoffSeconds(queued.attempts, FALLBACK_RETRY_SECONDS);
        queued.retry({ delaySeconds });
        log(event, { ...base, outcome: "retry", reason: String(error), delaySeconds, ms: Date.now() - started });
        return;
      }
      if (settled.done) {
        queued.ack();
      } else {
        await again(queued, queue, settled.next ?? queued.body, settled.delaySeconds);
      }
      log(event, { ...base, ...settled.fields, ...(!settled.done && { delaySeconds: settled.delaySeconds }), ms: Date.now() - started });
    }),
  );
}

/** The job queued anew after `delaySeconds` and this delivery acknowledged; a retry if the queue refuses. */
async function again<Job>(queued: Message<Job>, queue: Queue<Job> | undefined, body: Job, delaySeconds: number): Promise<void> {
  if (queue) {
    try {
      await queue.send(body, { contentType: "json", delaySeconds });
      queued.ack();
      return;
    } catch (error) {
      log("requeue_failed", { reason: String(error) });
    }
  }
  queued.retry({ delaySeconds });
}

/** The claim found another consumer's attempt under way, or an earlier item first in line: come back then. */
export function later(retryInMs: number, outcome: "busy" | "waiting"): Settled {
  return { done: false, delaySeconds: Math.max(1, Math.ceil(retryInMs / 1000)), fields: { outcome } };
}

/** `app` undefined: KEFU_APPS no longer has it at all (not a typo: the job cannot be done). */
export type ConfigFor = { ok: true; config: Config; app: AppConfig | undefined } | { ok: false; settled: Settled };

/**
 * The configuration and the job's app, or a delayed retry: a configuration problem (a typo being
 * fixed) never fails or drops queued work.
 */
export function configFor(env: Env, appName: string): ConfigFor {
  const result = readConfig(env);
  const wait = (reason: string): ConfigFor => ({
    ok: false,
    settled: { done: false, delaySeconds: CONFIG_RETRY_SECONDS, fields: { outcome: "config_wait", reason } },
  });
  if (!result.ok) return wait("configuration is invalid");
  if (result.config.brokenApps.has(appName)) return wait(`app ${appName} is not configured validly`);
  return { ok: true, config: result.config, app: appByName(result.config, appName) };
}

/** The delay before attempt `attempts` + 1. */
export function retryDelay(config: Config, attempts: number): number {
  return backoffSeconds(attempts, config.retryDelaySeconds);
}
