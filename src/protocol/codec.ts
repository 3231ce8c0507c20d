import { createHash } from "node:crypto";
import { KefuError } from "./errors.ts";
import { parseXml } from "./xml.ts";

/**
 * Push bodies in, one message shape out. The format is decided from the body, never from the
 * Content-Type (JSON pushes have arrived labelled text/xml).
 */

export type Platform = "baidu" | "wechat";
/** A decoded push: field name → value as the platform sent it (nested values stay as parsed). */
export type Fields = Record<string, string | number | boolean | null | object>;

/** The one message shape that flows through kefu-edge. */
export interface Message {
  platform: Platform;
  app: string;
  /** FromUserName: the user's openid (for platform events such as Baidu's ticket, the sender's name). */
  openid: string;
  /** ToUserName: the mini program (Baidu: appId; WeChat: the gh_ original id). */
  to: string;
  /** Unix seconds, as the platform stamped it. */
  createTime: number;
  /** MsgType, verbatim; unknown types are kept. */
  type: string;
  /** MsgId as an exact decimal string (it is a 64-bit integer). */
  msgId?: string;
  event?: string;
  content?: string;
  picUrl?: string;
  mediaId?: string;
  title?: string;
  /** miniprogrampage's AppId; in third-party platform mode, the mini program's appId. */
  appId?: string;
  /** Third-party platform mode: the platform's name in KEFU_THIRD_PARTY. */
  tp?: string;
  pagePath?: string;
  thumbUrl?: string;
  thumbMediaId?: string;
  sessionFrom?: string;
  /** Every field of the decoded push, as received. */
  raw: Fields;
}

/** Wire field → message field, for the string fields a push type may carry. */
const FIELDS = {
  Event: "event",
  Content: "content",
  PicUrl: "picUrl",
  MediaId: "mediaId",
  Title: "title",
  AppId: "appId",
  PagePath: "pagePath",
  ThumbUrl: "thumbUrl",
  ThumbMediaId: "thumbMediaId",
  SessionFrom: "sessionFrom",
} as const satisfies Record<string, keyof Message>;

export type BodyFormat = "xml" | "json";

export function parseBody(body: string): { format: BodyFormat; fields: Fields } {
  const text = body.replace(/^\uFEFF/, "").trimStart();
  if (text.startsWith("<")) return { format: "xml", fields: parseXml(text) };
  if (text.startsWith("{")) return { format: "json", fields: parseJson(text) };
  throw new KefuError("unsupported_body", text ? "body is neither XML nor a JSON object" : "body is empty");
}

type Reviver = (this: unknown, key: string, value: unknown, context?: { source?: string }) => unknown;

/**
 * Integers beyond 2^53 keep their exact decimal text instead of being rounded, and MsgId always
 * keeps the text it was sent as, so that `1e30` or `1.5` can be refused rather than read as ids.
 */
const exactIntegers: Reviver = (key, value, context) =>
  typeof value === "number" && context?.source && (key === "MsgId" || key === "MsgID" || (!Number.isSafeInteger(value) && /^-?\d+$/.test(context.source)))
    ? context.source
    : value;

/** Bounds no genuine push comes near (a flat object of a dozen fields), checked before parsing. */
const MAX_JSON_CONTAINERS = 32;
const MAX_JSON_VALUES = 256;

/** One pass over the structure, strings skipped: refuses what would make parsing costly. */
function boundJson(text: string): void {
  let containers = 0;
  let values = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 92 /* \ */) i++;
        else if (d === 34) break;
      }
    } else if (c === 123 /* { */ || c === 91 /* [ */) {
      if (++containers > MAX_JSON_CONTAINERS) throw new KefuError("bad_json", `JSON push has more than ${MAX_JSON_CONTAINERS} objects and arrays`);
    } else if (c === 44 /* , */) {
      if (++values > MAX_JSON_VALUES) throw new KefuError("bad_json", `JSON push has more than ${MAX_JSON_VALUES} values`);
    }
  }
}

function parseJson(text: string): Fields {
  boundJson(text);
  let value: unknown;
  try {
    value = JSON.parse(text, exactIntegers as Parameters<typeof JSON.parse>[1]);
  } catch {
    throw new KefuError("bad_json", "body is not valid JSON"); // the parser's own words may name internals
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    throw new KefuError("bad_json", "JSON push must be an object");
  }
  return value as Fields;
}

/** A field as a string, whether it arrived as XML text, a JSON string or a JSON number. */
export function stringField(fields: Fields, name: string): string | undefined {
  const value = fields[name];
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "bigint") return String(value);
  return undefined;
}

/** Decoded push fields → the normalised message. */
export function toMessage(fields: Fields, platform: Platform, app: string): Message {
  const openid = stringField(fields, "FromUserName");
  const type = stringField(fields, "MsgType");
  const createTime = Number(stringField(fields, "CreateTime"));
  if (!openid) throw new KefuError("missing_field", "push has no FromUserName");
  if (openid.length > MAX_OPENID) throw new KefuError("bad_field", `FromUserName is longer than ${MAX_OPENID} characters: not an openid`);
  if (!type) throw new KefuError("missing_field", "push has no MsgType");
  if (!Number.isSafeInteger(createTime) || createTime <= 0) {
    throw new KefuError("missing_field", "push has no valid CreateTime (unix seconds)");
  }
  const message: Message = {
    platform,
    app,
    openid,
    to: stringField(fields, "ToUserName") ?? "",
    createTime,
    type,
    raw: fields,
  };
  const msgId = stringField(fields, "MsgId") ?? stringField(fields, "MsgID");
  if (msgId) message.msgId = canonicalMsgId(msgId);
  for (const [wire, name] of Object.entries(FIELDS)) {
    const value = stringField(fields, wire);
    if (value !== undefined) message[name] = value;
  }
  return message;
}

const MAX_OPENID = 128;
const MAX_MSG_ID = "18446744073709551615"; // 2^64 - 1

/** A MsgId is a 64-bit decimal integer; it is kept without leading zeros so one id has one spelling. */
function canonicalMsgId(raw: string): string {
  const digits = /^\d+$/.test(raw) ? raw.replace(/^0+(?=\d)/, "") : "";
  // Same length, decimal digits: string order is numeric order.
  if (!digits || digits.length > MAX_MSG_ID.length || (digits.length === MAX_MSG_ID.length && digits > MAX_MSG_ID)) {
    throw new KefuError("bad_field", "MsgId is not a decimal integer within 64 bits");
  }
  return digits;
}

/**
 * The key retries share: MsgId where the message has one. Without it (events), sender + time +
 * type + a hash of every decoded field: a retry is an exact copy, while two different messages
 * sent in the same second stay two.
 */
export function dedupeKey(message: Pick<Message, "msgId" | "openid" | "createTime" | "event" | "type" | "raw">): string {
  if (message.msgId) return `msg:${message.msgId}`;
  const fields = Object.keys(message.raw)
    .sort()
    .map((name) => [name, message.raw[name]]);
  const digest = createHash("sha256").update(JSON.stringify(fields)).digest("base64url").slice(0, 22);
  return `evt:${message.openid}:${message.createTime}:${message.event ?? message.type}:${digest}`;
}

/** KV's key limit is 512 bytes: a longer key is replaced by its hash. */
const KV_KEY_BYTES = 512;

/** The KV key that marks a message as seen, always within KV's limit. */
export function seenKey(app: string, message: Parameters<typeof dedupeKey>[0]): string {
  const key = `${app}/${message.openid}/${dedupeKey(message)}`;
  if (new TextEncoder().encode(key).length <= KV_KEY_BYTES) return key;
  return `${app}/#${createHash("sha256").update(key).digest("base64url")}`;
}
