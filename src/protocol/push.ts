import { aesKey, decrypt } from "./cipher.ts";
import { parseBody, stringField, type BodyFormat, type Fields } from "./codec.ts";
import { KefuError } from "./errors.ts";
import { verifySignature } from "./signature.ts";

/**
 * Opening a push: the URL handshake, the signature checks and the encrypted envelope.
 * Pure functions of the request's parts and the app's secrets; no bindings, no I/O.
 */

export type Params = Record<string, string | undefined>;

export interface PushSecrets {
  token: string;
  encodingAesKey?: string;
  /** When set, a decrypted push must carry exactly this trailing id (WeChat: the appid). */
  requiredTrailingId?: string;
}

export type SecurityMode = "plaintext" | "compatible" | "safe";

export interface OpenedPush {
  mode: SecurityMode;
  format: BodyFormat;
  fields: Fields;
  /** The id after an encrypted message (diagnostics; checked only where the platform defines it). */
  trailingId?: string;
}

/** The handshake's answer: the echo, verbatim, when the signature is right. */
export function answerHandshake(params: Params, token: string): string {
  const echo = params.echostr ?? params.echoStr ?? "";
  if (!verifySignature(params.signature, token, params.timestamp ?? "", params.nonce ?? "")) {
    throw new KefuError("bad_signature", "handshake signature does not match sha1(sort(token, timestamp, nonce))");
  }
  return echo;
}

/** Verifies and, where needed, decrypts a push body into its fields. */
export function openPush(query: Params, body: string, secrets: PushSecrets): OpenedPush {
  const outer = parseBody(body);
  const encrypted = outer.fields.Encrypt;
  if (encrypted === undefined) return openPlaintext(query, outer, secrets);
  // Compatible mode also carries the plaintext fields: an app without a key reads those.
  const compatible = "MsgType" in outer.fields || "FromUserName" in outer.fields;
  if (compatible && !secrets.encodingAesKey) {
    const { Encrypt: _encrypted, ...plainFields } = outer.fields;
    return { ...openPlaintext(query, { format: outer.format, fields: plainFields }, secrets), mode: "compatible" };
  }
  if (typeof encrypted !== "string" || encrypted === "") {
    throw new KefuError("bad_envelope", "Encrypt must be a non-empty string");
  }
  // Baidu's third-party envelope carries the signature inputs in the body; WeChat's in the query.
  const timestamp = stringField(outer.fields, "TimeStamp") ?? query.timestamp ?? "";
  const nonce = stringField(outer.fields, "Nonce") ?? query.nonce ?? "";
  const msgSignature = stringField(outer.fields, "MsgSignature") ?? query.msg_signature;
  if (!verifySignature(msgSignature, secrets.token, timestamp, nonce, encrypted)) {
    throw new KefuError("bad_signature", "msg_signature does not match sha1(sort(token, timestamp, nonce, Encrypt))");
  }
  if (!secrets.encodingAesKey) {
    throw new KefuError("no_aes_key", "push is encrypted but this app has no encodingAesKey configured");
  }
  const { message, trailingId } = decrypt(encrypted, aesKey(secrets.encodingAesKey));
  if (secrets.requiredTrailingId !== undefined && trailingId !== secrets.requiredTrailingId) {
    throw new KefuError("wrong_trailing_id", "decrypted push belongs to another appid (trailing id mismatch)", {
      trailingId,
    });
  }
  let inner;
  try {
    inner = parseBody(message);
  } catch (error) {
    if (error instanceof KefuError) {
      throw new KefuError("bad_envelope", `decrypted Encrypt is not a push: ${error.message}`);
    }
    throw error;
  }
  return { mode: compatible ? "compatible" : "safe", format: inner.format, fields: inner.fields, trailingId };
}

function openPlaintext(query: Params, body: { format: BodyFormat; fields: Fields }, secrets: PushSecrets): OpenedPush {
  if (!verifySignature(query.signature, secrets.token, query.timestamp ?? "", query.nonce ?? "")) {
    throw new KefuError("bad_signature", "signature does not match sha1(sort(token, timestamp, nonce))");
  }
  return { mode: "plaintext", ...body };
}
