import fc from "fast-check";
import sax from "sax";
import { describe, expect, inject, it } from "vitest";
import { requireApp, requireConfig } from "../../src/app-config.ts";
import type { Fields } from "../../src/protocol/codec.ts";
import { KefuError } from "../../src/protocol/errors.ts";
import type { SecurityMode } from "../../src/protocol/push.ts";
import { encode, sealPush } from "../../src/protocol/seal.ts";
import { parseXml } from "../../src/protocol/xml.ts";
import { receive } from "../../src/push/receive.ts";
import { testApps, type TestAppName } from "../fixtures/apps.ts";
import { env, modeOf } from "../helpers.ts";

/**
 * Property tests over the whole inbound path. A bounded run in `npm test`; a longer one with
 * `FUZZ_RUNS=100000 npm test`. fast-check prints the seed and path of any failure to replay it.
 */
const RUNS = inject("fuzzRuns") || 2000;
const NOW = 1_764_000_000;
const clock = { now: NOW, toleranceSeconds: 300 };

const apps = ["wx-sample", "wx-doc", "bd-shop", "bd-compat", "bd-plain"] as const satisfies readonly TestAppName[];
const appConfig = (name: TestAppName) => requireApp(requireConfig(env), name);

/** XML 1.0 characters (no lone surrogates, no control characters it forbids). */
const xmlChar = fc
  .oneof(fc.constantFrom("<", ">", "&", '"', "'", "]", "\n", " ", "\t", "\r"), fc.string({ unit: "grapheme", minLength: 1, maxLength: 1 }))
  .filter((c) => /^[\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]+$/u.test(c));
const xmlText = fc.array(xmlChar, { maxLength: 40 }).map((chars) => chars.join(""));
/** What a user can write: XML reads a raw carriage return as a line feed, as the standard says. */
const userText = xmlText.map((text) => text.replaceAll("\r", ""));

const fieldsArb = fc.record({
  FromUserName: fc.stringMatching(/^[A-Za-z0-9_-]{1,40}$/),
  CreateTime: fc.constant(NOW - 1),
  MsgType: fc.constantFrom("text", "image", "event", "miniprogrampage"),
  Content: userText,
  MsgId: fc.bigInt({ min: 1n, max: 2n ** 64n - 1n }).map(String),
});

/** Seals a push as the app's platform would, at NOW; `inner` is the plaintext that was encrypted. */
function seal(app: TestAppName, fields: Fields, mode: SecurityMode, format: "xml" | "json", envelope: "query" | "body") {
  const config = testApps[app] as { token: string; encodingAesKey?: string; appId?: string; platform: string };
  const encodingAesKey = config.encodingAesKey ?? testApps["bd-shop"].encodingAesKey; // the console's, for keyless apps
  const addressed = { ToUserName: config.platform === "baidu" ? (config.appId ?? "baidu-app") : "gh_1", ...fields };
  return {
    inner: encode(addressed, format),
    ...sealPush(addressed, {
      token: config.token,
      encodingAesKey,
      trailingId: config.platform === "wechat" ? config.appId : "20073496",
      mode,
      format,
      envelope: mode === "plaintext" ? "query" : envelope,
      timestamp: String(NOW),
    }),
  };
}

/** Ends as a handshake or a message, or as a 4xx KefuError: never as anything else. */
function judged(run: () => unknown): "ok" | "refused" {
  try {
    run();
    return "ok";
  } catch (error) {
    if (error instanceof KefuError && error.status >= 400 && error.status < 500) return "refused";
    throw error;
  }
}

const SNIPPETS = [
  "<!DOCTYPE x>",
  "<!ENTITY a 'b'>",
  "&a;",
  "&#0;",
  "&#x110000;",
  "<![CDATA[",
  "]]>",
  "<!--",
  "-->",
  "<",
  ">",
  "&",
  "{",
  "}",
  '"',
  "\u0000",
  "<?x?>",
  "</xml>",
  "<xml>",
  "<a/>",
  "\uFEFF",
  "=",
  "%",
  "+",
];

/** A body changed the way an attacker or a broken proxy would change it. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), text: fc.oneof(fc.constantFrom(...SNIPPETS), fc.string({ maxLength: 8 })) }),
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), length: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), char: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) }),
);

type Change = { kind: string; at: number; text?: string; length?: number; char?: string };

function mutate(body: string, changes: Change[]): string {
  let text = body;
  for (const change of changes) {
    const at = text.length ? change.at % (text.length + 1) : 0;
    if (change.kind === "insert") text = text.slice(0, at) + change.text + text.slice(at);
    else if (change.kind === "delete") text = text.slice(0, at) + text.slice(at + change.length!);
    else if (change.kind === "truncate") text = text.slice(0, at);
    else text = text.slice(0, at) + change.char + text.slice(at + 1);
  }
  return text;
}

const queryArb = fc.dictionary(
  fc.constantFrom("signature", "timestamp", "nonce", "msg_signature", "encrypt_type", "echostr", "echoStr", "openid"),
  fc.oneof(fc.string({ maxLength: 12 }), fc.constant(String(NOW)), fc.constant("0".repeat(40))),
);

describe("the inbound path, under random input", { timeout: Math.max(30_000, RUNS * 2) }, () => {
  it("turns any body, query and envelope into a message or a 4xx, in every mode and format", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...apps),
        fieldsArb,
        fc.constantFrom("plaintext", "compatible", "safe") as fc.Arbitrary<SecurityMode>,
        fc.constantFrom("xml", "json") as fc.Arbitrary<"xml" | "json">,
        fc.constantFrom("query", "body") as fc.Arbitrary<"query" | "body">,
        fc.array(mutation, { maxLength: 4 }),
        fc.option(queryArb, { nil: undefined }),
        fc.constantFrom("POST", "GET"),
        (app, fields, mode, format, envelope, changes, query, method) => {
          const sealed = seal(app, fields, mode, format, envelope);
          const body = mutate(sealed.body, changes);
          const outcome = judged(() => receive(appConfig(app), { method, query: query ?? sealed.query, body }, clock));
          // Untouched, in the app's own mode, it is accepted.
          if (changes.length === 0 && query === undefined && method === "POST" && mode === modeOf(app)) expect(outcome).toBe("ok");
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("survives bodies that are not pushes at all", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...apps),
        fc.oneof(fc.string({ maxLength: 300 }), fc.json(), fc.string({ unit: "binary", maxLength: 200 })),
        queryArb,
        (app, body, query) => {
          judged(() => receive(appConfig(app), { method: "POST", query, body }, clock));
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("opens every sealed push it is given, every pad byte 1..32, on both platforms", () => {
    const pads = { "wx-sample": new Set<number>(), "bd-shop": new Set<number>() };
    fc.assert(
      fc.property(
        fc.constantFrom("wx-sample", "bd-shop") as fc.Arbitrary<"wx-sample" | "bd-shop">,
        fieldsArb,
        fc.constantFrom("xml", "json") as fc.Arbitrary<"xml" | "json">,
        (app, fields, format) => {
          const sealed = seal(app, fields, "safe", format, app === "bd-shop" ? "body" : "query");
          const received = receive(appConfig(app), { method: "POST", query: sealed.query, body: sealed.body }, clock);
          expect(received).toMatchObject({
            kind: "push",
            mode: "safe",
            message: { openid: fields.FromUserName, content: fields.Content, msgId: BigInt(fields.MsgId).toString() },
          });
          // The pad byte this push used: ciphertext = 16 random + 4 length + message + trailing id + pad.
          const trailing = app === "wx-sample" ? testApps["wx-sample"].appId : "20073496";
          const encrypted = format === "json" ? JSON.parse(sealed.body).Encrypt : /<Encrypt><!\[CDATA\[(.*)\]\]><\/Encrypt>/.exec(sealed.body)![1]!;
          const pad = atob(encrypted).length - (20 + new TextEncoder().encode(sealed.inner).length + trailing.length);
          expect(pad).toBeGreaterThanOrEqual(1);
          pads[app].add(pad);
        },
      ),
      { numRuns: Math.max(RUNS, 2000) },
    );
    for (const seen of Object.values(pads)) expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: 32 }, (_, i) => i + 1));
  });

  it("decodes random XML text with references to what a reference XML parser reads", () => {
    const piece = fc.oneof(
      xmlChar.map((c) => ({ c, xml: c.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll("\r", "&#13;") })),
      xmlChar.map((c) => ({ c, xml: [...c].map((p) => `&#${p.codePointAt(0)};`).join("") })),
      xmlChar.map((c) => ({ c, xml: [...c].map((p) => `&#x${p.codePointAt(0)!.toString(16)};`).join("") })),
      fc
        .constantFrom(["<", "&lt;"], [">", "&gt;"], ["&", "&amp;"], ['"', "&quot;"], ["'", "&apos;"], ["&lt;", "&amp;lt;"])
        .map(([c, xml]) => ({ c: c!, xml: xml! })),
      xmlText.filter((t) => !t.includes("]]>") && !t.includes("\r")).map((t) => ({ c: t, xml: `<![CDATA[${t}]]>` })),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 30 }), (pieces) => {
        const xml = `<xml><Content>${pieces.map((p) => p.xml).join("")}</Content></xml>`;
        const expected = pieces.map((p) => p.c).join("");
        const ours = parseXml(xml).Content;
        expect(ours).toBe(expected);
        expect(ours).toBe(referenceContent(xml));
      }),
      { numRuns: RUNS },
    );
  });
});

/** sax, a strict streaming XML parser, reading the Content element's text and CDATA. */
function referenceContent(xml: string): string {
  const parser = sax.parser(true, { trim: false, normalize: false });
  let depth = 0;
  let text = "";
  parser.onopentag = () => void depth++;
  parser.onclosetag = () => void depth--;
  parser.ontext = (t: string) => {
    if (depth === 2) text += t;
  };
  parser.oncdata = (t: string) => {
    if (depth === 2) text += t;
  };
  parser.onerror = (error: Error) => {
    throw error;
  };
  parser.write(xml).close();
  return text;
}
