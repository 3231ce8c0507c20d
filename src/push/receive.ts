import type { AppConfig } from "../config.ts";
import { toMessage, type Message } from "../protocol/codec.ts";
import { KefuError } from "../protocol/errors.ts";
import { answerHandshake, openPush, type Params, type SecurityMode } from "../protocol/push.ts";

export type Received =
  | { kind: "handshake"; echo: string }
  | { kind: "push"; message: Message; mode: SecurityMode };

/**
 * Everything the push URL receives, verified and decoded: the handshake (WeChat's GET, Baidu's
 * POST with its parameters in the query or the body) or a push turned into the one message shape.
 */
export function receive(app: AppConfig, method: string, query: Params, body: string): Received {
  const handshake = handshakeParams(query, body);
  if (handshake) return { kind: "handshake", echo: answerHandshake(handshake, app.token) };
  if (method === "GET") {
    throw new KefuError("bad_envelope", "GET is only the URL handshake, and echostr is missing");
  }
  const opened = openPush(query, body, {
    token: app.token,
    encodingAesKey: app.encodingAesKey,
    requiredTrailingId: app.rules.trailingIdIsAppId ? app.appId : undefined,
  });
  return { kind: "push", message: toMessage(opened.fields, app.platform, app.name), mode: opened.mode };
}

/**
 * The handshake's parameters, if this request is one. Where Baidu puts them is not documented:
 * the query first, then a JSON or form body; `echoStr` and `echostr` both count.
 */
function handshakeParams(query: Params, body: string): Params | undefined {
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
