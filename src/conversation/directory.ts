import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env.ts";
import { conversation, type TroubledForward } from "./conversation.ts";

export interface DirectoryPage {
  conversations: { openid: string; lastActiveAt: string }[];
  /** Pass as `before` for the next page; absent on the last page. */
  next?: string;
}

/**
 * One per app: which conversations exist and when each was last active, for listing them newest
 * first. Told by each conversation after its commit, when it is new or was quiet for
 * DIRECTORY_QUIET_MS: it never slows a push down, and `lastActiveAt` is exact to that period.
 */
export class Directory extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS conversations (openid TEXT PRIMARY KEY, last_active_at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS by_activity ON conversations (last_active_at DESC, openid DESC);
      CREATE TABLE IF NOT EXISTS failing_forwards (openid TEXT NOT NULL, key TEXT NOT NULL, msg_id TEXT, PRIMARY KEY (openid, key)) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS failing_by_msg_id ON failing_forwards (msg_id);
    `);
  }

  // ---- forwards that failed: listed and re-driven from here; their state lives in the conversation

  /** A forward's attempt failed (the first time): it is listed until it is delivered or forgotten. */
  forwardFailing(openid: string, key: string, msgId: string | null): void {
    this.sql.exec("INSERT INTO failing_forwards (openid, key, msg_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", openid, key, msgId);
  }

  /**
   * The app's forwards that failed at least once, as their conversations have them now; those
   * since delivered (or forgotten) leave the list.
   */
  async forwards(app: string, status: "pending" | "failed", limit: number): Promise<TroubledForward[]> {
    const found: TroubledForward[] = [];
    for (const [openid, keys] of this.byConversation()) {
      const states = await conversation(this.env, app, openid).forwardStates(keys);
      for (const key of keys) {
        const state = states.find((s) => s.key === key);
        if (!state || state.status === "delivered" || state.status === "skipped")
          this.sql.exec("DELETE FROM failing_forwards WHERE openid = ? AND key = ?", openid, key);
      }
      found.push(...states.filter((s) => s.status === status));
      if (found.length >= limit) break;
    }
    return found.slice(0, limit);
  }

  /** A forward that had failed was delivered: it leaves the list, and the app's failed ones are queued again. */
  async recovered(app: string, openid: string, key: string): Promise<{ redriven: number }> {
    this.sql.exec("DELETE FROM failing_forwards WHERE openid = ? AND key = ?", openid, key);
    return this.redrive(app);
  }

  /** Queues the app's failed forwards again (those of `msgIds` only, when given). */
  async redrive(app: string, msgIds?: string[]): Promise<{ redriven: number; notFound: string[] }> {
    const wanted = msgIds && new Set(msgIds);
    let redriven = 0;
    const done = new Set<string>();
    for (const [openid, keys] of this.byConversation(msgIds)) {
      const again = await conversation(this.env, app, openid).redriveForwards(keys);
      redriven += again.length;
      for (const forward of again) if (forward.msgId) done.add(forward.msgId);
    }
    return { redriven, notFound: wanted ? [...wanted].filter((id) => !done.has(id)) : [] };
  }

  private byConversation(msgIds?: string[]): Map<string, string[]> {
    const rows = msgIds
      ? this.sql.exec<{ openid: string; key: string }>(
          "SELECT openid, key FROM failing_forwards WHERE msg_id IN (SELECT value FROM json_each(?))",
          JSON.stringify(msgIds),
        )
      : this.sql.exec<{ openid: string; key: string }>("SELECT openid, key FROM failing_forwards");
    const grouped = new Map<string, string[]>();
    for (const { openid, key } of rows) grouped.set(openid, [...(grouped.get(openid) ?? []), key]);
    return grouped;
  }

  touch(openid: string, at: number): void {
    this.sql.exec(
      `INSERT INTO conversations (openid, last_active_at) VALUES (?, ?)
       ON CONFLICT (openid) DO UPDATE SET last_active_at = max(last_active_at, excluded.last_active_at)`,
      openid,
      at,
    );
  }

  /** The conversation has forgotten its whole history: stop listing it. */
  forget(openid: string): void {
    this.sql.exec("DELETE FROM conversations WHERE openid = ?", openid);
  }

  /** Newest first; `before` is the cursor of the previous page. */
  list(limit: number, cursor?: Cursor): DirectoryPage {
    const rows = this.sql
      .exec<{ openid: string; last_active_at: number }>(
        cursor
          ? `SELECT openid, last_active_at FROM conversations
             WHERE last_active_at < ? OR (last_active_at = ? AND openid < ?)
             ORDER BY last_active_at DESC, openid DESC LIMIT ?`
          : "SELECT openid, last_active_at FROM conversations ORDER BY last_active_at DESC, openid DESC LIMIT ?",
        ...(cursor ? [cursor.at, cursor.at, cursor.openid, limit + 1] : [limit + 1]),
      )
      .toArray();
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return {
      conversations: page.map((row) => ({ openid: row.openid, lastActiveAt: new Date(row.last_active_at).toISOString() })),
      ...(rows.length > limit && last && { next: encodeCursor(last.last_active_at, last.openid) }),
    };
  }
}

export interface Cursor {
  at: number;
  openid: string;
}

function encodeCursor(at: number, openid: string): string {
  return btoa(JSON.stringify([at, openid])).replaceAll("=", "");
}

/** The page cursor from `next`, or undefined when it is not one. */
export function decodeCursor(cursor: string): Cursor | undefined {
  try {
    const [at, openid] = JSON.parse(atob(cursor)) as [unknown, unknown];
    if (typeof at === "number" && typeof openid === "string") return { at, openid };
  } catch {
    // not base64 or not JSON: not a cursor of ours
  }
  return undefined;
}
