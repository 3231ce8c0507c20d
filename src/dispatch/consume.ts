import type { Config } from "../config.ts";
import { log } from "../log.ts";
import { backoffSeconds } from "../backoff.ts";

/** How a job's attempt ended, for the queue: done (ack), or try again after a delay. */
export type Settled = { done: true; fields: Record<string, unknown> } | { done: false; delaySeconds?: number; fields: Record<string, unknown> };

/**
 * Runs one job per queue message, each on its own: one message's failure never holds up or
 * fails another. Every attempt ends in an ack or a retry with backoff, and one log line.
 */
export async function consume<Job>(
  batch: MessageBatch<Job>,
  config: Config,
  event: string,
  describe: (job: Job) => Record<string, unknown>,
  attempt: (job: Job, queued: Message<Job>) => Promise<Settled>,
): Promise<void> {
  await Promise.all(
    batch.messages.map(async (queued) => {
      const started = Date.now();
      const base = { ...describe(queued.body), attempt: queued.attempts };
      let settled: Settled;
      try {
        settled = await attempt(queued.body, queued);
      } catch (error) {
        // Nothing was recorded (the conversation could not be reached): the whole job runs again.
        settled = { done: false, fields: { outcome: "retry", reason: String(error) } };
      }
      if (settled.done) {
        queued.ack();
        log(event, { ...base, ...settled.fields, ms: Date.now() - started });
      } else {
        const delaySeconds = settled.delaySeconds ?? backoffSeconds(queued.attempts, config.retryDelaySeconds);
        queued.retry({ delaySeconds });
        log(event, { ...base, ...settled.fields, delaySeconds, ms: Date.now() - started });
      }
    }),
  );
}

/** The lease of a claim that found another consumer's attempt under way: come back when it lapses. */
export function busy(retryInMs: number): Settled {
  return { done: false, delaySeconds: Math.ceil(retryInMs / 1000), fields: { outcome: "busy" } };
}
