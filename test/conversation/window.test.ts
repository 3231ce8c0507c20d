import { describe, expect, it } from "vitest";
import { applyGrant, closeWindow, closedWindow, exhaust, quotaOf, releaseReply, takeReply, type ReplyWindow } from "../../src/conversation/window.ts";
import { baidu } from "../../src/platforms/baidu.ts";
import { wechat } from "../../src/platforms/wechat.ts";

const H = 3_600_000;
const t0 = Date.UTC(2026, 10, 22, 8, 0, 0);

function take(window: ReplyWindow, now: number, times: number): ReplyWindow {
  for (let i = 0; i < times; i++) {
    const result = takeReply(window, now);
    if (!result.ok) throw new Error(result.code);
    window = result.window;
  }
  return window;
}

describe("reply window", () => {
  it("is closed until the user writes", () => {
    expect(takeReply(closedWindow, t0)).toEqual({ ok: false, code: "window_closed" });
    expect(quotaOf(closedWindow, t0)).toEqual({ remaining: 0, windowExpiresAt: null });
  });

  it("Baidu: a message allows 5 replies within 48 h, then quota_exhausted", () => {
    let window = applyGrant(closedWindow, baidu.messageGrant, t0, 0);
    expect(quotaOf(window, t0)).toEqual({ remaining: 5, windowExpiresAt: new Date(t0 + 48 * H).toISOString() });
    window = take(window, t0 + H, 5);
    expect(takeReply(window, t0 + H)).toEqual({ ok: false, code: "quota_exhausted" });
  });

  it("Baidu: each new message resets to 5 and 48 h; unused replies do not accumulate", () => {
    let window = applyGrant(closedWindow, baidu.messageGrant, t0, 0);
    window = take(window, t0, 1); // 4 left
    window = applyGrant(window, baidu.messageGrant, t0 + 10 * H, 0);
    expect(quotaOf(window, t0 + 10 * H)).toEqual({ remaining: 5, windowExpiresAt: new Date(t0 + 58 * H).toISOString() });
  });

  it("expires exactly at 48 h", () => {
    const window = applyGrant(closedWindow, baidu.messageGrant, t0, 0);
    expect(takeReply(window, t0 + 48 * H - 1).ok).toBe(true);
    expect(takeReply(window, t0 + 48 * H)).toEqual({ ok: false, code: "window_closed" });
  });

  it("counts replies still in flight against the new allowance", () => {
    let window = applyGrant(closedWindow, baidu.messageGrant, t0, 0);
    window = take(window, t0, 5);
    // Two of the five are still queued when the user writes again: they will use two of the new five.
    window = applyGrant(window, baidu.messageGrant, t0 + H, 2);
    expect(window.remaining).toBe(3);
  });

  it("WeChat: entering the session opens a short window (2 in 1 minute by default)", () => {
    const grant = wechat.eventGrants.user_enter_tempsession!;
    const window = applyGrant(closedWindow, grant, t0, 0);
    expect(quotaOf(window, t0)).toEqual({ remaining: 2, windowExpiresAt: new Date(t0 + 60_000).toISOString() });
    expect(takeReply(window, t0 + 60_000)).toEqual({ ok: false, code: "window_closed" });
  });

  it("WeChat: entering does not shrink an open 48 h window, and a message lifts a session window", () => {
    const grant = wechat.eventGrants.user_enter_tempsession!;
    let window = applyGrant(closedWindow, wechat.messageGrant, t0, 0);
    window = take(window, t0, 4); // 1 left
    window = applyGrant(window, grant, t0 + H, 0);
    // The larger allowance and the later deadline, never the sum.
    expect(quotaOf(window, t0 + H)).toEqual({ remaining: 2, windowExpiresAt: new Date(t0 + 48 * H).toISOString() });
    window = applyGrant(window, wechat.messageGrant, t0 + 2 * H, 0);
    expect(window.remaining).toBe(5);
  });

  it("gives a released slot back, never beyond the allowance, and not after expiry", () => {
    let window = applyGrant(closedWindow, baidu.messageGrant, t0, 0);
    window = take(window, t0, 1);
    expect(releaseReply(window, t0).remaining).toBe(5);
    expect(releaseReply(releaseReply(window, t0), t0).remaining).toBe(5);
    expect(releaseReply(window, t0 + 49 * H)).toEqual(window);
  });

  it("follows what the platform says: quota used up, or window closed", () => {
    const window = applyGrant(closedWindow, baidu.messageGrant, t0, 0);
    expect(takeReply(exhaust(window), t0)).toEqual({ ok: false, code: "quota_exhausted" });
    expect(takeReply(closeWindow(window, t0), t0)).toEqual({ ok: false, code: "window_closed" });
  });
});
