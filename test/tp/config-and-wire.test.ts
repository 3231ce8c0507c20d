import fc from "fast-check";
import { describe, expect, inject, it } from "vitest";
import { parseConfig, type KefuVars } from "../../src/config.ts";
import { readPlatformEvent } from "../../src/protocol/tp-event.ts";
import { KefuError } from "../../src/protocol/errors.ts";
import { testThirdParties } from "../fixtures/third-party.ts";
import { postRaw, sealTp, textPush, uniqueAppId } from "../helpers.ts";

const KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const RUNS = Math.min(inject("fuzzRuns") || 300, 2000);

function problemsOf(vars: KefuVars): string[] {
  const result = parseConfig(vars);
  if (result.ok) throw new Error("expected problems");
  return result.problems;
}

const tp = (value: unknown, apps = true): KefuVars => ({
  ...(apps && { KEFU_APPS: JSON.stringify({ shop: { platform: "baidu", token: "t" } }) }),
  KEFU_THIRD_PARTY: typeof value === "string" ? value : JSON.stringify(value),
});

describe("KEFU_THIRD_PARTY", () => {
  it("reads each platform, the message URL's pair defaulting to the events URL's", () => {
    const result = parseConfig(
      tp({
        a: { clientId: "c", token: "t", encodingAesKey: KEY },
        b: { clientId: "c2", token: "t", encodingAesKey: KEY, messageToken: "m", messageEncodingAesKey: KEY.toLowerCase() },
      }),
    );
    if (!result.ok) throw new Error(result.problems.join("; "));
    expect(result.config.thirdParties.get("a")).toEqual({
      name: "a",
      clientId: "c",
      token: "t",
      encodingAesKey: KEY,
      messageToken: "t",
      messageEncodingAesKey: KEY,
    });
    expect(result.config.thirdParties.get("b")).toMatchObject({ messageToken: "m" });
  });

  it("is enough without KEFU_APPS, for a provider that serves only authorized mini programs", () => {
    const result = parseConfig(tp({ a: { clientId: "c", token: "t", encodingAesKey: KEY } }, false));
    if (!result.ok) throw new Error(result.problems.join("; "));
    expect(result.config.apps.size).toBe(0);
    expect(problemsOf({})).toEqual(["KEFU_APPS is not set: give it a JSON object of apps (wrangler secret put KEFU_APPS)"]);
  });

  it("names each wrong field of each platform, never a value", () => {
    const problems = problemsOf(
      tp({
        good: { clientId: "c", token: "t", encodingAesKey: KEY },
        bad: { token: "secret-token", encodingAesKey: "short-secret", messageEncodingAesKey: "x", tokn: 1 },
        "a b": { clientId: "c", token: "t", encodingAesKey: KEY },
      }),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        "KEFU_THIRD_PARTY.bad.clientId is required (the platform's TP key, client_id)",
        "KEFU_THIRD_PARTY.bad.encodingAesKey must be 43 characters of [A-Za-z0-9]",
        "KEFU_THIRD_PARTY.bad.messageEncodingAesKey must be 43 characters of [A-Za-z0-9]",
        "KEFU_THIRD_PARTY.bad.tokn is not a known field (clientId, token, encodingAesKey, messageToken, messageEncodingAesKey)",
        "KEFU_THIRD_PARTY.a b is not a platform name: names are 1-64 of [A-Za-z0-9_-]",
      ]),
    );
    expect(problems.join("\n")).not.toMatch(/secret/);
    expect(problemsOf(tp({ a: { clientId: "c", token: "t", encodingAesKey: KEY }, b: { clientId: "c", token: "u", encodingAesKey: KEY } }))).toEqual([
      "KEFU_THIRD_PARTY.b.clientId is the same as a's: one platform, one entry",
    ]);
    expect(problemsOf(tp("{nope"))).toEqual(["KEFU_THIRD_PARTY is not valid JSON"]);
    expect(problemsOf(tp("[1]"))[0]).toMatch(/^KEFU_THIRD_PARTY must be a JSON object keyed by platform name/);
  });
});

describe("the platform's URLs under random input", () => {
  it("decoding any event ends as an event or a 4xx, never another exception", () => {
    const value = fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.boolean());
    const event = fc.dictionary(fc.constantFrom("MsgType", "Ticket", "CreateTime", "event", "appId", "eventTime", "authorizationCode", "Event", "x"), value);
    fc.assert(
      fc.property(event, (fields) => {
        try {
          readPlatformEvent(fields as never);
        } catch (error) {
          if (!(error instanceof KefuError) || error.status >= 500) throw error;
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("any body to either URL, signed or not, gets success or a 4xx, never a 5xx", async () => {
    const platform = testThirdParties.mytp;
    const body = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.json({ maxDepth: 3 }),
      fc
        .record(
          {
            Ticket: fc.string(),
            MsgType: fc.constantFrom("ticket", "text"),
            CreateTime: fc.oneof(fc.integer(), fc.string()),
            event: fc.constantFrom("AUTHORIZED", "UNAUTHORIZED", "OTHER"),
            appId: fc.oneof(fc.integer(), fc.string()),
            eventTime: fc.string(),
          },
          { requiredKeys: [] },
        )
        .map((fields) => sealTp(fields as never, platform).body),
      fc.constant(null).map(() => sealTp(textPush({ ToUserName: uniqueAppId() }), platform).body),
    );
    await fc.assert(
      fc.asyncProperty(body, fc.constantFrom("events", "messages"), async (text, path) => {
        const response = await postRaw(`/tp/mytp/${path}`, text, "application/json");
        expect(response.status).toBeLessThan(500);
        await response.arrayBuffer();
      }),
      { numRuns: Math.min(RUNS, 150) },
    );
  });
});
