import fc from "fast-check";
import { describe, expect, inject, it } from "vitest";
import { applyGrant, closedWindow, isOpen, takeReply, type ReplyWindow } from "../../src/conversation/window.ts";
import { wechatRules } from "../../src/platforms/wechat.ts";
import type { ReplyGrant } from "../../src/platforms/platform.ts";

const RUNS = inject("fuzzRuns") || 500;
const H = 3_600_000;
const t0 = Date.UTC(2026, 10, 22, 8, 0, 0);
const wechat = wechatRules({ replies: 2, seconds: 60 });
const grants: ReplyGrant[] = [wechat.messageGrant, wechat.eventGrants.user_enter_tempsession!];

/** A user action at `at` (its platform time), reaching kefu-edge `delay` ms later (a late copy, a retry). */
const actionArb = fc.record({
  at: fc.integer({ min: 0, max: 100 * H }),
  delay: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 0, max: 50 * H })),
  grant: fc.constantFrom(...grants),
});
const takeArb = fc.integer({ min: 0, max: 160 * H });

type Event =
  | { kind: "occurs"; t: number; at: number; grant: ReplyGrant }
  | { kind: "arrives"; t: number; at: number; grant: ReplyGrant }
  | { kind: "send"; t: number };

/**
 * Runs one timeline: the platform applies each action when it happens and counts every send;
 * kefu-edge applies each action when it arrives, and sends only what its window allows.
 * Returns whether every send kefu-edge allowed was one the platform accepted, and both windows.
 */
function run(actions: { at: number; delay: number; grant: ReplyGrant }[], sends: number[]) {
  const order = { occurs: 0, send: 1, arrives: 2 };
  const events: Event[] = [
    ...actions.flatMap((a): Event[] => [
      { kind: "occurs", t: t0 + a.at, at: t0 + a.at, grant: a.grant },
      { kind: "arrives", t: t0 + a.at + a.delay, at: t0 + a.at, grant: a.grant },
    ]),
    ...sends.map((t): Event => ({ kind: "send", t: t0 + t })),
  ].sort((a, b) => a.t - b.t || order[a.kind] - order[b.kind]);
  let platform: ReplyWindow = closedWindow;
  let kefu: ReplyWindow = closedWindow;
  const sent: number[] = [];
  let refused = 0;
  for (const event of events) {
    if (event.kind === "occurs") platform = applyGrant(platform, event.grant, event.at, 0);
    else if (event.kind === "arrives") kefu = applyGrant(kefu, event.grant, event.at, sent.filter((t) => t >= event.at).length, event.t);
    else {
      const taken = takeReply(kefu, event.t);
      if (!taken.ok) continue;
      kefu = taken.window;
      sent.push(event.t);
      const accepted = takeReply(platform, event.t);
      if (accepted.ok) platform = accepted.window;
      else refused++;
    }
  }
  return { platform, kefu, refused };
}

describe("the reply window under any arrival order (property)", () => {
  it("a grant older than the one in force never raises the count or the deadline", () => {
    fc.assert(
      fc.property(fc.array(actionArb, { minLength: 1, maxLength: 6 }), actionArb, fc.nat(10), (earlier, late, counted) => {
        const window = earlier.reduce((w, a) => applyGrant(w, a.grant, t0 + a.at, 0), closedWindow);
        fc.pre(t0 + late.at < window.grantAt);
        const after = applyGrant(window, late.grant, t0 + late.at, counted);
        expect(after.remaining).toBeLessThanOrEqual(window.remaining);
        expect(after.expiresAt).toBeLessThanOrEqual(window.expiresAt);
      }),
      { numRuns: RUNS },
    );
  });

  it("whatever order actions arrive in, every reply kefu-edge allows is one the platform accepts", () => {
    fc.assert(
      fc.property(fc.array(actionArb, { minLength: 1, maxLength: 8 }), fc.array(takeArb, { maxLength: 20 }), (actions, sends) => {
        const { platform, kefu, refused } = run(actions, sends);
        expect(refused).toBe(0);
        // And kefu-edge never promises more than the platform holds, nor for longer.
        expect(kefu.expiresAt).toBeLessThanOrEqual(platform.expiresAt);
        if (isOpen(kefu, kefu.expiresAt - 1)) expect(kefu.remaining).toBeLessThanOrEqual(platform.remaining);
      }),
      { numRuns: RUNS },
    );
  });

  it("the newest action is in force once everything has arrived: order changes nothing when nothing was sent", () => {
    fc.assert(
      fc.property(fc.array(actionArb, { minLength: 1, maxLength: 8 }), (actions) => {
        const { platform, kefu } = run(actions, []);
        const newest = actions.reduce((a, b) => (b.at > a.at ? b : a));
        expect(kefu.expiresAt).toBeGreaterThanOrEqual(t0 + newest.at + newest.grant.seconds * 1000);
        expect(kefu.remaining).toBeGreaterThanOrEqual(newest.grant.replies);
        expect(kefu.expiresAt).toBeLessThanOrEqual(platform.expiresAt);
        expect(kefu.remaining).toBeLessThanOrEqual(platform.remaining);
      }),
      { numRuns: RUNS },
    );
  });

  it("WeChat's message and session grants combine as documented: the larger count, the later deadline", () => {
    const [message, session] = grants as [ReplyGrant, ReplyGrant];
    const both = applyGrant(applyGrant(closedWindow, message, t0, 0), session, t0 + 1000, 0);
    expect(both).toMatchObject({ remaining: 5, expiresAt: t0 + 48 * H });
    const reversed = applyGrant(applyGrant(closedWindow, session, t0, 0), message, t0 + 1000, 0);
    expect(reversed).toMatchObject({ remaining: 5, expiresAt: t0 + 1000 + 48 * H });
  });
});
