import { aesKey, encrypt } from "./cipher.ts";
import type { BodyFormat, Fields } from "./codec.ts";
import type { SecurityMode } from "./push.ts";
import { sha1Signature } from "./signature.ts";

/**
 * The platform's side of a push: builds signed, optionally encrypted pushes exactly as Baidu and
 * WeChat send them. Used by the tests, the simulator and the benchmark; never by the Worker.
 */

export interface SealOptions {
  token: string;
  mode: SecurityMode;
  format: BodyFormat;
  encodingAesKey?: string;
  /** Appended after the encrypted message: WeChat's appid, Baidu's platform id. */
  trailingId?: string;
  /** Where msg_signature and its inputs travel: WeChat's query, or Baidu's third-party body envelope. */
  envelope?: "query" | "body";
  timestamp?: string;
  nonce?: string;
}

export interface SealedPush {
  query: Record<string, string>;
  body: string;
  contentType: string;
}

export function sealPush(fields: Fields, options: SealOptions): SealedPush {
  const timestamp = options.timestamp ?? String(Math.floor(Date.now() / 1000));
  const nonce = options.nonce ?? String(Math.floor(Math.random() * 1e10));
  const query: Record<string, string> = {
    signature: sha1Signature(options.token, timestamp, nonce),
    timestamp,
    nonce,
  };
  const contentType = options.format === "xml" ? "text/xml" : "application/json";
  const plain = encode(fields, options.format);
  if (options.mode === "plaintext") return { query, body: plain, contentType };

  if (!options.encodingAesKey) throw new Error("an encrypted push needs encodingAesKey");
  const encrypted = encrypt(plain, options.trailingId ?? "", aesKey(options.encodingAesKey));
  const msgSignature = sha1Signature(options.token, timestamp, nonce, encrypted);
  const outer: Fields = options.mode === "compatible" ? { ...fields } : {};
  if (options.mode === "safe" && fields.ToUserName !== undefined) outer.ToUserName = fields.ToUserName;
  outer.Encrypt = encrypted;
  if (options.envelope === "body") {
    Object.assign(outer, { Nonce: nonce, TimeStamp: timestamp, MsgSignature: msgSignature });
    return { query: {}, body: encode(outer, options.format), contentType };
  }
  Object.assign(query, { encrypt_type: "aes", msg_signature: msgSignature });
  return { query, body: encode(outer, options.format), contentType };
}

/** A push body as the platform writes it; MsgId goes out as a bare (64-bit) JSON number. */
export function encode(fields: Fields, format: BodyFormat): string {
  if (format === "json") {
    return JSON.stringify(fields).replace(/"(MsgId|CreateTime)":"(\d+)"/g, '"$1":$2');
  }
  const elements = Object.entries(fields).map(([name, value]) =>
    typeof value === "number" || (typeof value === "string" && /^(MsgId|CreateTime)$/.test(name))
      ? `<${name}>${value}</${name}>`
      : `<${name}><![CDATA[${String(value).replaceAll("]]>", "]]]]><![CDATA[>")}]]></${name}>`,
  );
  return `<xml>${elements.join("")}</xml>`;
}

export function queryString(query: Record<string, string>): string {
  const search = new URLSearchParams(query).toString();
  return search ? `?${search}` : "";
}
