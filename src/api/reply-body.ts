import type { AppConfig } from "../config.ts";
import type { Reply, ReplyRequest } from "../conversation/reply.ts";
import { KefuError } from "../protocol/errors.ts";

/** The body of POST /api/apps/:app/messages. */
export interface ReplyBody {
  openid: string;
  request: ReplyRequest;
}

const invalid = (field: string, why: string) => new KefuError("invalid_body", `${field}: ${why}`, { field });

function text(value: unknown, field: string, max = 4096): string {
  if (typeof value !== "string" || value.trim() === "") throw invalid(field, "must be a non-empty string");
  if (value.length > max) throw invalid(field, `must be at most ${max} characters`);
  return value;
}

function object(value: unknown, field: string): Record<string, unknown> {
  if (!value || typeof value !== "object" || Array.isArray(value)) throw invalid(field, "must be an object");
  return value as Record<string, unknown>;
}

/** Validates a reply for the app's platform, naming the first field that is wrong. */
export function parseReplyBody(raw: unknown, app: AppConfig): ReplyBody {
  const body = object(raw, "body");
  const openid = text(body.openid, "openid", 128);
  const type = body.type;
  const supported = app.rules.api.replyTypes;
  if (typeof type !== "string" || !(type in supported)) {
    throw invalid("type", `must be one of ${Object.keys(supported).join(", ")} on ${app.platform}`);
  }
  let reply: Reply;
  switch (type) {
    case "text":
      reply = { type, content: text(body.content, "content") };
      break;
    case "image":
      reply = supported.image?.includes("picUrl") ? { type, picUrl: url(body.picUrl, "picUrl") } : { type, mediaId: text(body.mediaId, "mediaId", 256) };
      break;
    case "link": {
      const link = object(body.link, "link");
      reply = {
        type,
        link: {
          title: text(link.title, "link.title"),
          description: text(link.description, "link.description"),
          url: url(link.url, "link.url"),
          thumbUrl: url(link.thumbUrl, "link.thumbUrl"),
        },
      };
      break;
    }
    default: {
      const page = object(body.miniprogrampage, "miniprogrampage");
      reply = {
        type: "miniprogrampage",
        miniprogrampage: {
          title: text(page.title, "miniprogrampage.title"),
          pagePath: text(page.pagePath, "miniprogrampage.pagePath"),
          thumbMediaId: text(page.thumbMediaId, "miniprogrampage.thumbMediaId", 256),
        },
      };
    }
  }
  const request: ReplyRequest = { reply };
  if (body.userType !== undefined) {
    if (body.userType !== 1 && body.userType !== 2) throw invalid("userType", "must be 1 (guest) or 2 (Baidu account)");
    request.userType = body.userType;
  }
  return { openid, request };
}

function url(value: unknown, field: string): string {
  const s = text(value, field, 2048);
  if (!URL.canParse(s) || !/^https?:$/.test(new URL(s).protocol)) throw invalid(field, "must be an http(s) URL");
  return s;
}
