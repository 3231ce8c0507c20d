import { z } from "@hono/zod-openapi";
import type { Reply, ReplyRequest } from "../protocol/reply.ts";
import { baidu } from "../platforms/baidu.ts";
import type { PlatformRules } from "../platforms/platform.ts";
import { wechat } from "../platforms/wechat.ts";
import { KefuError } from "../protocol/errors.ts";
import type { Message } from "../protocol/codec.ts";
import "../zod.ts";

/**
 * The shapes of the REST API and of the webhook payload. Routes validate with them, handlers are
 * typed by them, GET /openapi.json is generated from them, and the webhook payload is typed by them.
 * Answers are strict (no field the document does not name), bodies in are not (unknown fields are
 * ignored, as before).
 */

const text = (max = 4096) => z.string().regex(/\S/, "must be a non-empty string").max(max);
const httpUrl = z
  .string()
  .max(2048)
  .refine((s) => URL.canParse(s) && /^https?:$/.test(new URL(s).protocol), "must be an http(s) URL")
  .openapi({ format: "uri" });
const timestamp = z.string().openapi({ format: "date-time" });

export const Quota = z
  .strictObject({
    remaining: z.number().int().openapi({ description: "Replies the platform will still take in this window" }),
    windowExpiresAt: timestamp.nullable().openapi({ description: "When the window closes; null when closed" }),
  })
  .openapi("Quota");

/** `{"error":{"code","message",…}}` with the codes one answer can carry. */
export function errorSchema<const C extends readonly [string, ...string[]]>(codes: C) {
  return z.strictObject({
    error: z.strictObject({
      code: z.enum(codes),
      message: z.string().openapi({ description: "What was wrong, in words for a person" }),
      field: z.string().optional().openapi({ description: "invalid_body: the path of the first wrong field" }),
      quota: Quota.optional().openapi({ description: "409: the conversation's current quota" }),
    }),
  });
}

// ---- replies ----------------------------------------------------------------------------------

const replyTypesOf = (rules: PlatformRules) =>
  Object.entries(rules.api.replyTypes)
    .map(([type, fields]) => `${type} (${fields.join(", ")})`)
    .join(", ");

const replyCommon = {
  openid: text(128).openapi({ description: "The user to reply to (the message's openid)" }),
  userType: z
    .union([z.literal(1), z.literal(2)], { error: "must be 1 (guest) or 2 (Baidu account)" })
    .optional()
    .openapi({ description: "Baidu user_type: 1 guest, 2 Baidu account (default: the app's userType)" }),
};

export const ReplyBody = z
  .discriminatedUnion(
    "type",
    [
      z.object({ ...replyCommon, type: z.literal("text"), content: text() }),
      z.object({
        ...replyCommon,
        type: z.literal("image"),
        picUrl: httpUrl.optional().openapi({ description: "Baidu: the image's URL" }),
        mediaId: text(256).optional().openapi({ description: "WeChat: the media_id of an uploaded image" }),
      }),
      z.object({
        ...replyCommon,
        type: z.literal("link"),
        link: z.object({ title: text(), description: text(), url: httpUrl, thumbUrl: httpUrl }),
      }),
      z.object({
        ...replyCommon,
        type: z.literal("miniprogrampage"),
        miniprogrampage: z.object({ title: text(), pagePath: text(), thumbMediaId: text(256) }),
      }),
    ],
    {
      // The only union failure of a discriminated union: no variant has this `type`.
      error: (issue) => (issue.code === "invalid_union" ? "must be one of text, image, link, miniprogrampage" : undefined),
    },
  )
  .openapi("ReplyBody", {
    description: `A reply. Which types and fields each platform takes — Baidu: ${replyTypesOf(baidu)}; WeChat: ${replyTypesOf(wechat)}. Another type or a missing field of the app's platform is 400 invalid_body.`,
  });

export type ReplyBody = z.infer<typeof ReplyBody>;

const invalid = (field: string, why: string) => new KefuError("invalid_body", `${field}: ${why}`, { field });

/**
 * The reply as the app's platform takes it, by the platform's data (`replyTypes`): the type must be
 * listed, and each listed field given — at the top (text, image) or inside the type's object.
 */
export function platformReply(body: ReplyBody, rules: PlatformRules): { openid: string; request: ReplyRequest } {
  const { openid, userType, ...reply } = body;
  const fields = rules.api.replyTypes[reply.type];
  if (!fields) throw invalid("type", `must be one of ${Object.keys(rules.api.replyTypes).join(", ")} on ${rules.name}`);
  const nested = (reply as Record<string, unknown>)[reply.type] as Record<string, unknown> | undefined;
  const holder = nested ?? (reply as Record<string, unknown>);
  for (const field of fields) {
    if (holder[field] === undefined) throw invalid(nested ? `${reply.type}.${field}` : field, `is required for ${reply.type} on ${rules.name}`);
  }
  // Top-level fields the platform does not take (an image's other id) are not kept.
  const kept = (nested ? reply : Object.fromEntries([["type", reply.type], ...fields.map((f) => [f, holder[f]])])) as Reply;
  return { openid, request: { reply: kept, ...(userType !== undefined && { userType }) } };
}

export const IdempotencyHeaders = z.object({
  "idempotency-key": z
    .string()
    .min(1, "must be 1-255 characters")
    .max(255, "must be 1-255 characters")
    .optional()
    .openapi({ description: "A retried POST with the same key returns the first answer instead of sending twice" }),
});

export const Accepted = z.strictObject({ id: z.string(), status: z.literal("queued"), quota: Quota }).openapi("Accepted");

const ReplyError = z.strictObject({
  code: z.string().openapi({ description: "quota_exhausted, window_closed, platform_rejected, retries_exhausted, …" }),
  platformCode: z.number().int().optional().openapi({ description: "The platform's errno / errcode / error_code" }),
  message: z.string(),
});

const replyStateFields = {
  id: z.string(),
  status: z.enum(["queued", "sending", "sent", "failed"]),
  attempts: z.number().int(),
  createdAt: timestamp,
  updatedAt: timestamp,
  error: ReplyError.optional(),
};

export const ReplyState = z.strictObject(replyStateFields).openapi("ReplyState");

/** What was sent, as the API took it. */
const SentReply = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("text"), content: z.string() }),
  z.strictObject({ type: z.literal("image"), picUrl: z.string().optional(), mediaId: z.string().optional() }),
  z.strictObject({ type: z.literal("link"), link: z.strictObject({ title: z.string(), description: z.string(), url: z.string(), thumbUrl: z.string() }) }),
  z.strictObject({
    type: z.literal("miniprogrampage"),
    miniprogrampage: z.strictObject({ title: z.string(), pagePath: z.string(), thumbMediaId: z.string() }),
  }),
]);

// ---- messages, as pushed, kept and forwarded ------------------------------------------------

/** A decoded push's field values: text, numbers, or nested values as parsed. */
const rawValue = z.union([
  z.string(),
  z.number(),
  z.boolean(),
  z.null(),
  z.custom<object>((v) => typeof v === "object" && v !== null).openapi({ type: ["object", "array"], description: "a nested value, as parsed" }),
]);

const optionalText = z.string().optional();

export const MessageSchema = z
  .strictObject({
    platform: z.enum(["baidu", "wechat"]),
    app: z.string().openapi({ description: "The app's name in KEFU_APPS" }),
    openid: z.string().openapi({ description: "FromUserName: the user's openid" }),
    to: z.string().openapi({ description: "ToUserName: Baidu appId, WeChat gh_ original id" }),
    createTime: z.number().int().openapi({ description: "Unix seconds, as the platform stamped it" }),
    type: z.string().openapi({ description: "MsgType verbatim: text, image, miniprogrampage, event, or any other the platform sends" }),
    msgId: z.string().regex(/^\d+$/).optional().openapi({ description: "MsgId as an exact decimal string (a 64-bit integer)" }),
    event: optionalText,
    content: optionalText.openapi({ description: "text" }),
    picUrl: optionalText.openapi({ description: "image" }),
    mediaId: optionalText.openapi({ description: "image (WeChat)" }),
    title: optionalText.openapi({ description: "miniprogrampage" }),
    appId: optionalText.openapi({ description: "miniprogrampage; third-party platform mode: the mini program's appId" }),
    tp: optionalText.openapi({ description: "Third-party platform mode: the platform's name in KEFU_THIRD_PARTY (app is <tp>.<appId>)" }),
    pagePath: optionalText.openapi({ description: "miniprogrampage" }),
    thumbUrl: optionalText.openapi({ description: "miniprogrampage" }),
    thumbMediaId: optionalText.openapi({ description: "miniprogrampage" }),
    sessionFrom: optionalText.openapi({ description: "event" }),
    raw: z.record(z.string(), rawValue).openapi({ description: "Every field of the decoded push, as received" }),
  })
  .openapi("Message", { description: "The one message shape: every push becomes this" });

// The schema and the Message the code builds are one shape: each is assignable to the other.
true satisfies Message extends z.infer<typeof MessageSchema> ? (z.infer<typeof MessageSchema> extends Message ? true : false) : false;

/** What the webhook receives for each accepted message (the body of the signed POST). */
export const MessageReceivedSchema = z
  .strictObject({
    type: z.literal("message.received"),
    timestamp: timestamp.openapi({ description: "When this delivery was made" }),
    seq: z
      .number()
      .int()
      .optional()
      .openapi({ description: "The message's number in its conversation, increasing in the order received: a gap is a forward still owed or failed" }),
    data: MessageSchema,
  })
  .openapi("MessageReceived");

/** A reply's final state, pushed to the webhook so the business need not poll GET …/messages/:id. */
const replyEventData = {
  id: z.string().openapi({ description: "The reply id (the `id` of the 202 answer)" }),
  app: z.string(),
  openid: z.string(),
  attempts: z.number().int().openapi({ description: "Send attempts made" }),
};

export const MessageSentSchema = z
  .strictObject({
    type: z.literal("message.sent"),
    timestamp: timestamp.openapi({ description: "When this delivery was made" }),
    data: z.strictObject(replyEventData),
  })
  .openapi("MessageSent", { description: "A reply the platform accepted" });

export const MessageFailedSchema = z
  .strictObject({
    type: z.literal("message.failed"),
    timestamp: timestamp.openapi({ description: "When this delivery was made" }),
    data: z.strictObject({
      ...replyEventData,
      error: z.strictObject({
        code: z.string().openapi({ description: "Why, in kefu-edge's words: quota_exhausted, window_closed, platform_rejected, retries_exhausted, …" }),
        platformCode: z.number().int().optional().openapi({ description: "The platform's own error code, when it gave one" }),
        message: z.string(),
      }),
    }),
  })
  .openapi("MessageFailed", { description: "A reply that will not be sent, and why" });

/** Every body the webhook receives, told apart by `type`. */
export const WebhookPayloadSchema = z.discriminatedUnion("type", [MessageReceivedSchema, MessageSentSchema, MessageFailedSchema]);

export type WebhookPayload = z.infer<typeof WebhookPayloadSchema>;

const ForwardState = z.strictObject({
  status: z.enum(["pending", "delivered", "failed", "skipped"]).openapi({ description: "skipped: KEFU_WEBHOOK_URL was unset when its turn came" }),
  seq: z.number().int().optional().openapi({ description: "Its number in the conversation's order of forwards" }),
  attempts: z.number().int(),
  error: z.string().optional(),
});

/** A forward that failed at least once, as GET /api/apps/:app/forwards lists it. */
export const TroubledForward = z
  .strictObject({
    openid: z.string(),
    msgId: z.string().optional().openapi({ description: "The message's MsgId (events have none: `key` identifies them)" }),
    key: z.string().openapi({ description: "The message's de-dupe key in its conversation" }),
    status: z.enum(["pending", "failed"]).openapi({ description: "failed: given up on; pending: waiting for a retry after a failed attempt" }),
    attempts: z.number().int(),
    error: z.string().optional().openapi({ description: "The last attempt's error" }),
  })
  .openapi("Forward");

export const ForwardList = z.strictObject({ forwards: z.array(TroubledForward) }).openapi("ForwardList");

export const RedriveBody = z
  .strictObject({
    msgIds: z
      .array(z.string().regex(/^\d+$/, "must be MsgIds as decimal strings"))
      .min(1)
      .max(1000)
      .optional()
      .openapi({ description: "Only these; absent: every failed forward of the app" }),
  })
  .openapi("RedriveRequest");

export const RedriveAnswer = z
  .strictObject({
    redriven: z.number().int().openapi({ description: "How many failed forwards were queued again" }),
    notFound: z.array(z.string()).openapi({ description: "Of `msgIds`, those that are not failed forwards of this app" }),
  })
  .openapi("RedriveAnswer");

const { createdAt: _createdAt, ...outStateFields } = replyStateFields;

export const HistoryEntry = z
  .discriminatedUnion("direction", [
    z.strictObject({
      direction: z.literal("in"),
      at: timestamp.openapi({ description: "When kefu-edge received it" }),
      message: MessageSchema,
      forward: ForwardState.optional().openapi({ description: "Its forward to the webhook (absent when forwarding is off)" }),
    }),
    z.strictObject({
      direction: z.literal("out"),
      at: timestamp.openapi({ description: "When the API accepted it" }),
      ...outStateFields,
      reply: SentReply,
      userType: z.union([z.literal(1), z.literal(2)]).optional(),
    }),
  ])
  .openapi("HistoryEntry", { description: "A message in with its forward, or a reply out with its delivery state" });

export const ConversationSchema = z
  .strictObject({
    app: z.string(),
    openid: z.string(),
    quota: Quota,
    lastActiveAt: timestamp.nullable(),
    history: z.array(HistoryEntry).openapi({ description: "Newest first" }),
    next: z.string().optional().openapi({ description: "Pass as `before` for the next (older) page of history; absent on the last page" }),
  })
  .openapi("Conversation");

export const ConversationPage = z
  .strictObject({
    conversations: z.array(z.strictObject({ openid: z.string(), lastActiveAt: timestamp })),
    next: z.string().optional().openapi({ description: "Pass as `before` for the next page; absent on the last page" }),
  })
  .openapi("ConversationPage");

// ---- third-party platforms ------------------------------------------------------------------------

export const AuthorizationLink = z
  .strictObject({ url: z.string().openapi({ format: "uri", description: "Baidu's authorization page, for the merchant to open" }) })
  .openapi("AuthorizationLink");

export const Authorizer = z
  .strictObject({
    app: z.string().openapi({ description: "The app name: <tp>.<appId>" }),
    appId: z.string(),
    state: z.enum(["authorized", "needs_recovery", "unauthorized"]).openapi({
      description: "needs_recovery: a refresh token was lost or refused; kefu-edge recovers it through retrieve/authorizationcode at the next send",
    }),
    kefuGranted: z.boolean().nullable().openapi({ description: "app/info lists the 客服 permission; null: not known yet" }),
    accessTokenExpiresAt: timestamp.nullable(),
    refreshGeneration: z.number().int().openapi({ description: "How many token pairs were committed (authorizations, refreshes, recoveries)" }),
    lastRefreshError: z.strictObject({ message: z.string(), at: timestamp }).nullable(),
    authorizedAt: timestamp.nullable(),
  })
  .openapi("Authorizer");

export const AuthorizerList = z
  .strictObject({
    platform: z.strictObject({
      name: z.string(),
      ticketReceivedAt: timestamp.nullable().openapi({ description: "The latest ticket (Baidu pushes one every 10 minutes)" }),
      tokenExpiresAt: timestamp.nullable().openapi({ description: "The platform token's expiry" }),
      tokenFetches: z.number().int().openapi({ description: "Platform tokens fetched so far (tp/token is call-limited)" }),
    }),
    authorizers: z.array(Authorizer),
  })
  .openapi("AuthorizerList");
