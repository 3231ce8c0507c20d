/**
 * One claim mechanism for both kinds of work a conversation hands on: forwards (rows of
 * `messages`) and sends (rows of `replies`). A claim is a lease stored with the item, so it
 * outlives a restart of the Durable Object; and it is granted only to the first unfinished item in
 * the conversation's order (`seq`), so the user's items reach their destination in order.
 */

/** Where a kind of item keeps its claim: the table and its columns. */
export interface Lane {
  table: string;
  key: string;
  /** An SQL condition true while the item is unfinished. */
  open: string;
  seq: string;
  /** When the item was created (epoch ms). */
  since: string;
  attempts: string;
  /** When the current claim was taken (its token), and until when it holds (epoch ms). */
  claimedAt: string;
  leaseUntil: string;
  /** When the next attempt is due after a failed one, and since when the item has been failing. */
  retryAt: string;
  failingSince: string;
  /** Extra `col = value` assignments made when a claim is taken. */
  onClaim?: string;
}

export type Claim<T> =
  | ({ state: "claimed"; attempts: number; token: number } & T)
  /** `busy`: another consumer holds this item. */
  | { state: "busy"; retryInMs: number }
  /** An earlier item of the user goes first; `stalled`: that item's job seems lost (hand it on again). */
  | { state: "waiting"; retryInMs: number; stalled?: string }
  | { state: "done" };

type ClaimRow = {
  attempts: number;
  lease_until: number | null;
};

type HeadRow = {
  key: string;
  since: number;
  lease_until: number | null;
  retry_at: number | null;
  failing_since: number | null;
};

/**
 * Claims one attempt of item `key`, or says why not. `holdMs`: how long a failing earlier item
 * may hold this one back (Infinity: until it is finished).
 */
export function claim(sql: SqlStorage, lane: Lane, key: string, leaseMs: number, holdMs: number, now: number): Claim<Record<never, never>> {
  const row = sql
    .exec<ClaimRow & { seq: number | null }>(
      `SELECT ${lane.attempts} AS attempts, ${lane.leaseUntil} AS lease_until, ${lane.seq} AS seq FROM ${lane.table} WHERE ${lane.key} = ? AND ${lane.open}`,
      key,
    )
    .toArray()[0];
  if (!row) return { state: "done" };
  if (row.lease_until !== null && row.lease_until > now) return { state: "busy", retryInMs: row.lease_until - now };
  const head = row.seq === null ? undefined : earlierOpen(sql, lane, row.seq, holdMs, now);
  if (head) {
    // Neither under way nor waiting for a retry still to come: its job may be lost.
    const idle = (head.lease_until === null || head.lease_until <= now) && (head.retry_at ?? head.since) < now - STALL_MS;
    return idle ? { state: "waiting", retryInMs: STALL_MS, stalled: head.key } : { state: "waiting", retryInMs: waitFor(head, holdMs, now) };
  }
  sql.exec(
    `UPDATE ${lane.table} SET ${lane.attempts} = ${lane.attempts} + 1, ${lane.claimedAt} = ?, ${lane.leaseUntil} = ?${lane.onClaim ? `, ${lane.onClaim}` : ""} WHERE ${lane.key} = ?`,
    now,
    now + leaseMs,
    key,
  );
  return { state: "claimed", attempts: row.attempts + 1, token: now };
}

/** The first unfinished item before `seq` that still holds later ones back, if any. */
function earlierOpen(sql: SqlStorage, lane: Lane, seq: number, holdMs: number, now: number): HeadRow | undefined {
  const held = Number.isFinite(holdMs) ? ` AND (${lane.failingSince} IS NULL OR ${lane.failingSince} > ${now - holdMs})` : "";
  return sql
    .exec<HeadRow>(
      `SELECT ${lane.key} AS key, ${lane.since} AS since, ${lane.leaseUntil} AS lease_until, ${lane.retryAt} AS retry_at, ${lane.failingSince} AS failing_since FROM ${lane.table}
       WHERE ${lane.open} AND ${lane.seq} < ?${held} ORDER BY ${lane.seq} LIMIT 1`,
      seq,
    )
    .toArray()[0];
}

/** How long an earlier item may sit idle before the waiting one has its job handed on again. */
const STALL_MS = 5_000;

/** When to ask again: once the earlier item's attempt has ended, or its retry is due, or its hold is over. */
function waitFor(head: HeadRow, holdMs: number, now: number): number {
  let at = head.lease_until !== null && head.lease_until > now ? head.lease_until : (head.retry_at ?? now);
  if (head.failing_since !== null) at = Math.min(at, head.failing_since + holdMs);
  return Math.max(1_000, at - now + 500); // just after the earlier one's turn
}

/** True when `token` is still the item's claim: a holder whose lease lapsed and was taken over records nothing. */
export function holds(sql: SqlStorage, lane: Lane, key: string, token: number): boolean {
  return sql.exec(`SELECT 1 FROM ${lane.table} WHERE ${lane.key} = ? AND ${lane.claimedAt} = ? AND ${lane.open}`, key, token).toArray().length > 0;
}

/** The claim `token` given back without a result (its holder went away): the item may be claimed again. */
export function release(sql: SqlStorage, lane: Lane, key: string, token: number): void {
  sql.exec(`UPDATE ${lane.table} SET ${lane.leaseUntil} = NULL WHERE ${lane.key} = ? AND ${lane.claimedAt} = ? AND ${lane.open}`, key, token);
}

/** The attempt failed: the next one is due at `retryAt`. The claim ends. */
export function postpone(sql: SqlStorage, lane: Lane, key: string, retryAt: number, now: number): void {
  sql.exec(
    `UPDATE ${lane.table} SET ${lane.leaseUntil} = NULL, ${lane.retryAt} = ?, ${lane.failingSince} = coalesce(${lane.failingSince}, ?) WHERE ${lane.key} = ?`,
    retryAt,
    now,
    key,
  );
}

/** Time left on the item's lease (0: none): while > 0, nothing may finish it but its holder. */
export function leaseLeft(sql: SqlStorage, lane: Lane, key: string, now: number): number {
  const row = sql.exec<{ lease_until: number | null }>(`SELECT ${lane.leaseUntil} AS lease_until FROM ${lane.table} WHERE ${lane.key} = ?`, key).toArray()[0];
  return row?.lease_until ? Math.max(0, row.lease_until - now) : 0;
}

/**
 * The item after `seq` that may have been told to wait for it, if any: handed on as soon as the
 * earlier one ends, so the user's next item does not sit out its full wait.
 */
export function nextInLine(sql: SqlStorage, lane: Lane, seq: number | null): string | undefined {
  if (seq === null) return undefined;
  return sql
    .exec<{ key: string }>(
      `SELECT ${lane.key} AS key FROM ${lane.table} WHERE ${lane.open} AND ${lane.seq} > ? AND ${lane.leaseUntil} IS NULL ORDER BY ${lane.seq} LIMIT 1`,
      seq,
    )
    .toArray()[0]?.key;
}
