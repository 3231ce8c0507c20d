import { backoffSeconds } from "../backoff.ts";
import type { ForwardJob, SendJob } from "./jobs.ts";
import { log } from "../log.ts";

/** Work a conversation hands on once the change that causes it is committed. */
export type Handoff =
  | { target: "forwards"; job: ForwardJob }
  | { target: "sends"; job: SendJob }
  /** `at` null: the conversation has forgotten everything, drop it from the directory. */
  | { target: "directory"; at: number | null };

/**
 * How often a kept item is retried (with backoff up to a minute: about an hour in all) before it
 * is dropped with a final log line. What it was for stays in the conversation's state (a pending
 * forward, a queued reply), which the next guard alarm or a re-drive hands on again.
 */
export const HANDOFF_ATTEMPTS = 64;

/**
 * Hands work on straight after the commit that caused it, without an alarm in between; keeps in
 * the `handoffs` table only what could not be handed on, for the alarm to retry. A hand-off is
 * never lost to a crash in between either: the caller sets a guard alarm before handing off (see
 * `Conversation`), and the state it committed (a pending forward, a queued reply) says what is owed.
 */
export class Outbox {
  /** Hand-offs started and not yet settled (sent, or kept in the table). */
  private running = 0;

  constructor(
    private readonly sql: SqlStorage,
    private readonly storage: DurableObjectStorage,
    private readonly send: (item: Handoff) => Promise<void>,
    /** Called whenever the last running hand-off has settled. */
    private readonly idle: () => void,
  ) {}

  get inFlight(): number {
    return this.running;
  }

  /** Items kept for a retry. */
  get kept(): number {
    return this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM handoffs").one().n;
  }

  /**
   * Hands `item` on once the current writes are durable; `sent` runs once it has been. Resolves
   * when it is settled: handed on, or kept for a retry.
   */
  handOff(item: Handoff, sent?: () => void): Promise<void> {
    this.running++;
    return this.storage
      .sync() // the commit first: nothing is handed on that could still be rolled back
      .then(() => this.send(item))
      .then(
        () => sent?.(),
        (error: unknown) => {
          this.sql.exec("INSERT INTO handoffs (item, attempts) VALUES (?, 1)", JSON.stringify(item));
          log("outbox_retry", { target: item.target, attempts: 1, reason: String(error) });
        },
      )
      .catch((error: unknown) => log("outbox_error", { target: item.target, reason: String(error) })) // storage broke: the guard alarm recovers
      .finally(() => {
        if (--this.running === 0) this.idle();
      });
  }

  /** Retries every kept item; returns when to try again if any still could not be handed on. */
  async retryKept(): Promise<number | undefined> {
    const rows = this.sql.exec<{ seq: number; item: string; attempts: number }>("SELECT seq, item, attempts FROM handoffs ORDER BY seq").toArray();
    let retryAt: number | undefined;
    for (const row of rows) {
      const item = JSON.parse(row.item) as Handoff;
      try {
        await this.send(item);
        this.sql.exec("DELETE FROM handoffs WHERE seq = ?", row.seq);
      } catch (error) {
        const attempts = row.attempts + 1;
        if (attempts >= HANDOFF_ATTEMPTS) {
          this.sql.exec("DELETE FROM handoffs WHERE seq = ?", row.seq);
          log("outbox_gave_up", { target: item.target, attempts, reason: String(error) });
          continue;
        }
        this.sql.exec("UPDATE handoffs SET attempts = ? WHERE seq = ?", attempts, row.seq);
        retryAt = Math.min(retryAt ?? Infinity, Date.now() + backoffSeconds(attempts, 1, 60) * 1000);
        log("outbox_retry", { target: item.target, attempts, reason: String(error) });
      }
    }
    return retryAt;
  }
}
