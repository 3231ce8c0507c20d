import { DurableObject } from "cloudflare:workers";
import { requireConfig } from "../app-config.ts";
import { backoffSeconds } from "../dispatch/backoff.ts";
import type { Env } from "../env.ts";
import { log } from "../log.ts";
import { dedupeKey, type Message } from "../protocol/codec.ts";
import type { ReplyGrant } from "../platforms/platform.ts";
import type { ForwardJob, SendJob } from "../dispatch/jobs.ts";
import type { ReplyError, ReplyRequest, ReplyState, ReplyStatus } from "./reply.ts";
import {
  applyGrant,
  closeWindow,
  closedWindow,
  exhaust,
  quotaOf,
  releaseReply,
  takeReply,
  type Quota,
  type ReplyWindow,
} from "./window.ts";

/** Work handed off durably: written with the change that causes it, drained by the alarm. */
type Outbox =
  | { target: "forwards"; job: ForwardJob }
  | { target: "sends"; job: SendJob }
  /** `at` null: the conversation has forgotten everything, drop it from the directory. */
  | { target: "directory"; at: number | null };

export interface AcceptOptions {
  /** The reply window this message opens, if any (platform rules, decided by the caller). */
  grant?: ReplyGrant;
  /** Whether the message is to be forwarded to the business webhook. */
  forward: boolean;
}

/** The API's answer to an accepted reply, kept so a retried POST gets the very same answer. */
export interface ReserveAnswer {
  id: string;
  status: "queued";
  quota: Quota;
}

export type ReserveResult =
  | { ok: true; answer: ReserveAnswer; replayed: boolean }
  | { ok: false; code: "window_closed" | "quota_exhausted" | "idempotency_conflict"; message: string; quota: Quota };

export type SendOutcome =
  | { status: "sent" }
  | { status: "retry"; error: ReplyError }
  | { status: "failed"; error: ReplyError; window?: "exhausted" | "closed"; release: boolean };

export type ForwardStatus = "pending" | "delivered" | "failed";

/**
 * A queue consumer's claim on one attempt. Queues may deliver a job twice at once: while one
 * consumer holds the lease, another is told to come back later instead of repeating the call.
 */
export type Claim<T> = ({ state: "claimed"; attempts: number } & T) | { state: "busy"; retryInMs: number } | { state: "done" };

export interface HistoryEntry {
  direction: "in" | "out";
  at: string;
  /** Inbound: the message; outbound: the reply and its delivery state. */
  message?: Message;
  forward?: { status: ForwardStatus; attempts: number; error?: string };
  reply?: ReplyRequest & ReplyState;
}

export interface Snapshot {
  app: string;
  openid: string;
  quota: Quota;
  lastActiveAt: string | null;
  history: HistoryEntry[];
}

const DAY = 86_400_000;

/**
 * One conversation: an app and one user's openid. The authoritative de-duplication, the history,
 * the reply window and quota, and the durable hand-off of forwards and sends.
 *
 * Every method does its reads and writes without an `await` in between, so each is atomic: SQLite
 * commits them together, and concurrent deliveries cannot interleave.
 */
export class Conversation extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS conversation (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        app TEXT NOT NULL, openid TEXT NOT NULL,
        window_expires_at INTEGER NOT NULL DEFAULT 0,
        replies_remaining INTEGER NOT NULL DEFAULT 0,
        replies_allowed INTEGER NOT NULL DEFAULT 0,
        window_granted_at INTEGER NOT NULL DEFAULT 0,
        last_active_at INTEGER
      );
      CREATE TABLE IF NOT EXISTS inbound (
        key TEXT PRIMARY KEY,
        received_at INTEGER NOT NULL,
        message TEXT NOT NULL,
        forward TEXT,
        forward_attempts INTEGER NOT NULL DEFAULT 0,
        forward_claimed_at INTEGER,
        forward_error TEXT
      );
      CREATE INDEX IF NOT EXISTS inbound_by_time ON inbound (received_at);
      CREATE TABLE IF NOT EXISTS replies (
        id TEXT PRIMARY KEY,
        idempotency_key TEXT UNIQUE,
        request TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        claimed_at INTEGER,
        error TEXT,
        answer TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );
      CREATE INDEX IF NOT EXISTS replies_by_time ON replies (created_at);
      CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        item TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0
      );
    `);
  }

  // ---- inbound ------------------------------------------------------------------------------

  /**
   * Records a user message once. Returns false for a retry of one already recorded. When this
   * returns, the message and its forward are durable: the caller may acknowledge the push.
   */
  accept(message: Message, options: AcceptOptions): { accepted: boolean } {
    const now = Date.now();
    const key = dedupeKey(message);
    const inserted = this.sql
      .exec(
        `INSERT INTO inbound (key, received_at, message, forward) VALUES (?, ?, ?, ?)
         ON CONFLICT (key) DO NOTHING RETURNING key`,
        key,
        now,
        JSON.stringify(message),
        options.forward ? "pending" : null,
      )
      .toArray();
    if (inserted.length === 0) return { accepted: false };

    this.identify(message.app, message.openid, now);
    if (options.grant) {
      // The platform's clock started the window; never later than now.
      const at = Math.min(message.createTime * 1000, now);
      this.saveWindow(applyGrant(this.window(), options.grant, at, this.inFlight(), now));
    }
    if (options.forward) this.enqueue({ target: "forwards", job: { app: message.app, openid: message.openid, key } });
    this.enqueue({ target: "directory", at: now });
    return { accepted: true };
  }

  /** Claims one forward attempt; "done" once it was delivered or given up on. */
  forwardItem(key: string, leaseMs: number): Claim<{ message: Message }> {
    const now = Date.now();
    const row = this.sql
      .exec<{ message: string; forward: string | null; forward_attempts: number; forward_claimed_at: number | null }>(
        "SELECT message, forward, forward_attempts, forward_claimed_at FROM inbound WHERE key = ?",
        key,
      )
      .toArray()[0];
    if (!row || row.forward !== "pending") return { state: "done" };
    const busy = leaseLeft(row.forward_claimed_at, leaseMs, now);
    if (busy > 0) return { state: "busy", retryInMs: busy };
    this.sql.exec("UPDATE inbound SET forward_attempts = forward_attempts + 1, forward_claimed_at = ? WHERE key = ?", now, key);
    return { state: "claimed", attempts: row.forward_attempts + 1, message: JSON.parse(row.message) as Message };
  }

  /** Records how a forward attempt ended: delivered, failed for good, or still pending with an error. */
  forwardResult(key: string, status: ForwardStatus, error?: string): void {
    this.sql.exec(
      "UPDATE inbound SET forward = ?, forward_error = ?, forward_claimed_at = NULL WHERE key = ? AND forward IS NOT 'delivered'",
      status,
      error ?? null,
      key,
    );
  }

  // ---- replies ------------------------------------------------------------------------------

  /**
   * Reserves one reply slot and hands the send off, or says why not. With an idempotency key, a
   * repeat returns the first answer instead of reserving again.
   */
  reserveReply(app: string, openid: string, id: string, request: ReplyRequest, idempotencyKey?: string): ReserveResult {
    const now = Date.now();
    const requestJson = JSON.stringify(request);
    if (idempotencyKey) {
      const earlier = this.sql
        .exec<{ request: string; answer: string }>("SELECT request, answer FROM replies WHERE idempotency_key = ?", idempotencyKey)
        .toArray()[0];
      if (earlier) {
        if (earlier.request !== requestJson) {
          return {
            ok: false,
            code: "idempotency_conflict",
            message: "this Idempotency-Key was used with a different body",
            quota: quotaOf(this.window(), now),
          };
        }
        return { ok: true, answer: JSON.parse(earlier.answer) as ReserveAnswer, replayed: true };
      }
    }
    const taken = takeReply(this.window(), now);
    if (!taken.ok) {
      const message =
        taken.code === "window_closed"
          ? "the reply window is closed: the user has not written within the platform's window"
          : "no replies left in this window: wait for the user to write again";
      return { ok: false, code: taken.code, message, quota: quotaOf(this.window(), now) };
    }
    const answer: ReserveAnswer = { id, status: "queued", quota: quotaOf(taken.window, now) };
    this.identify(app, openid, now);
    this.saveWindow(taken.window);
    this.sql.exec(
      `INSERT INTO replies (id, idempotency_key, request, status, answer, created_at, updated_at)
       VALUES (?, ?, ?, 'queued', ?, ?, ?)`,
      id,
      idempotencyKey ?? null,
      requestJson,
      JSON.stringify(answer),
      now,
      now,
    );
    this.enqueue({ target: "sends", job: { app, openid, id } });
    this.enqueue({ target: "directory", at: now });
    return { ok: true, answer, replayed: false };
  }

  /** Claims one send attempt of a reply; "done" once it is sent or failed. */
  beginSend(id: string, leaseMs: number): Claim<{ request: ReplyRequest }> {
    const now = Date.now();
    const row = this.sql
      .exec<{ request: string; status: ReplyStatus; attempts: number; claimed_at: number | null }>(
        "SELECT request, status, attempts, claimed_at FROM replies WHERE id = ?",
        id,
      )
      .toArray()[0];
    if (!row || row.status === "sent" || row.status === "failed") return { state: "done" };
    const busy = row.status === "sending" ? leaseLeft(row.claimed_at, leaseMs, now) : 0;
    if (busy > 0) return { state: "busy", retryInMs: busy };
    this.sql.exec(
      "UPDATE replies SET status = 'sending', attempts = attempts + 1, claimed_at = ?, updated_at = ? WHERE id = ?",
      now,
      now,
      id,
    );
    return { state: "claimed", attempts: row.attempts + 1, request: JSON.parse(row.request) as ReplyRequest };
  }

  /** Records a send attempt's outcome, and what it tells about the window. */
  finishSend(id: string, outcome: SendOutcome): ReplyState | null {
    const now = Date.now();
    const row = this.sql
      .exec<{ status: ReplyStatus; claimed_at: number | null }>("SELECT status, claimed_at FROM replies WHERE id = ?", id)
      .toArray()[0];
    if (!row || row.status === "sent" || row.status === "failed") return this.replyState(id);
    const status: ReplyStatus = outcome.status === "retry" ? "queued" : outcome.status;
    const error = outcome.status === "sent" ? null : JSON.stringify(outcome.error);
    this.sql.exec("UPDATE replies SET status = ?, error = ?, claimed_at = NULL, updated_at = ? WHERE id = ?", status, error, now, id);
    if (outcome.status === "failed") {
      let window = this.window();
      // A refusal speaks of the window the send was made in: not of one the user opened since.
      const sameWindow = window.grantedAt <= (row.claimed_at ?? now);
      if (outcome.window === "exhausted" && sameWindow) window = exhaust(window);
      else if (outcome.window === "closed" && sameWindow) window = closeWindow(window, now);
      else if (outcome.release) window = releaseReply(window, now);
      this.saveWindow(window);
    }
    return this.replyState(id);
  }

  reply(id: string): (ReplyState & ReplyRequest) | null {
    const row = this.sql.exec<ReplyRow>(`SELECT ${REPLY_COLUMNS} FROM replies WHERE id = ?`, id).toArray()[0];
    return row ? toReply(row) : null;
  }

  // ---- reading ------------------------------------------------------------------------------

  quota(): Quota {
    return quotaOf(this.window(), Date.now());
  }

  /** The window, the quota and the most recent history, newest first. */
  snapshot(limit = 50): Snapshot | null {
    const meta = this.sql
      .exec<{ app: string; openid: string; last_active_at: number | null }>(
        "SELECT app, openid, last_active_at FROM conversation",
      )
      .toArray()[0];
    if (!meta) return null;
    const inbound = this.sql
      .exec<{ received_at: number; message: string; forward: ForwardStatus | null; forward_attempts: number; forward_error: string | null }>(
        "SELECT received_at, message, forward, forward_attempts, forward_error FROM inbound ORDER BY received_at DESC LIMIT ?",
        limit,
      )
      .toArray()
      .map((row): HistoryEntry & { t: number } => ({
        t: row.received_at,
        direction: "in",
        at: new Date(row.received_at).toISOString(),
        message: JSON.parse(row.message) as Message,
        ...(row.forward && {
          forward: { status: row.forward, attempts: row.forward_attempts, ...(row.forward_error && { error: row.forward_error }) },
        }),
      }));
    const outbound = this.sql
      .exec<ReplyRow>(`SELECT ${REPLY_COLUMNS} FROM replies ORDER BY created_at DESC LIMIT ?`, limit)
      .toArray()
      .map((row): HistoryEntry & { t: number } => ({
        t: row.created_at,
        direction: "out",
        at: new Date(row.created_at).toISOString(),
        reply: toReply(row),
      }));
    const history = [...inbound, ...outbound]
      .sort((a, b) => b.t - a.t)
      .slice(0, limit)
      .map(({ t: _t, ...entry }) => entry);
    return {
      app: meta.app,
      openid: meta.openid,
      quota: this.quota(),
      lastActiveAt: meta.last_active_at ? new Date(meta.last_active_at).toISOString() : null,
      history,
    };
  }

  // ---- the alarm: drain the outbox, then forget old history -----------------------------------

  override async alarm(): Promise<void> {
    const retryAt = await this.drainOutbox();
    this.forgetOldHistory(Date.now());
    this.scheduleAlarm(retryAt);
  }

  /** Hands every outbox item on; returns when to try again if any could not be. */
  private async drainOutbox(): Promise<number | undefined> {
    const rows = this.sql.exec<{ seq: number; item: string; attempts: number }>("SELECT seq, item, attempts FROM outbox ORDER BY seq").toArray();
    let retryAt: number | undefined;
    for (const row of rows) {
      const item = JSON.parse(row.item) as Outbox;
      try {
        await this.handOff(item);
        this.sql.exec("DELETE FROM outbox WHERE seq = ?", row.seq);
      } catch (error) {
        const attempts = row.attempts + 1;
        this.sql.exec("UPDATE outbox SET attempts = ? WHERE seq = ?", attempts, row.seq);
        retryAt = Math.min(retryAt ?? Infinity, Date.now() + backoffSeconds(attempts, 1, 60) * 1000);
        log("outbox_retry", { target: item.target, attempts, reason: String(error) });
      }
    }
    return retryAt;
  }

  private async handOff(item: Outbox): Promise<void> {
    switch (item.target) {
      case "forwards":
        await this.env.FORWARDS.send(item.job, { contentType: "json" });
        return;
      case "sends":
        await this.env.SENDS.send(item.job, { contentType: "json" });
        return;
      case "directory": {
        const { app, openid } = this.sql.exec<{ app: string; openid: string }>("SELECT app, openid FROM conversation").one();
        const directory = this.env.DIRECTORY.getByName(app);
        return item.at === null ? directory.forget(openid) : directory.touch(openid, item.at);
      }
    }
  }

  private forgetOldHistory(now: number): void {
    const cutoff = now - this.retentionMs();
    const forgotten =
      this.sql.exec("DELETE FROM inbound WHERE received_at < ?", cutoff).rowsWritten +
      this.sql.exec("DELETE FROM replies WHERE created_at < ? AND status IN ('sent', 'failed')", cutoff).rowsWritten;
    const left = this.sql.exec<{ n: number }>("SELECT (SELECT count(*) FROM inbound) + (SELECT count(*) FROM replies) AS n").one().n;
    if (forgotten > 0 && left === 0) this.enqueue({ target: "directory", at: null });
  }

  /** One alarm serves both jobs: soon while the outbox has items, else when the oldest history expires. */
  private scheduleAlarm(retryAt?: number): void {
    const pending = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM outbox").one().n;
    if (pending > 0) {
      this.ctx.storage.setAlarm(retryAt ?? Date.now());
      return;
    }
    const oldest = this.sql
      .exec<{ t: number | null }>(
        "SELECT min(t) AS t FROM (SELECT min(received_at) AS t FROM inbound UNION ALL SELECT min(created_at) FROM replies WHERE status IN ('sent', 'failed'))",
      )
      .one().t;
    if (oldest !== null) this.ctx.storage.setAlarm(oldest + this.retentionMs());
    else this.ctx.storage.deleteAlarm();
  }

  // ---- storage helpers ----------------------------------------------------------------------

  private enqueue(item: Outbox): void {
    this.sql.exec("INSERT INTO outbox (item) VALUES (?)", JSON.stringify(item));
    this.ctx.storage.setAlarm(Date.now());
  }

  private identify(app: string, openid: string, now: number): void {
    this.sql.exec(
      `INSERT INTO conversation (id, app, openid, last_active_at) VALUES (1, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET last_active_at = excluded.last_active_at`,
      app,
      openid,
      now,
    );
  }

  /** How long history is kept (KEFU_HISTORY_DAYS), in ms. */
  private retentionMs(): number {
    return requireConfig(this.env).historyRetentionDays * DAY;
  }

  private window(): ReplyWindow {
    const row = this.sql
      .exec<{ window_expires_at: number; replies_remaining: number; replies_allowed: number; window_granted_at: number }>(
        "SELECT window_expires_at, replies_remaining, replies_allowed, window_granted_at FROM conversation",
      )
      .toArray()[0];
    return row
      ? { expiresAt: row.window_expires_at, remaining: row.replies_remaining, allowance: row.replies_allowed, grantedAt: row.window_granted_at }
      : closedWindow;
  }

  private saveWindow(window: ReplyWindow): void {
    this.sql.exec(
      "UPDATE conversation SET window_expires_at = ?, replies_remaining = ?, replies_allowed = ?, window_granted_at = ?",
      window.expiresAt,
      window.remaining,
      window.allowance,
      window.grantedAt,
    );
  }

  /** Replies reserved but not yet answered by the platform. */
  private inFlight(): number {
    return this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM replies WHERE status IN ('queued', 'sending')").one().n;
  }

  private replyState(id: string): ReplyState | null {
    const row = this.sql.exec<ReplyRow>(`SELECT ${REPLY_COLUMNS} FROM replies WHERE id = ?`, id).toArray()[0];
    return row ? toReplyState(row) : null;
  }
}

const REPLY_COLUMNS = "id, status, attempts, error, created_at, updated_at, request";

type ReplyRow = {
  id: string;
  status: ReplyStatus;
  attempts: number;
  error: string | null;
  created_at: number;
  updated_at: number;
  request: string;
};

function toReply(row: ReplyRow): ReplyState & ReplyRequest {
  return { ...toReplyState(row), ...(JSON.parse(row.request) as ReplyRequest) };
}

function toReplyState(row: ReplyRow): ReplyState {
  return {
    id: row.id,
    status: row.status,
    attempts: row.attempts,
    createdAt: new Date(row.created_at).toISOString(),
    updatedAt: new Date(row.updated_at).toISOString(),
    ...(row.error && { error: JSON.parse(row.error) as ReplyError }),
  };
}

/** How long the current claim still holds, in ms (0: no claim, or it lapsed: its holder died). */
function leaseLeft(claimedAt: number | null, leaseMs: number, now: number): number {
  return claimedAt === null ? 0 : Math.max(0, claimedAt + leaseMs - now);
}

/** The conversation of `openid` in `app`. */
export function conversation(env: Pick<Env, "CONVERSATIONS">, app: string, openid: string) {
  return env.CONVERSATIONS.getByName(`${app}\n${openid}`);
}

