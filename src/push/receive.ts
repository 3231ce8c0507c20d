import type { AppConfig } from "../config.ts";
import { toMessage, type Message } from "../protocol/codec.ts";
import { KefuError } from "../protocol/errors.ts";
import { answerHandshake, openPush, type Clock, type Params, type SecurityMode } from "../protocol/push.ts";

export type Received = { kind: "handshake"; echo: string } | { kind: "push"; message: Message; mode: SecurityMode };

export interface PushRequest {
  method: string;
  query: Params;
  body: string;
}

/**
 * Everything the push URL receives, verified and decoded: the handshake (WeChat's GET, Baidu's
 * POST with its parameters in the query or the body) or a push turned into the one message shape.
 * Throws a 4xx KefuError for anything else; never another exception.
 */
export function receive(app: AppConfig, { method, query, body }: PushRequest, clock: Clock): Received {
  const handshake = handshakeParams(query, body);
  if (handshake) return { kind: "handshake", echo: answerHandshake(handshake, app.token, clock) };
  if (method === "GET") {
    throw new KefuError("bad_envelope", "GET is only the URL handshake, and echostr is missing");
  }
  const opened = openPush(
    query,
    body,
    {
      token: app.token,
      mode: app.mode,
      encodingAesKey: app.encodingAesKey,
      requiredTrailingId: app.rules.trailingIdIsAppId ? app.appId : undefined,
    },
    clock,
  );
  const message = toMessage(opened.fields, app.platform, app.name);
  // Two apps may share a Token and key: the addressee says whose push it is, where it is the appId.
  if (app.rules.toUserNameIsAppId && app.appId && !app.rules.systemTypes.includes(message.type) && message.to !== app.appId) {
    throw new KefuError("wrong_app", `push is addressed to ToUserName ${JSON.stringify(message.to.slice(0, 64))}, not to this app's appId`);
  }
  return { kind: "push", message, mode: opened.mode };
}

/**
 * The handshake's parameters, if this request is one. Where Baidu puts them is not documented:
 * the query first, then a JSON or form body; `echoStr` and `echostr` both count.
 */
export function handshakeParams(query: Params, body: string): Params | undefined {
  if (query.echostr !== undefined || query.echoStr !== undefined) return query;
  if (!/echostr/i.test(body)) return undefined; // cheap: pushes never get parsed twice
  const text = body.trim();
  let fields: Record<string, unknown> | undefined;
  if (text.startsWith("{")) {
    try {
      fields = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return undefined; // not a handshake: let the push path report the bad JSON
    }
  } else if (!text.startsWith("<")) {
    fields = Object.fromEntries(new URLSearchParams(text));
  }
  if (!fields || typeof fields !== "object" || !("echoStr" in fields || "echostr" in fields)) return undefined;
  const params: Params = { ...query };
  for (const [key, value] of Object.entries(fields)) {
    if (typeof value === "string" || typeof value === "number") params[key] = String(value);
  }
  return params;
}
