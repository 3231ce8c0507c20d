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
