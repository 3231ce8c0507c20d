import { DurableObject, RpcTarget } from "cloudflare:workers";
import { readConfig } from "../config.ts";
import type { Env } from "../env.ts";
import { log } from "../log.ts";
import { dedupeKey, type Message } from "../protocol/codec.ts";
import type { ReplyGrant } from "../platforms/platform.ts";
import { claim, holds, leaseLeft, nextInLine, postpone, release, type Claim, type Lane } from "./claims.ts";
import { Outbox, type Handoff } from "./outbox.ts";
import type { ReplyError, ReplyRequest, ReplyState, ReplyStatus } from "../protocol/reply.ts";
import { applyGrant, closeWindow, closedWindow, exhaust, quotaOf, releaseReply, takeReply, type Quota, type ReplyWindow } from "./window.ts";

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
  /** `retryAt`: when the next attempt is due (epoch ms). */
  | { status: "retry"; error: ReplyError; retryAt: number }
  | { status: "failed"; error: ReplyError; window?: "exhausted" | "closed"; release: boolean };

/** `skipped`: the webhook was unset by the time the message's turn came. */
export type ForwardStatus = "pending" | "delivered" | "failed" | "skipped";

export type ForwardOutcome = { status: "delivered" } | { status: "pending"; error: string; retryAt: number } | { status: "failed" | "skipped"; error: string };

export type { Claim };

/** A forward as the business sees it: its place in the user's order, and how it went. */
export interface ForwardState {
  status: ForwardStatus;
  seq?: number;
  attempts: number;
  error?: string;
}

/** A forward as GET /api/apps/:app/forwards lists it. */
export interface TroubledForward {
  openid: string;
  key: string;
  msgId?: string;
  status: ForwardStatus;
  attempts: number;
  error?: string;
}

/** A message in, with its forward to the webhook; or a reply out, with its delivery state. */
export type HistoryEntry =
  | { direction: "in"; at: string; message: Message; forward?: ForwardState }
  | ({ direction: "out"; at: string } & Omit<ReplyState, "createdAt"> & ReplyRequest);

export interface Snapshot {
  app: string;
  openid: string;
  quota: Quota;
  lastActiveAt: string | null;
  history: HistoryEntry[];
  /** The cursor of the next (older) page of history; absent on the last page. */
  next?: string;
}

/**
 * Where a page of history ends: entries are ordered by time, then direction, then key (message
 * key or reply id), all descending, so a page boundary inside one millisecond loses nothing.
 */
export interface HistoryCursor {
  at: number;
  direction: "in" | "out";
  key: string;
}

export function encodeHistoryCursor(cursor: HistoryCursor): string {
  return btoa(JSON.stringify([cursor.at, cursor.direction, cursor.key])).replaceAll("=", "");
}

/** The history cursor from `next`, or undefined when it is not one. */
export function decodeHistoryCursor(text: string): HistoryCursor | undefined {
  try {
    const [at, direction, key] = JSON.parse(atob(text)) as [unknown, unknown, unknown];
    if (typeof at === "number" && (direction === "in" || direction === "out") && typeof key === "string") return { at, direction, key };
  } catch {
    // not base64 or not JSON: not a cursor of ours
  }
  return undefined;
}

const DAY = 86_400_000;

/**
 * The Directory hears of a conversation when it is new and then again only after it has been quiet
 * this long: a customer-service exchange is a burst of messages within minutes, so this is one
 * Directory request per exchange instead of one per message, and the listing's `lastActiveAt` (for
 * agents browsing recent conversations) is exact to a quarter of an hour.
 */
export const DIRECTORY_QUIET_MS = 15 * 60_000;

/** How long a hand-off may take before the guard alarm assumes this instance died in between. */
const HANDOFF_GUARD_MS = 30_000;

/** Keys this instance told a caller to mark in KV, so a burst of retries costs one KV write. */
const MARKED_KEYS_KEPT = 1_000;

/** History is kept this long when the configuration cannot be read (KEFU_HISTORY_DAYS's default). */
const DEFAULT_RETENTION_DAYS = 7;

const FORWARDS: Lane = {
  table: "messages",
  key: "key",
  open: "forward = 'pending'",
  seq: "forward_seq",
  since: "received_at",
  attempts: "forward_attempts",
  claimedAt: "forward_claimed_at",
  leaseUntil: "forward_lease_until",
  retryAt: "forward_retry_at",
  failingSince: "forward_failing_since",
};

const SENDS: Lane = {
  table: "replies",
  key: "id",
  open: "status IN ('queued', 'sending')",
  seq: "seq",
  since: "created_at",
  attempts: "attempts",
  claimedAt: "claimed_at",
  leaseUntil: "lease_until",
  retryAt: "retry_at",
  failingSince: "failing_since",
  onClaim: "status = 'sending'",
};

/**
 * One forward attempt, claimed by a queue consumer. Its calls belong to the RPC session that
 * claimed it: claim and result are one billed request. Dropped unfinished, it releases its claim.
 */
export class ForwardAttempt extends RpcTarget {
  private finished = false;

  constructor(
    private readonly settle: (outcome: ForwardOutcome) => void,
    private readonly release: () => void,
  ) {
    super();
  }

  /** How the attempt ended: delivered, pending a retry (with the reason), or given up on. */
  finish(outcome: ForwardOutcome): void {
    this.finished = true;
    this.settle(outcome);
  }

  [Symbol.dispose](): void {
    if (!this.finished) this.release();
  }
}

/**
 * One conversation: an app and one user's openid. The authoritative de-duplication, the history,
 * the reply window and quota, and the durable hand-off of forwards and sends.
 *
 * Every method does its reads and writes without an `await` in between, so each is atomic: SQLite
 * commits them together, and concurrent deliveries cannot interleave. A push costs one request and
 * two rows written: the message and the conversation row; its forward goes to the queue straight
 * after the commit (the `Outbox`), and the forward's claim and result are one more request (two
 * rows). Forwards and sends are claimed the same way (`claims.ts`): a lease stored with the item,
 * so it outlives a restart of this object, granted in the user's order (`seq`).
 */
export class Conversation extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private readonly outbox: Outbox;
  private readonly marked = new Set<string>();
  /**
   * Items whose job was told to wait for an earlier one: handed on the moment it ends. (Their job
   * also comes back by itself after the wait, should this instance be gone by then.)
   */
  private readonly waiting = new Set<string>();
  /** When this instance started: what was accepted before is a previous instance's business. */
  private readonly startedAt = Date.now();
  private recovered = false;
  private listing = false;
  /** The alarm as stored (undefined until read at start-up). */
  private alarmAt: number | null | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.createTables();
    if (migrateFromV1(this.sql)) ctx.storage.setAlarm(Date.now()); // whatever the old outbox held
    addMissingColumns(this.sql);
    this.outbox = new Outbox(
      this.sql,
      ctx.storage,
      (item) => this.send(item),
      () => this.scheduleAlarm(),
    );
    void ctx.blockConcurrencyWhile(async () => {
      this.alarmAt = await ctx.storage.getAlarm();
    });
  }

  private createTables(): void {
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS conversation (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        app TEXT NOT NULL, openid TEXT NOT NULL,
        window_expires_at INTEGER NOT NULL DEFAULT 0,
        replies_remaining INTEGER NOT NULL DEFAULT 0,
        replies_allowed INTEGER NOT NULL DEFAULT 0,
        window_granted_at INTEGER NOT NULL DEFAULT 0,
        last_active_at INTEGER,
        listed_at INTEGER,
        window_grant_at INTEGER NOT NULL DEFAULT 0,
        forward_seq INTEGER NOT NULL DEFAULT 0,
        reply_seq INTEGER NOT NULL DEFAULT 0
      );
      CREATE TABLE IF NOT EXISTS messages (
        key TEXT PRIMARY KEY,
        received_at INTEGER NOT NULL,
        message TEXT NOT NULL,
        forward TEXT,
        forward_attempts INTEGER NOT NULL DEFAULT 0,
        forward_claimed_at INTEGER,
        forward_error TEXT,
        forward_seq INTEGER,
        forward_lease_until INTEGER,
        forward_retry_at INTEGER,
        forward_failing_since INTEGER
      ) WITHOUT ROWID;
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
        updated_at INTEGER NOT NULL,
        seq INTEGER,
        lease_until INTEGER,
        retry_at INTEGER,
        failing_since INTEGER
      );
      CREATE INDEX IF NOT EXISTS replies_by_time ON replies (created_at);
      CREATE TABLE IF NOT EXISTS handoffs (
        seq INTEGER PRIMARY KEY,
        item TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0
      );
    `);
  }

  // ---- inbound ------------------------------------------------------------------------------

  /**
   * Records a user message once. When this returns, the message and its forward are durable: the
   * caller may acknowledge the push. A retry is answered `accepted: false`, and `markSeen` the
   * first time: the caller then writes the KV entry that answers the later retries at the edge.
   */
  accept(message: Message, options: AcceptOptions): { accepted: true } | { accepted: false; markSeen: boolean } {
    const now = Date.now();
    const key = dedupeKey(message);
    const { window, listedAt, seq } = this.state();
    // Forwards are numbered in the order messages are received: the business can see a gap.
    const forwardSeq = options.forward ? seq.forward + 1 : null;
    const inserted = this.sql
      .exec(
        `INSERT INTO messages (key, received_at, message, forward, forward_seq) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (key) DO NOTHING RETURNING key`,
        key,
        now,
        JSON.stringify(message),
        options.forward ? "pending" : null,
        forwardSeq,
      )
      .toArray();
    if (inserted.length === 0) return { accepted: false, markSeen: this.firstRepeat(key) };

    // The platform's clock started the window; never later than now.
    const at = Math.min(message.createTime * 1000, now);
    const granted = options.grant ? applyGrant(window, options.grant, at, this.repliesSince(at), now) : window;
    this.save(message.app, message.openid, granted, now, { forward: forwardSeq ?? seq.forward, reply: seq.reply });
    if (options.forward) void this.handOff({ target: "forwards", job: { app: message.app, openid: message.openid, key } });
    this.listIfQuiet(listedAt, now);
    if (this.alarmAt === null) this.setAlarm(now + this.retentionMs()); // the first history entry
    return { accepted: true };
  }

  /**
   * Claims one forward attempt; "done" once it was delivered or given up on, "waiting" while an
   * earlier message of this user is still owed (for at most `holdMs` once that one is failing).
   */
  claimForward(key: string, leaseMs: number, holdMs: number): Claim<{ message: Message; seq: number | null; attempt: ForwardAttempt }> {
    const claimed = claim(this.sql, FORWARDS, key, leaseMs, holdMs, Date.now());
    this.noteWaiting("forwards", key, claimed);
    if (claimed.state !== "claimed") return claimed;
    const row = this.sql.exec<{ message: string; forward_seq: number | null }>("SELECT message, forward_seq FROM messages WHERE key = ?", key).one();
    const settle = (outcome: ForwardOutcome) => {
      if (!holds(this.sql, FORWARDS, key, claimed.token)) return; // a lapsed claim, taken over since
      if (outcome.status === "pending") {
        this.sql.exec("UPDATE messages SET forward_error = ? WHERE key = ?", outcome.error, key);
        postpone(this.sql, FORWARDS, key, outcome.retryAt, Date.now());
      } else {
        this.endForward(key, outcome.status, outcome.status === "delivered" ? null : outcome.error);
      }
    };
    return {
      ...claimed,
      message: JSON.parse(row.message) as Message,
      seq: row.forward_seq,
      attempt: new ForwardAttempt(settle, () => release(this.sql, FORWARDS, key, claimed.token)),
    };
  }

  /**
   * Records a forward's end without an attempt: the webhook was unset (skipped), or the queue gave
   * up on it (failed). Never while an attempt holds it: then "busy", and when to ask again.
   */
  endForwardUnclaimed(key: string, status: "failed" | "skipped", error: string): { state: "done"; msgId?: string } | { state: "busy"; retryInMs: number } {
    const busy = leaseLeft(this.sql, FORWARDS, key, Date.now());
    if (busy > 0) return { state: "busy", retryInMs: busy };
    this.endForward(key, status, error);
    const row = this.sql.exec<{ message: string }>("SELECT message FROM messages WHERE key = ?", key).toArray()[0];
    const msgId = row && (JSON.parse(row.message) as Message).msgId;
    return { state: "done", ...(msgId && { msgId }) };
  }

  private endForward(key: string, status: Exclude<ForwardStatus, "pending">, error: string | null): void {
    const ended = this.sql
      .exec<{ forward_seq: number | null }>(
        "UPDATE messages SET forward = ?, forward_error = ?, forward_lease_until = NULL, forward_retry_at = NULL WHERE key = ? AND forward = 'pending' RETURNING forward_seq",
        status,
        error,
        key,
      )
      .toArray()[0];
    const next = ended && nextInLine(this.sql, FORWARDS, ended.forward_seq);
    if (next && this.waiting.delete(`forwards:${next}`)) this.handOn("forwards", next);
  }

  private noteWaiting(target: "forwards" | "sends", key: string, claimed: Claim<Record<never, never>>): void {
    if (claimed.state !== "waiting") return void this.waiting.delete(`${target}:${key}`);
    if (this.waiting.size >= MARKED_KEYS_KEPT) this.waiting.clear(); // their jobs come back by themselves
    this.waiting.add(`${target}:${key}`);
    if (claimed.stalled) this.handOn(target, claimed.stalled);
  }

  /** Hands the job of a forward or send on (again): the next in line, or one whose job seems lost. */
  private handOn(target: "forwards" | "sends", key: string): void {
    const meta = this.sql.exec<{ app: string; openid: string }>("SELECT app, openid FROM conversation").toArray()[0];
    if (!meta) return;
    const { app, openid } = meta;
    void this.handOff(target === "forwards" ? { target, job: { app, openid, key } } : { target, job: { app, openid, id: key } });
  }

  /** The forwards of `keys` as they stand (for the listing of failed ones). */
  forwardStates(keys: string[]): TroubledForward[] {
    const meta = this.sql.exec<{ openid: string }>("SELECT openid FROM conversation").toArray()[0];
    if (!meta) return [];
    return this.sql
      .exec<{ key: string; message: string; forward: ForwardStatus | null; forward_attempts: number; forward_error: string | null }>(
        "SELECT key, message, forward, forward_attempts, forward_error FROM messages WHERE key IN (SELECT value FROM json_each(?)) AND forward IS NOT NULL",
        JSON.stringify(keys),
      )
      .toArray()
      .map((row) => {
        const { msgId } = JSON.parse(row.message) as Message;
        return {
          openid: meta.openid,
          key: row.key,
          ...(msgId && { msgId }),
          status: row.forward!,
          attempts: row.forward_attempts,
          ...(row.forward_error && { error: row.forward_error }),
        };
      });
  }

  /**
   * Queues the failed forwards among `keys` again, with fresh attempts. They keep their `seq` and
   * the time they started failing: they do not hold back messages received after them.
   */
  redriveForwards(keys: string[]): { key: string; msgId?: string }[] {
    const meta = this.sql.exec<{ app: string; openid: string }>("SELECT app, openid FROM conversation").toArray()[0];
    if (!meta) return [];
    const again = this.sql
      .exec<{ key: string; message: string }>(
        `UPDATE messages SET forward = 'pending', forward_attempts = 0, forward_retry_at = NULL, forward_lease_until = NULL
         WHERE key IN (SELECT value FROM json_each(?)) AND forward = 'failed' RETURNING key, message`,
        JSON.stringify(keys),
      )
      .toArray();
    for (const { key } of again) void this.handOff({ target: "forwards", job: { app: meta.app, openid: meta.openid, key } });
    return again.map(({ key, message }) => {
      const { msgId } = JSON.parse(message) as Message;
      return { key, ...(msgId && { msgId }) };
    });
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
    const { listedAt, seq } = this.state();
    // Replies are numbered in the order they are accepted: they are sent in that order.
    this.save(app, openid, taken.window, now, { forward: seq.forward, reply: seq.reply + 1 });
    this.sql.exec(
      `INSERT INTO replies (id, idempotency_key, request, status, answer, created_at, updated_at, seq)
       VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)`,
      id,
      idempotencyKey ?? null,
      requestJson,
      JSON.stringify(answer),
      now,
      now,
      seq.reply + 1,
    );
    void this.handOff({ target: "sends", job: { app, openid, id } });
    this.listIfQuiet(listedAt, now);
    return { ok: true, answer, replayed: false };
  }

  /**
   * Claims one send attempt of a reply; "done" once it is sent or failed, "waiting" while an earlier
   * reply to this user is not yet sent or failed (a user reads replies in order).
   */
  beginSend(id: string, leaseMs: number): Claim<{ request: ReplyRequest }> {
    const claimed = claim(this.sql, SENDS, id, leaseMs, Infinity, Date.now());
    this.noteWaiting("sends", id, claimed);
    if (claimed.state !== "claimed") return claimed;
    const row = this.sql.exec<{ request: string }>("SELECT request FROM replies WHERE id = ?", id).one();
    return { ...claimed, request: JSON.parse(row.request) as ReplyRequest };
  }

  /**
   * Records the outcome of the send attempt claimed with `token`, and what it tells about the
   * window. A holder whose claim lapsed and was taken over records nothing.
   */
  finishSend(id: string, token: number, outcome: SendOutcome): ReplyState | null {
    if (!holds(this.sql, SENDS, id, token)) return this.replyState(id);
    const now = Date.now();
    if (outcome.status === "retry") {
      this.sql.exec("UPDATE replies SET status = 'queued', error = ?, updated_at = ? WHERE id = ?", JSON.stringify(outcome.error), now, id);
      postpone(this.sql, SENDS, id, outcome.retryAt, now);
      return this.replyState(id);
    }
    this.endSend(id, outcome, token, now);
    return this.replyState(id);
  }

  /**
   * The queue gave up on a reply (its dead-letter queue): failed, and its slot given back. Never
   * while a send of it is under way: then "busy", and when to ask again.
   */
  giveUpSend(id: string): { state: "done" } | { state: "busy"; retryInMs: number } {
    const now = Date.now();
    const busy = leaseLeft(this.sql, SENDS, id, now);
    if (busy > 0) return { state: "busy", retryInMs: busy };
    const last = this.replyState(id)?.error;
    this.endSend(
      id,
      {
        status: "failed",
        release: true,
        error: { code: "retries_exhausted", platformCode: last?.platformCode, message: `gave up after retries: ${last?.message ?? "unknown error"}` },
      },
      now,
      now,
    );
    return { state: "done" };
  }

  /** A reply's final state, what it tells about the window, and the status event to the webhook. */
  private endSend(id: string, outcome: Exclude<SendOutcome, { status: "retry" }>, sentAt: number, now: number): void {
    const row = this.sql.exec<{ app: string; openid: string }>("SELECT app, openid FROM conversation").toArray()[0];
    const ended = this.sql
      .exec<{ seq: number | null }>(
        `UPDATE replies SET status = ?, error = ?, claimed_at = NULL, lease_until = NULL, retry_at = NULL, updated_at = ? WHERE id = ? AND ${SENDS.open} RETURNING seq`,
        outcome.status,
        outcome.status === "sent" ? null : JSON.stringify(outcome.error),
        now,
        id,
      )
      .toArray()[0];
    if (!ended || !row) return;
    const next = nextInLine(this.sql, SENDS, ended.seq);
    if (next && this.waiting.delete(`sends:${next}`)) this.handOn("sends", next);
    if (outcome.status === "failed") {
      let window = this.window();
      // A refusal speaks of the window the send was made in: not of one the user opened since.
      const sameWindow = window.grantedAt <= sentAt;
      if (outcome.window === "exhausted" && sameWindow) window = exhaust(window);
      else if (outcome.window === "closed" && sameWindow) window = closeWindow(window, now);
      else if (outcome.release) window = releaseReply(window, now);
      this.saveWindow(window);
    }
    if (this.notifies()) {
      void this.handOff({
        target: "forwards",
        job: { app: row.app, openid: row.openid, event: outcome.status === "sent" ? "message.sent" : "message.failed", id },
      });
    }
  }

  reply(id: string): (ReplyState & ReplyRequest) | null {
    const row = this.sql.exec<ReplyRow>(`SELECT ${REPLY_COLUMNS} FROM replies WHERE id = ?`, id).toArray()[0];
    return row ? toReply(row) : null;
  }

  // ---- reading ------------------------------------------------------------------------------

  quota(): Quota {
    return quotaOf(this.window(), Date.now());
  }

  /** The window, the quota and a page of history, newest first; `before` continues a previous page. */
  snapshot(limit = 50, before?: HistoryCursor): Snapshot | null {
    const meta = this.sql
      .exec<{ app: string; openid: string; last_active_at: number | null }>("SELECT app, openid, last_active_at FROM conversation")
      .toArray()[0];
    if (!meta) return null;
    // Rows strictly after the cursor in (time, direction, key) descending order; "out" sorts above "in".
    const after = (direction: "in" | "out", time: string, key: string): [string, unknown[]] => {
      if (!before) return ["", []];
      const sameTime = direction === before.direction ? `(${time} = ? AND ${key} < ?)` : direction < before.direction ? `${time} = ?` : "0";
      const params = direction === before.direction ? [before.at, before.at, before.key] : direction < before.direction ? [before.at, before.at] : [before.at];
      return [`WHERE ${time} < ? OR ${sameTime}`, params];
    };
    const [inWhere, inParams] = after("in", "received_at", "key");
    const inbound = this.sql
      .exec<{
        key: string;
        received_at: number;
        message: string;
        forward: ForwardStatus | null;
        forward_attempts: number;
        forward_error: string | null;
        forward_seq: number | null;
      }>(
        `SELECT key, received_at, message, forward, forward_attempts, forward_error, forward_seq FROM messages ${inWhere} ORDER BY received_at DESC, key DESC LIMIT ?`,
        ...inParams,
        limit + 1,
      )
      .toArray()
      .map((row) => ({
        cursor: { at: row.received_at, direction: "in" as const, key: row.key },
        entry: {
          direction: "in" as const,
          at: new Date(row.received_at).toISOString(),
          message: JSON.parse(row.message) as Message,
          ...(row.forward && {
            forward: {
              status: row.forward,
              ...(row.forward_seq !== null && { seq: row.forward_seq }),
              attempts: row.forward_attempts,
              ...(row.forward_error && { error: row.forward_error }),
            },
          }),
        },
      }));
    const [outWhere, outParams] = after("out", "created_at", "id");
    const outbound = this.sql
      .exec<ReplyRow>(`SELECT ${REPLY_COLUMNS} FROM replies ${outWhere} ORDER BY created_at DESC, id DESC LIMIT ?`, ...outParams, limit + 1)
      .toArray()
      .map((row) => {
        const { createdAt: _createdAt, ...reply } = toReply(row);
        return {
          cursor: { at: row.created_at, direction: "out" as const, key: row.id },
          entry: { direction: "out" as const, at: new Date(row.created_at).toISOString(), ...reply },
        };
      });
    const page = [...inbound, ...outbound].sort((a, b) => compareCursors(b.cursor, a.cursor));
    const last = page.length > limit ? page[limit - 1] : undefined;
    return {
      app: meta.app,
      openid: meta.openid,
      quota: this.quota(),
      lastActiveAt: meta.last_active_at ? new Date(meta.last_active_at).toISOString() : null,
      history: page.slice(0, limit).map(({ entry }) => entry),
      ...(last && { next: encodeHistoryCursor(last.cursor) }),
    };
  }

  // ---- the alarm: retry hand-offs, then forget old history ----------------------------------

  /** Never throws: a failed alarm would be retried by the platform for nothing, and log nothing of ours. */
  override async alarm(): Promise<void> {
    this.alarmAt = null; // this one has fired
    try {
      if (!this.recovered) this.recover();
      const retryAt = await this.outbox.retryKept();
      if (await this.forgetOldHistory(Date.now())) return;
      this.scheduleAlarm(retryAt);
    } catch (error) {
      log("alarm_error", { reason: String(error) });
      this.setAlarm(Date.now() + HANDOFF_GUARD_MS);
    }
  }

  /**
   * The first alarm of an instance re-hands what an earlier instance committed but may have died
   * before handing on (that is why the guard alarm fired): forwards and sends never attempted, and
   * a Directory entry not confirmed. A copy of a job that did reach the queue is harmless: its
   * claim finds it done, or under way.
   */
  private recover(): void {
    this.recovered = true;
    const meta = this.sql
      .exec<{ app: string; openid: string; last_active_at: number | null; listed_at: number | null }>(
        "SELECT app, openid, last_active_at, listed_at FROM conversation",
      )
      .toArray()[0];
    if (!meta) return;
    const { app, openid } = meta;
    for (const { key } of this.sql.exec<{ key: string }>(
      "SELECT key FROM messages WHERE forward = 'pending' AND forward_attempts = 0 AND received_at < ?",
      this.startedAt,
    )) {
      void this.handOff({ target: "forwards", job: { app, openid, key } });
    }
    for (const { id } of this.sql.exec<{ id: string }>("SELECT id FROM replies WHERE status = 'queued' AND attempts = 0 AND created_at < ?", this.startedAt)) {
      void this.handOff({ target: "sends", job: { app, openid, id } });
    }
    if (meta.last_active_at !== null && (meta.listed_at ?? 0) < meta.last_active_at) this.listIfQuiet(null, meta.last_active_at);
  }

  private async send(item: Handoff): Promise<void> {
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

  /** Hands `item` on after the commit, with the guard alarm set in the same commit. */
  private handOff(item: Handoff, sent?: () => void): Promise<void> {
    if (this.outbox.inFlight === 0) this.setAlarm(Date.now() + HANDOFF_GUARD_MS);
    return this.outbox.handOff(item, sent);
  }

  /** Tells the Directory, if the conversation is new to it or was quiet for DIRECTORY_QUIET_MS. */
  private listIfQuiet(listedAt: number | null, now: number): void {
    if (this.listing || (listedAt !== null && now - listedAt < DIRECTORY_QUIET_MS)) return;
    this.listing = true; // one touch at a time
    void this.handOff({ target: "directory", at: now }, () => {
      this.sql.exec("UPDATE conversation SET listed_at = ?", now);
    }).finally(() => (this.listing = false));
  }

  /**
   * Deletes history older than the retention. When nothing is left (and nothing is owed), the
   * Directory forgets the conversation and its storage is deleted whole: an idle conversation
   * costs nothing. True when it was.
   */
  private async forgetOldHistory(now: number): Promise<boolean> {
    const cutoff = now - this.retentionMs();
    const forgotten =
      this.sql.exec("DELETE FROM messages WHERE received_at < ?", cutoff).rowsWritten +
      this.sql.exec("DELETE FROM replies WHERE created_at < ? AND status IN ('sent', 'failed')", cutoff).rowsWritten;
    const left = this.sql.exec<{ n: number }>("SELECT (SELECT count(*) FROM messages) + (SELECT count(*) FROM replies) AS n").one().n;
    if (forgotten === 0 || left > 0) return false;
    const meta = this.sql.exec<{ app: string; openid: string }>("SELECT app, openid FROM conversation").toArray()[0];
    if (this.outbox.inFlight > 0 || this.outbox.kept > 0 || !meta) return false;
    try {
      await this.env.DIRECTORY.getByName(meta.app).forget(meta.openid);
    } catch (error) {
      log("outbox_retry", { target: "directory", attempts: 1, reason: String(error) });
      void this.handOff({ target: "directory", at: null }, () => this.sql.exec("UPDATE conversation SET listed_at = NULL"));
      return false;
    }
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
    this.alarmAt = null;
    this.createTables();
    log("conversation_forgotten", { app: meta.app });
    return true;
  }

  /**
   * One alarm serves every job: the guard while hand-offs run, soon while some wait for a retry,
   * else when the oldest history expires.
   */
  private scheduleAlarm(retryAt?: number): void {
    const now = Date.now();
    if (this.outbox.inFlight > 0 || this.outbox.kept > 0) {
      this.setAlarm(this.outbox.inFlight > 0 ? now + HANDOFF_GUARD_MS : (retryAt ?? now));
      return;
    }
    const oldest = this.sql
      .exec<{ t: number | null }>(
        "SELECT min(t) AS t FROM (SELECT min(received_at) AS t FROM messages UNION ALL SELECT min(created_at) FROM replies WHERE status IN ('sent', 'failed'))",
      )
      .one().t;
    this.setAlarm(oldest === null ? null : oldest + this.retentionMs());
  }

  private setAlarm(at: number | null): void {
    if (at === this.alarmAt) return;
    this.alarmAt = at;
    if (at === null) this.ctx.storage.deleteAlarm();
    else this.ctx.storage.setAlarm(at);
  }

  // ---- storage helpers ----------------------------------------------------------------------

  /** True the first time this instance sees a repeat of `key`. */
  private firstRepeat(key: string): boolean {
    if (this.marked.has(key)) return false;
    if (this.marked.size >= MARKED_KEYS_KEPT) this.marked.clear();
    this.marked.add(key);
    return true;
  }

  private state(): { window: ReplyWindow; listedAt: number | null; seq: Sequences } {
    const row = this.sql
      .exec<{
        window_expires_at: number;
        replies_remaining: number;
        replies_allowed: number;
        window_granted_at: number;
        window_grant_at: number;
        listed_at: number | null;
        forward_seq: number;
        reply_seq: number;
      }>(
        "SELECT window_expires_at, replies_remaining, replies_allowed, window_granted_at, window_grant_at, listed_at, forward_seq, reply_seq FROM conversation",
      )
      .toArray()[0];
    return row
      ? {
          window: {
            expiresAt: row.window_expires_at,
            remaining: row.replies_remaining,
            allowance: row.replies_allowed,
            grantedAt: row.window_granted_at,
            grantAt: row.window_grant_at,
          },
          listedAt: row.listed_at,
          seq: { forward: row.forward_seq, reply: row.reply_seq },
        }
      : { window: closedWindow, listedAt: null, seq: { forward: 0, reply: 0 } };
  }

  /** The conversation row in one write: who it is, when it was last active, its window and its sequences. */
  private save(app: string, openid: string, window: ReplyWindow, now: number, seq: Sequences): void {
    this.sql.exec(
      `INSERT INTO conversation (id, app, openid, last_active_at, window_expires_at, replies_remaining, replies_allowed, window_granted_at, window_grant_at, forward_seq, reply_seq)
       VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET last_active_at = excluded.last_active_at, window_expires_at = excluded.window_expires_at,
         replies_remaining = excluded.replies_remaining, replies_allowed = excluded.replies_allowed, window_granted_at = excluded.window_granted_at,
         window_grant_at = excluded.window_grant_at, forward_seq = excluded.forward_seq, reply_seq = excluded.reply_seq`,
      app,
      openid,
      now,
      window.expiresAt,
      window.remaining,
      window.allowance,
      window.grantedAt,
      window.grantAt,
      seq.forward,
      seq.reply,
    );
  }

  /** How long history is kept (KEFU_HISTORY_DAYS), in ms; the default while the configuration is invalid (the alarm never throws). */
  private retentionMs(): number {
    const config = readConfig(this.env);
    return (config.ok ? config.config.historyRetentionDays : DEFAULT_RETENTION_DAYS) * DAY;
  }

  /** Whether reply status events go to the webhook: it is set (or the configuration cannot tell yet). */
  private notifies(): boolean {
    const config = readConfig(this.env);
    return !config.ok || config.config.webhook !== undefined;
  }

  private window(): ReplyWindow {
    return this.state().window;
  }

  private saveWindow(window: ReplyWindow): void {
    this.sql.exec(
      "UPDATE conversation SET window_expires_at = ?, replies_remaining = ?, replies_allowed = ?, window_granted_at = ?, window_grant_at = ?",
      window.expiresAt,
      window.remaining,
      window.allowance,
      window.grantedAt,
      window.grantAt,
    );
  }

  /**
   * Replies that count against a grant made at `at`: the platform counts every send it gets after
   * the user's action, so those sent since, and those reserved but not yet sent.
   */
  private repliesSince(at: number): number {
    return this.sql
      .exec<{ n: number }>("SELECT count(*) AS n FROM replies WHERE status IN ('queued', 'sending') OR (status = 'sent' AND updated_at >= ?)", at)
      .one().n;
  }

  private replyState(id: string): ReplyState | null {
    const row = this.sql.exec<ReplyRow>(`SELECT ${REPLY_COLUMNS} FROM replies WHERE id = ?`, id).toArray()[0];
    return row ? toReplyState(row) : null;
  }
}

/**
 * Storage written by the first version (tables `inbound`, with a time index, and `outbox`, with
 * AUTOINCREMENT) moves, once, to `messages` (WITHOUT ROWID, no index: one row written per
 * message) and `handoffs` (no sqlite_sequence bookkeeping). The old tables' presence is the version;
 * true when it ran.
 */
function migrateFromV1(sql: SqlStorage): boolean {
  const old = sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('inbound', 'outbox')").toArray();
  if (old.length === 0) return false;
  const columns = sql.exec<{ name: string }>("SELECT name FROM pragma_table_info('conversation')").toArray();
  if (!columns.some((c) => c.name === "listed_at")) sql.exec("ALTER TABLE conversation ADD COLUMN listed_at INTEGER");
  for (const { name } of old) {
    if (name === "inbound") {
      sql.exec(`INSERT OR IGNORE INTO messages (key, received_at, message, forward, forward_attempts, forward_claimed_at, forward_error)
                SELECT key, received_at, message, forward, forward_attempts, forward_claimed_at, forward_error FROM inbound`);
      sql.exec("DROP TABLE inbound");
    } else {
      sql.exec("INSERT INTO handoffs (item, attempts) SELECT item, attempts FROM outbox ORDER BY seq");
      sql.exec("DROP TABLE outbox");
    }
  }
  return true;
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

function compareCursors(a: HistoryCursor, b: HistoryCursor): number {
  return a.at - b.at || a.direction.localeCompare(b.direction) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}

/** The last number given to a forward and to a reply of this conversation. */
interface Sequences {
  forward: number;
  reply: number;
}

/** Columns added since the tables were first created (CREATE TABLE IF NOT EXISTS keeps old ones as they were). */
const ADDED_COLUMNS: Record<string, [string, string][]> = {
  conversation: [
    ["window_grant_at", "INTEGER NOT NULL DEFAULT 0"],
    ["forward_seq", "INTEGER NOT NULL DEFAULT 0"],
    ["reply_seq", "INTEGER NOT NULL DEFAULT 0"],
  ],
  messages: [
    ["forward_seq", "INTEGER"],
    ["forward_lease_until", "INTEGER"],
    ["forward_retry_at", "INTEGER"],
    ["forward_failing_since", "INTEGER"],
  ],
  replies: [
    ["seq", "INTEGER"],
    ["lease_until", "INTEGER"],
    ["retry_at", "INTEGER"],
    ["failing_since", "INTEGER"],
  ],
};

function addMissingColumns(sql: SqlStorage): void {
  const present = new Set(
    sql
      .exec<{ t: string; name: string }>(
        "SELECT m.name AS t, p.name AS name FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' AND m.name IN ('conversation', 'messages', 'replies')",
      )
      .toArray()
      .map((row) => `${row.t}.${row.name}`),
  );
  for (const [table, columns] of Object.entries(ADDED_COLUMNS)) {
    for (const [name, type] of columns) if (!present.has(`${table}.${name}`)) sql.exec(`ALTER TABLE ${table} ADD COLUMN ${name} ${type}`);
  }
}

/** The conversation of `openid` in `app`. */
export function conversation(env: Pick<Env, "CONVERSATIONS">, app: string, openid: string) {
  return env.CONVERSATIONS.getByName(`${app}\n${openid}`);
}
