import { exports } from "cloudflare:workers";
import type { Fields } from "../src/protocol/codec";
import { queryString, sealPush, type SealOptions } from "../src/protocol/seal";
import { testApps, type TestAppName } from "./fixtures/apps";

let counter = 0;
/** A fresh openid and MsgId for every test, so tests never share a conversation. */
export function uniqueId(prefix = "u"): string {
  counter += 1;
  return `${prefix}${Date.now().toString(36)}${counter}${Math.random().toString(36).slice(2, 8)}`;
}

export function uniqueMsgId(): string {
  return (BigInt(Date.now()) * 1_000_000n + BigInt(Math.floor(Math.random() * 1_000_000))).toString();
}

export function textPush(overrides: Fields = {}): Fields {
  return {
    ToUserName: "gh_10f6c3c3ac5a",
    FromUserName: uniqueId("o"),
    CreateTime: Math.floor(Date.now() / 1000),
    MsgType: "text",
    Content: "你好",
    MsgId: uniqueMsgId(),
    ...overrides,
  };
}

type PushOptions = Partial<Omit<SealOptions, "token">> & { app: TestAppName; method?: string };

/** Sends a push to the Worker exactly as the app's platform would. */
export function sendPush(fields: Fields, options: PushOptions): Promise<Response> {
  const app = testApps[options.app] as { token: string; encodingAesKey?: string; appId?: string };
  const sealed = sealPush(fields, {
    token: app.token,
    encodingAesKey: app.encodingAesKey,
    trailingId: app.appId,
    mode: "plaintext",
    format: "xml",
    ...options,
  });
  return postRaw(`/push/${options.app}${queryString(sealed.query)}`, sealed.body, sealed.contentType);
}

export function postRaw(path: string, body: BodyInit | null, contentType = "text/xml", method = "POST"): Promise<Response> {
  return exports.default.fetch(new Request(`https://kefu.test${path}`, { method, body, headers: { "content-type": contentType } }));
}
