import type { ReplyGrant } from "../platforms/platform.ts";

/**
 * The reply window of one conversation: until when, and how many more replies the platform will
 * take. Pure functions over stored times, so the answer is right after eviction or restart.
 */
export interface ReplyWindow {
  /** Epoch ms; the window is open while now < expiresAt. */
  expiresAt: number;
  remaining: number;
  /** The allowance of the grant in force, the most a released reply can bring `remaining` back to. */
  allowance: number;
  /** When the last user action granted replies (epoch ms): a platform refusal of an older send does not apply to a newer grant. */
  grantedAt: number;
  /** The platform time of the newest user action applied (epoch ms): an older one arriving late changes nothing. */
  grantAt: number;
}

export const closedWindow: ReplyWindow = { expiresAt: 0, remaining: 0, allowance: 0, grantedAt: 0, grantAt: 0 };

export function isOpen(window: ReplyWindow, now: number): boolean {
  return now < window.expiresAt;
}

export interface Quota {
  remaining: number;
  /** ISO time the window closes, or null when it is closed. */
  windowExpiresAt: string | null;
}

export function quotaOf(window: ReplyWindow, now: number): Quota {
  return isOpen(window, now)
    ? { remaining: window.remaining, windowExpiresAt: new Date(window.expiresAt).toISOString() }
    : { remaining: 0, windowExpiresAt: null };
}

/**
 * A user action's grant applied at `at`. The platforms do not add allowances up (WeChat's doc:
 * 条数不累加, 更新为当前可下发条数限制的最大值…最长有效时间): the count becomes the larger of what
 * is left and what the action allows, the deadline the later of the two.
 * `counted`: replies the platform counts against this grant (sent since `at`, or reserved and yet to
 * be sent): a grant that arrives late must not hand out again what was sent in the meantime.
 */
export function applyGrant(window: ReplyWindow, grant: ReplyGrant, at: number, counted: number, recordedAt = at): ReplyWindow {
  // A late copy of an older action: the platform applied it before the newer one, whose count and
  // deadline are already in force (and replies since were counted against them). It adds nothing.
  if (at < window.grantAt) return window;
  const current = isOpen(window, at) ? window : closedWindow;
  return {
    expiresAt: Math.max(current.expiresAt, at + grant.seconds * 1000),
    remaining: Math.max(current.remaining, grant.replies - counted, 0),
    allowance: Math.max(current.allowance, grant.replies),
    grantedAt: recordedAt,
    grantAt: at,
  };
}

export type TakeResult = { ok: true; window: ReplyWindow } | { ok: false; code: "window_closed" | "quota_exhausted" };

/** Reserves one reply, or says why not. */
export function takeReply(window: ReplyWindow, now: number): TakeResult {
  if (!isOpen(window, now)) return { ok: false, code: "window_closed" };
  if (window.remaining <= 0) return { ok: false, code: "quota_exhausted" };
  return { ok: true, window: { ...window, remaining: window.remaining - 1 } };
}

/** A reserved reply that was never delivered gives its slot back (if the window is still open). */
export function releaseReply(window: ReplyWindow, now: number): ReplyWindow {
  if (!isOpen(window, now)) return window;
  return { ...window, remaining: Math.min(window.allowance, window.remaining + 1) };
}

/** The platform said the quota is used up (Baidu 90001, WeChat 45047). */
export function exhaust(window: ReplyWindow): ReplyWindow {
  return { ...window, remaining: 0 };
}

/** The platform said the window is closed (WeChat 45015). */
export function closeWindow(window: ReplyWindow, now: number): ReplyWindow {
  return { ...window, expiresAt: Math.min(window.expiresAt, now), remaining: 0 };
}
