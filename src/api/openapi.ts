/** The REST API, described for humans and tools; served at GET /openapi.json. */

const error = (code: string) => ({
  description: code,
  content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
});

const appParam = { name: "app", in: "path", required: true, schema: { type: "string" }, description: "App name in KEFU_APPS" };

export const openapi = {
  openapi: "3.1.0",
  info: {
    title: "kefu-edge",
    version: "1",
    description:
      "Reply to mini-program users through Baidu's or WeChat's customer-service send API, within the platform's reply window and quota.",
  },
  security: [{ bearer: [] }],
  paths: {
    "/api/apps/{app}/messages": {
      post: {
        summary: "Send a reply: reserves one slot of the user's window and queues the send",
        parameters: [
          appParam,
          { name: "Idempotency-Key", in: "header", schema: { type: "string", maxLength: 255 }, description: "A retried POST with the same key returns the first answer" },
        ],
        requestBody: { required: true, content: { "application/json": { schema: { $ref: "#/components/schemas/ReplyBody" } } } },
        responses: {
          "202": { description: "Queued", content: { "application/json": { schema: { $ref: "#/components/schemas/Accepted" } } } },
          "400": error("invalid_body: the message names the field"),
          "401": error("unauthorized"),
          "404": error("unknown_app"),
          "409": error("window_closed | quota_exhausted (with the current quota)"),
          "422": error("idempotency_conflict: the key was used with another body"),
        },
      },
    },
    "/api/apps/{app}/messages/{id}": {
      get: {
        summary: "A reply's delivery state",
        parameters: [appParam, { name: "id", in: "path", required: true, schema: { type: "string" } }],
        responses: {
          "200": { description: "The reply", content: { "application/json": { schema: { $ref: "#/components/schemas/ReplyState" } } } },
          "404": error("not_found"),
        },
      },
    },
    "/api/apps/{app}/conversations": {
      get: {
        summary: "The most recently active conversations, newest first",
        parameters: [
          appParam,
          { name: "limit", in: "query", schema: { type: "integer", minimum: 1, maximum: 100, default: 20 } },
          { name: "before", in: "query", schema: { type: "string" }, description: "`next` of the previous page" },
        ],
        responses: { "200": { description: "A page: { conversations: [{ openid, lastActiveAt }], next? }" }, "400": error("invalid_body") },
      },
    },
    "/api/apps/{app}/conversations/{openid}": {
      get: {
        summary: "One conversation: quota, window and recent history (in and out), newest first",
        parameters: [
          appParam,
          { name: "openid", in: "path", required: true, schema: { type: "string" } },
          { name: "limit", in: "query", schema: { type: "integer", minimum: 1, maximum: 200, default: 50 } },
        ],
        responses: { "200": { description: "{ app, openid, quota, lastActiveAt, history }" }, "404": error("not_found") },
      },
    },
  },
  components: {
    securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "KEFU_API_KEY" } },
    schemas: {
      Error: {
        type: "object",
        properties: { error: { type: "object", properties: { code: { type: "string" }, message: { type: "string" } } } },
      },
      Quota: {
        type: "object",
        properties: { remaining: { type: "integer" }, windowExpiresAt: { type: ["string", "null"], format: "date-time" } },
      },
      ReplyBody: {
        type: "object",
        required: ["openid", "type"],
        properties: {
          openid: { type: "string" },
          type: { enum: ["text", "image", "link", "miniprogrampage"], description: "Baidu: text, image. WeChat: all four." },
          content: { type: "string", description: "text" },
          picUrl: { type: "string", format: "uri", description: "image on Baidu" },
          mediaId: { type: "string", description: "image on WeChat (upload it first)" },
          link: { type: "object", properties: { title: {}, description: {}, url: {}, thumbUrl: {} } },
          miniprogrampage: { type: "object", properties: { title: {}, pagePath: {}, thumbMediaId: {} } },
          userType: { enum: [1, 2], description: "Baidu user_type: 1 guest, 2 Baidu account (default: the app's userType)" },
        },
      },
      Accepted: {
        type: "object",
        properties: { id: { type: "string" }, status: { const: "queued" }, quota: { $ref: "#/components/schemas/Quota" } },
      },
      ReplyState: {
        type: "object",
        properties: {
          id: { type: "string" },
          status: { enum: ["queued", "sending", "sent", "failed"] },
          attempts: { type: "integer" },
          createdAt: { type: "string", format: "date-time" },
          updatedAt: { type: "string", format: "date-time" },
          error: {
            type: "object",
            properties: { code: { type: "string" }, platformCode: { type: "integer" }, message: { type: "string" } },
          },
        },
      },
    },
  },
} as const;
