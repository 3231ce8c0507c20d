// Which combinations of the simulator's options a platform really sends. Pure (no Node APIs), so
// the test suite checks it inside workerd; tools/simulate.ts refuses what this refuses.

import type { Platform } from "../src/protocol/codec.ts";

/** The options as given on the command line: undefined when not given (before any default). */
export interface GivenOptions {
  handshake?: boolean;
  type?: string;
  content?: string;
  "pic-url"?: string;
  event?: string;
  "msg-id"?: string;
  openid?: string;
  mode?: string;
  format?: string;
  envelope?: string;
  repeat?: string;
  app?: string;
  tp?: string;
  "tp-event"?: string;
  "app-id"?: string;
  "stand-in"?: string;
}

/** Options that only mean something for a third-party platform (--tp). */
const TP_OPTIONS = ["tp-event", "app-id", "stand-in"] as const;

/**
 * Why the simulator cannot play Baidu for a third-party platform with these options, or undefined.
 * Without --tp, only that the TP options need it.
 */
export function tpRefusal(given: GivenOptions): string | undefined {
  if (!given.tp) {
    const extra = TP_OPTIONS.filter((name) => given[name] !== undefined);
    return extra.length ? `${extra.map((name) => `--${name}`).join(", ")} belong to a third-party platform: add --tp NAME` : undefined;
  }
  if (given.app !== undefined) return "--tp pushes for a mini program authorized to the platform: name it by --app-id, not --app";
  if (given.mode !== undefined && given.mode !== "safe") return "third-party platforms push in safe mode only: drop --mode";
  if (given.format !== undefined && given.format !== "json") return "third-party platforms push JSON only: drop --format";
  if (given.envelope !== undefined && given.envelope !== "body") return "third-party platforms sign in the body envelope only: drop --envelope";
  if (given["tp-event"] !== undefined) {
    if (given.handshake) return "--handshake checks both URLs and sends no event: drop --tp-event";
    const extra = MESSAGE_OPTIONS.filter((name) => name !== "repeat" && given[name] !== undefined);
    if (extra.length) return `--tp-event pushes a platform event, not a user's message: ${extra.map((name) => `--${name}`).join(", ")} cannot apply`;
  }
  return undefined;
}

/** Options that shape the message of a push: a handshake sends none. */
const MESSAGE_OPTIONS = ["type", "content", "pic-url", "event", "msg-id", "openid", "mode", "format", "repeat"] as const;

/** Options that only one message type carries. */
const TYPE_OPTIONS = { content: "text", "pic-url": "image", event: "event" } as const;

/** Why the simulator cannot send these options as the platform would, or undefined when it can. */
export function refusal(given: GivenOptions, app: { platform: Platform; encodingAesKey?: string }): string | undefined {
  if (given.handshake) {
    const extra = MESSAGE_OPTIONS.filter((name) => given[name] !== undefined);
    if (extra.length) return `--handshake only checks the URL and sends no message: ${extra.map((name) => `--${name}`).join(", ")} cannot apply`;
    if (given.envelope === "body" && app.platform === "wechat") return "--envelope body: WeChat's URL check is a GET with its parameters in the query";
    return undefined;
  }
  const type = given.type ?? "text";
  for (const [option, carrier] of Object.entries(TYPE_OPTIONS)) {
    if (given[option as keyof typeof TYPE_OPTIONS] !== undefined && type !== carrier) {
      return `--${option} belongs to --type ${carrier}, not to --type ${type}`;
    }
  }
  if (given["msg-id"] !== undefined && type === "event") return "--msg-id: events carry no MsgId (they are de-duplicated by sender and CreateTime)";
  const mode = given.mode ?? "safe";
  if (mode !== "plaintext" && !app.encodingAesKey) return `this app has no encodingAesKey, so it cannot be sent --mode ${mode}: use --mode plaintext`;
  if (given.envelope === "body") {
    if (app.platform === "wechat") return "--envelope body is Baidu's third-party envelope: WeChat sends msg_signature in the query";
    if (mode === "plaintext") return "--envelope body carries the encrypted message and its signature (Encrypt, MsgSignature): use --mode safe or compatible";
  }
  return undefined;
}
