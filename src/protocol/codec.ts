import { XMLParser, XMLValidator } from "fast-xml-parser";
import { KefuError } from "./errors.ts";

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
  appId?: string;
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

const xml = new XMLParser({
  ignoreAttributes: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  parseTagValue: false, // MsgId must stay an exact string; numbers are converted where known
  trimValues: false, // message content keeps its spaces
  processEntities: true, // only the five XML entities: DOCTYPE is rejected before parsing
  htmlEntities: false,
});

function parseXml(text: string): Fields {
  // Never expand user-declared entities (billion laughs, XXE): such bodies are not platform pushes.
  // A user may well *write* "<!DOCTYPE html>", so CDATA content does not count.
  if (/<!DOCTYPE|<!ENTITY/i.test(text.replace(/<!\[CDATA\[[\s\S]*?\]\]>/g, ""))) {
    throw new KefuError("xml_doctype", "XML with a DOCTYPE or ENTITY declaration is refused");
  }
  const valid = XMLValidator.validate(text);
  if (valid !== true) {
    throw new KefuError("bad_xml", `body is not well-formed XML: ${valid.err.msg} (line ${valid.err.line})`);
  }
  let doc: Fields;
  try {
    doc = xml.parse(text) as Fields;
  } catch (error) {
    // Well-formed but refused by the parser: reserved tag names (__proto__), nesting too deep.
    throw new KefuError("bad_xml", `XML push cannot be read: ${(error as Error).message}`);
  }
  const roots = Object.keys(doc).filter((k) => k !== "#text");
  const root = roots.length === 1 ? doc[roots[0]!] : undefined;
  if (!root || typeof root !== "object" || Array.isArray(root)) {
    throw new KefuError("bad_xml", "XML push must have one root element with child elements");
  }
  const fields: Fields = {};
  for (const [key, value] of Object.entries(root)) {
    if (key !== "#text") fields[key] = value; // whitespace between elements
  }
  return fields;
}

type Reviver = (this: unknown, key: string, value: unknown, context?: { source?: string }) => unknown;

/** Integers beyond 2^53 (MsgId) keep their exact decimal text instead of being rounded. */
const exactIntegers: Reviver = (_key, value, context) =>
  typeof value === "number" && !Number.isSafeInteger(value) && context?.source && /^-?\d+$/.test(context.source)
    ? context.source
    : value;

function parseJson(text: string): Fields {
  let value: unknown;
  try {
    value = JSON.parse(text, exactIntegers as Parameters<typeof JSON.parse>[1]);
  } catch (error) {
    throw new KefuError("bad_json", `body is not valid JSON: ${(error as Error).message}`);
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
  if (!type) throw new KefuError("missing_field", "push has no MsgType");
  if (!Number.isFinite(createTime) || createTime <= 0) {
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
  if (msgId) message.msgId = msgId;
  for (const [wire, name] of Object.entries(FIELDS)) {
    const value = stringField(fields, wire);
    if (value !== undefined) message[name] = value;
  }
  return message;
}

/**
 * The key retries share: MsgId where the message has one, else sender + time (+ event), as both
 * platforms document for events.
 */
export function dedupeKey(message: Pick<Message, "msgId" | "openid" | "createTime" | "event" | "type">): string {
  return message.msgId
    ? `msg:${message.msgId}`
    : `evt:${message.openid}:${message.createTime}:${message.event ?? message.type}`;
}
