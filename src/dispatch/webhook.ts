import { Buffer } from "node:buffer";
import { createHmac } from "node:crypto";
import type { WebhookPayload } from "../api/schemas.ts";

/**
 * Deliveries to the business, signed the Standard Webhooks way (standardwebhooks.com):
 * webhook-signature = "v1," + base64(HMAC-SHA256(key, `${id}.${timestamp}.${body}`)), where the key
 * is the base64 after "whsec_" (the configuration accepts no other form of secret).
 */

export function webhookSignature(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.slice("whsec_".length), "base64");
  return `v1,${createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64")}`;
}

/** The POST of one delivery; `id` is stable across its attempts, so the business can de-duplicate. */
export function webhookRequest(url: string, secret: string | undefined, id: string, payload: WebhookPayload, now = Date.now()): Request {
  const timestamp = Math.floor(now / 1000);
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

/** Calls the webhook once: "ok", or why not (an HTTP status or that it was unreachable). */
export async function callWebhook(request: Request, timeoutMs: number): Promise<{ ok: true; status: number } | { ok: false; reason: string }> {
  try {
    const response = await fetch(request, { signal: AbortSignal.timeout(timeoutMs) });
    await response.body?.cancel();
    if (response.status >= 200 && response.status < 300) return { ok: true, status: response.status };
    return { ok: false, reason: `webhook answered HTTP ${response.status}` };
  } catch (error) {
    return { ok: false, reason: `webhook unreachable: ${String(error)}` };
  }
}
