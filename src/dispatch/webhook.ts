import { Buffer } from "node:buffer";
import { createHmac } from "node:crypto";
import type { WebhookPayload } from "../api/schemas.ts";
import type { Message } from "../protocol/codec.ts";

/**
 * Forwarding to the business, signed the Standard Webhooks way (standardwebhooks.com):
 * webhook-signature = "v1," + base64(HMAC-SHA256(key, `${id}.${timestamp}.${body}`)), where the key
 * is the base64 after "whsec_" (or the secret's own bytes when it has no such prefix).
 */

export function webhookSignature(secret: string, id: string, timestamp: number, body: string): string {
  const key = secret.startsWith("whsec_") ? Buffer.from(secret.slice(6), "base64") : Buffer.from(secret, "utf8");
  return `v1,${createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64")}`;
}

export function webhookRequest(url: string, secret: string | undefined, id: string, message: Message, now = Date.now()): Request {
  const timestamp = Math.floor(now / 1000);
  // Typed by the schema GET /openapi.json documents under `webhooks`.
  const payload: WebhookPayload = { type: "message.received", timestamp: new Date(now).toISOString(), data: message };
  const body = JSON.stringify(payload);
  const headers = new Headers({
    "content-type": "application/json",
    "user-agent": "kefu-edge",
    "webhook-id": id,
    "webhook-timestamp": String(timestamp),
  });
  if (secret) headers.set("webhook-signature", webhookSignature(secret, id, timestamp, body));
  return new Request(url, { method: "POST", headers, body });
}
