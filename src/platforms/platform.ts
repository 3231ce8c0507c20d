import type { Reply } from "../protocol/reply.ts";
import type { Message, Platform } from "../protocol/codec.ts";

/** What a user action allows: this many replies within this many seconds. */
export interface ReplyGrant {
  replies: number;
  seconds: number;
}

/**
 * What a platform's answer to a send means for the reply:
 * sent · token (refresh the access token, try once more) · quota (no replies left) ·
 * window (the window is closed) · retry (transient: back off and try again) · rejected (final).
 */
export type SendVerdict = "sent" | "token" | "quota" | "window" | "retry" | "rejected";

export interface PlatformAnswer {
  verdict: SendVerdict;
  /** The platform's own code (errno / error_code / errcode), when it gave one. */
  platformCode?: number;
  message: string;
}

export interface Credentials {
  appKey: string;
  appSecret: string;
}

/** A token endpoint's answer: the token, or why not and whether asking again later may work. */
export type TokenAnswer = { token: string; expiresInSeconds: number } | { error: string; retry: boolean };

/** A platform's send API: how to get a token, how to send, how to read the answers. */
export interface PlatformApi {
  tokenRequest(base: string, credentials: Credentials, forceRefresh: boolean): Request;
  readToken(body: unknown): TokenAnswer;
  sendRequest(base: string, token: string, openid: string, reply: Reply, userType: 1 | 2): Request;
  readSend(body: unknown): PlatformAnswer;
  /** The reply types this platform can send, and the fields each needs. */
  replyTypes: Readonly<Partial<Record<Reply["type"], readonly string[]>>>;
}

/**
 * Everything that differs between the platforms, as data. Each platform file exports one of
 * these; nothing else in kefu-edge asks which platform it is talking to.
 */
export interface PlatformRules {
  name: Platform;
  /** Whether a decrypted push must end with the app's appId (WeChat) or not (Baidu). */
  trailingIdIsAppId: boolean;
  /** Whether a push's ToUserName is the app's appId (Baidu) or another id (WeChat's gh_ original id). */
  toUserNameIsAppId: boolean;
  /** MsgTypes the platform sends about itself, not from a user: acknowledged, never a conversation. */
  systemTypes: readonly string[];
  /** What a user message allows (docs/protocol.md §6). */
  messageGrant: ReplyGrant;
  /** Events that open a reply window of their own, by Event name. */
  eventGrants: Readonly<Record<string, ReplyGrant>>;
  api: PlatformApi;
}

/** The reply window a message opens, if any. Events open one only if listed. */
export function grantFor(rules: PlatformRules, message: Pick<Message, "type" | "event">): ReplyGrant | undefined {
  if (message.type === "event") return message.event ? rules.eventGrants[message.event] : undefined;
  return rules.messageGrant;
}

/** The access_token and expires_in of a token answer (both platforms use these names), if present. */
export function accessToken(body: unknown): { token: string; expiresInSeconds: number } | undefined {
  const token = field(body, "access_token");
  const expiresIn = Number(field(body, "expires_in"));
  return typeof token === "string" && token !== "" && expiresIn >= 0 ? { token, expiresInSeconds: expiresIn } : undefined;
}

/** A field of a JSON answer, if the answer is an object. */
export function field(body: unknown, name: string): unknown {
  return body && typeof body === "object" ? (body as Record<string, unknown>)[name] : undefined;
}
