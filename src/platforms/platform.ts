import type { Message, Platform } from "../protocol/codec";

/** What a user action allows: this many replies within this many seconds. */
export interface ReplyGrant {
  replies: number;
  seconds: number;
}

/**
 * Everything that differs between the platforms, as data. Each platform file exports one of
 * these; nothing else in kefu-edge asks which platform it is talking to.
 */
export interface PlatformRules {
  name: Platform;
  /** How long the platform waits for `success` before it retries. */
  pushDeadlineMs: number;
  /** Whether a decrypted push must end with the app's appId (WeChat) or not (Baidu). */
  trailingIdIsAppId: boolean;
  /** MsgTypes the platform sends about itself, not from a user: acknowledged, never a conversation. */
  systemTypes: readonly string[];
  /** What a user message allows (PROTOCOL.md §6). */
  messageGrant: ReplyGrant;
  /** Events that open a reply window of their own, by Event name. */
  eventGrants: Readonly<Record<string, ReplyGrant>>;
}

/** The reply window a message opens, if any. Events open one only if listed. */
export function grantFor(rules: PlatformRules, message: Pick<Message, "type" | "event">): ReplyGrant | undefined {
  if (message.type === "event") return message.event ? rules.eventGrants[message.event] : undefined;
  return rules.messageGrant;
}
