import { aesKey, decrypt } from "./cipher.ts";
import { parseBody, stringField, type BodyFormat, type Fields } from "./codec.ts";
import { KefuError } from "./errors.ts";
import { verifySignature } from "./signature.ts";
import { scanXml } from "./xml.ts";

/**
 * Opening a push: the URL handshake, the signature checks and the encrypted envelope
 * (docs/protocol.md §2–§4). Pure functions of the request's parts, the app's secrets and the
 * clock; no bindings, no I/O.
 */

/**
 * The largest genuine push is a long text in compatible mode, which carries it twice: as plaintext
 * and inside `Encrypt` (base64, 4/3 larger). We allow for 8,192 three-byte characters — more than
 * either platform's chat box takes — plus the other fields, and half as much again on top.
 */
const LONGEST_TEXT_BYTES = 8192 * 3;
const OTHER_FIELDS_BYTES = 1024;
export const PUSH_BODY_LIMIT = Math.ceil(1.5 * (LONGEST_TEXT_BYTES + OTHER_FIELDS_BYTES) * (1 + 4 / 3));

export type Params = Record<string, string | undefined>;

export type SecurityMode = "plaintext" | "compatible" | "safe";

export interface PushSecrets {
  token: string;
  /** The mode the app is configured for; compatible and safe need the key. */
  mode: SecurityMode;
  encodingAesKey?: string;
  /** When set, a decrypted push must carry exactly this trailing id (WeChat: the appid). */
  requiredTrailingId?: string;
}

/** When the request is being judged, and how far a signed timestamp may be from it. */
export interface Clock {
  /** Unix seconds. */
  now: number;
  toleranceSeconds: number;
}

export interface OpenedPush {
  /** The mode the push arrived in (compatible: plaintext fields beside `Encrypt`). */
  mode: SecurityMode;
  format: BodyFormat;
  fields: Fields;
  /** The id after an encrypted message (diagnostics; checked only where the platform defines it). */
  trailingId?: string;
}

/** The handshake's answer: the echo, verbatim, when the signature is right and fresh. */
export function answerHandshake(params: Params, token: string, clock: Clock): string {
  const echo = params.echostr ?? params.echoStr ?? "";
  if (!verifySignature(params.signature, token, params.timestamp ?? "", params.nonce ?? "")) {
    throw new KefuError("bad_signature", "handshake signature does not match sha1(sort(token, timestamp, nonce))");
  }
  requireFresh(params.timestamp, clock);
  return echo;
}

/**
 * Verifies and, where the app's mode asks for it, decrypts a push body into its fields.
 * Plaintext: the query signature is checked before the body is read. Compatible and safe: the
 * envelope is found by a bounded scan, `msg_signature` is checked over `Encrypt`, and only the
 * decrypted content counts — never a plaintext copy beside it.
 */
export function openPush(query: Params, body: string, secrets: PushSecrets, clock: Clock): OpenedPush {
  return secrets.mode === "plaintext" ? openPlaintext(query, body, secrets, clock) : openEncrypted(query, body, secrets, clock);
}

function openPlaintext(query: Params, body: string, secrets: PushSecrets, clock: Clock): OpenedPush {
  if (query.signature === undefined) {
    // A cheap look, no parsing: an encrypted push here means the console is not in plaintext mode.
    if (body.includes("Encrypt")) throw plaintextExpected();
    throw unsigned();
  }
  if (!verifySignature(query.signature, secrets.token, query.timestamp ?? "", query.nonce ?? "")) {
    throw new KefuError("bad_signature", "signature does not match sha1(sort(token, timestamp, nonce)) (this app is in plaintext mode)");
  }
  requireFresh(query.timestamp, clock);
  const { format, fields } = parseBody(body);
  if (fields.Encrypt === undefined) return { mode: "plaintext", format, fields };
  if (!hasPlaintextCopy(fields)) throw plaintextExpected();
  // The console is in compatible mode: without a key, the plaintext copy is all there is to read.
  const { Encrypt: _encrypted, ...plain } = fields;
  return { mode: "compatible", format, fields: plain };
}

function openEncrypted(query: Params, body: string, secrets: PushSecrets, clock: Clock): OpenedPush {
  const querySigned = query.msg_signature !== undefined || query.signature !== undefined;
  let envelope: Map<string, string>;
  try {
    envelope = readEnvelope(body);
  } catch (error) {
    if (!querySigned) throw unsigned(); // no signature at all: say that before any body error
    throw error;
  }
  // Baidu's third-party envelope carries the signature inputs in the body; WeChat's in the query.
  const msgSignature = envelope.get("MsgSignature") ?? query.msg_signature;
  if (!querySigned && msgSignature === undefined) throw unsigned();
  const encrypted = envelope.get("Encrypt");
  if (encrypted === undefined) {
    throw new KefuError(
      "wrong_mode",
      `this push is not encrypted but the app is configured for ${secrets.mode} mode: every push must carry a signed Encrypt (is the console in plaintext mode?)`,
    );
  }
  if (encrypted === "") throw new KefuError("bad_envelope", "Encrypt must be a non-empty string");
  const timestamp = envelope.get("TimeStamp") ?? query.timestamp;
  const nonce = envelope.get("Nonce") ?? query.nonce ?? "";
  if (!verifySignature(msgSignature, secrets.token, timestamp ?? "", nonce, encrypted)) {
    throw new KefuError("bad_signature", "msg_signature does not match sha1(sort(token, timestamp, nonce, Encrypt))");
  }
  requireFresh(timestamp, clock);
  const { message, trailingId } = decrypt(encrypted, aesKey(secrets.encodingAesKey ?? ""));
  if (secrets.requiredTrailingId !== undefined && trailingId !== secrets.requiredTrailingId) {
    throw new KefuError("wrong_trailing_id", "decrypted push belongs to another appid (trailing id mismatch)");
  }
  let inner: ReturnType<typeof parseBody>;
  try {
    inner = parseBody(message);
  } catch (error) {
    if (error instanceof KefuError)
      throw new KefuError(error.code === "xml_doctype" ? "xml_doctype" : "bad_envelope", `decrypted Encrypt is not a push: ${error.message}`);
    throw error;
  }
  const copy = [...envelope.keys()].some((name) => name === "MsgType" || name === "FromUserName");
  return { mode: copy ? "compatible" : "safe", format: inner.format, fields: inner.fields, trailingId };
}

/**
 * The envelope's top-level text fields, found with work bounded by the body's size: XML by one
 * linear scan (no entity expanded), JSON by `JSON.parse`. Nothing else of the body is read yet.
 */
function readEnvelope(body: string): Map<string, string> {
  const text = body.replace(/^\uFEFF/, "").trimStart();
  if (text.startsWith("<")) return scanXml(text);
  const { fields } = parseBody(text);
  const envelope = new Map<string, string>();
  for (const name of Object.keys(fields)) {
    const value = stringField(fields, name);
    if (value !== undefined) envelope.set(name, value);
  }
  if (fields.Encrypt !== undefined && typeof fields.Encrypt !== "string") {
    throw new KefuError("bad_envelope", "Encrypt must be a non-empty string");
  }
  return envelope;
}

function hasPlaintextCopy(fields: Fields): boolean {
  return "MsgType" in fields || "FromUserName" in fields;
}

function plaintextExpected(): KefuError {
  return new KefuError(
    "wrong_mode",
    "this push is encrypted (safe mode) but the app is configured for plaintext mode: set the app's mode and encodingAesKey as in the console",
  );
}

function unsigned(): KefuError {
  return new KefuError("bad_signature", "push carries no signature (none in the query, no MsgSignature in the body)");
}

/** A signature proves who sent it, the timestamp when: outside the tolerance it is a replay. */
function requireFresh(timestamp: string | undefined, { now, toleranceSeconds }: Clock): void {
  if (timestamp === undefined || !/^\d{1,12}$/.test(timestamp)) {
    throw new KefuError("bad_signature", "the signed timestamp is missing or not unix seconds");
  }
  const skew = Math.round(now - Number(timestamp));
  if (Math.abs(skew) > toleranceSeconds) {
    throw new KefuError(
      "expired_signature",
      `the signature is valid but its timestamp is ${Math.abs(skew)} s ${skew > 0 ? "old" : "in the future"}, beyond the ${toleranceSeconds} s tolerance: a replay, or this server's clock is off`,
    );
  }
}
