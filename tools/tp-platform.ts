// Baidu's side of a third-party platform, for `npm start` and `npm run simulate`: the events it
// pushes (ticket, AUTHORIZED, UNAUTHORIZED, others), sealed in its JSON envelope, and the stand-in
// calls that make Baidu's API agree with them (tools/stand-in-tp.ts).

import type { Fields } from "../src/protocol/codec.ts";
import { sealPush } from "../src/protocol/seal.ts";
import type { PushPlatform } from "./demo-apps.ts";

/** Baidu appends a platform id to the encrypted message (docs/protocol.md §4). */
const TRAILING_ID = "20073496";

/** A push in the TP envelope: JSON `{Nonce, TimeStamp, Encrypt, MsgSignature}`, safe mode, signed now. */
export function sealTp(fields: Fields, token: string, encodingAesKey: string): string {
  return sealPush(fields, { token, encodingAesKey, mode: "safe", format: "json", envelope: "body", trailingId: TRAILING_ID }).body;
}

/** Beijing time as Baidu writes eventTime. */
export function beijingTime(ms = Date.now()): string {
  return new Date(ms + 8 * 3_600_000).toISOString().slice(0, 19).replace("T", " ");
}

async function standInCall<T>(standInUrl: string, path: string, body: unknown): Promise<T> {
  const response = await fetch(`${standInUrl}/__standin/tp/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`stand-in tp/${path}: HTTP ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

/**
 * The decrypted event Baidu would push to the 授权事件接收URL. The stand-in issues the ticket and
 * the authorization code first, so that Baidu's API (tp/token, the code exchange) accepts them.
 */
export async function platformEvent(standInUrl: string, platform: PushPlatform, event: string, appId: string): Promise<Fields> {
  const now = Date.now();
  switch (event) {
    case "ticket": {
      const { ticket } = await standInCall<{ ticket: string }>(standInUrl, "ticket", { clientId: platform.clientId });
      return { Ticket: ticket, FromUserName: "SmartAPP", CreateTime: Math.floor(now / 1000), MsgType: "ticket", Event: "push" };
    }
    case "AUTHORIZED":
    case "UPDATE_AUTHORIZED": {
      const { authorizationCode, expiresIn } = await standInCall<{ authorizationCode: string; expiresIn: number }>(standInUrl, "authorize", {
        clientId: platform.clientId,
        appId,
      });
      return {
        appId: Number(appId),
        tpAppId: Number(TRAILING_ID),
        eventTime: beijingTime(now),
        event,
        authorizationCode,
        authorizationCodeExpiresIn: expiresIn,
      };
    }
    case "UNAUTHORIZED":
      await standInCall(standInUrl, "unauthorize", { clientId: platform.clientId, appId }).catch(() => undefined); // Baidu may not know it either
      return { appId: Number(appId), tpAppId: Number(TRAILING_ID), eventTime: beijingTime(now), event };
    default:
      return { appId: Number(appId), tpAppId: Number(TRAILING_ID), eventTime: beijingTime(now), event };
  }
}

/** Pushes the event to kefu-edge's 授权事件接收URL; resolves to the answer's status and body. */
export async function pushPlatformEvent(workerUrl: string, platform: PushPlatform, fields: Fields): Promise<{ status: number; body: string }> {
  const response = await fetch(`${workerUrl}/tp/${platform.name}/events`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: sealTp(fields, platform.token, platform.encodingAesKey),
  });
  return { status: response.status, body: await response.text() };
}
