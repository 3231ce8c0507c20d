import type { PlatformAnswer, PlatformRules, ReplyGrant, SendVerdict } from "./platform.ts";
import { accessToken, field } from "./platform.ts";

/** Entering the session through the 客服 button: the current doc says 2 replies within 1 minute. */
export const defaultSessionGrant: ReplyGrant = { replies: 2, seconds: 60 };

/** errcode of cgi-bin/message/custom/send and the token endpoints. Unlisted codes are final. */
const errcodeVerdicts: Record<number, SendVerdict> = {
  0: "sent",
  [-1]: "retry", // system busy
  40001: "token", // invalid credential / not the latest token
  40014: "token", // invalid access_token
  42001: "token", // access_token expired
  40003: "rejected", // invalid openid
  45015: "window", // reply time limit exceeded
  45047: "quota", // out of response count limit
  45009: "retry", // API daily quota reached: later may work
};

/** Token endpoint errors worth asking again later: busy, call-frequency limits. */
const transientTokenErrors = new Set([-1, 45009, 45011]);

/** WeChat Mini Programs: developers.weixin.qq.com …/customer-message/send.html */
export function wechatRules(sessionGrant: ReplyGrant = defaultSessionGrant): PlatformRules {
  return {
    name: "wechat",
    trailingIdIsAppId: true,
    toUserNameIsAppId: false, // the gh_ original id; the trailing id is checked instead
    systemTypes: [],
    messageGrant: { replies: 5, seconds: 48 * 3600 },
    eventGrants: { user_enter_tempsession: sessionGrant },
    api,
  };
}

const api: PlatformRules["api"] = {
  // The stable token: isolated from other callers' /cgi-bin/token fetches, which would invalidate ours.
  tokenRequest(base, { appKey, appSecret }, forceRefresh) {
    return new Request(`${base}/cgi-bin/stable_token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ grant_type: "client_credential", appid: appKey, secret: appSecret, force_refresh: forceRefresh }),
    });
  },
  readToken(body) {
    const errcode = Number(field(body, "errcode"));
    return (
      accessToken(body) ?? {
        error: `errcode ${field(body, "errcode") ?? "?"}: ${field(body, "errmsg") ?? "no access_token"}`,
        retry: transientTokenErrors.has(errcode),
      }
    );
  },
  sendRequest(base, token, openid, reply) {
    const payload =
      reply.type === "text"
        ? { text: { content: reply.content } }
        : reply.type === "image"
          ? { image: { media_id: reply.mediaId } }
          : reply.type === "link"
            ? { link: { title: reply.link.title, description: reply.link.description, url: reply.link.url, thumb_url: reply.link.thumbUrl } }
            : {
                miniprogrampage: {
                  title: reply.miniprogrampage.title,
                  pagepath: reply.miniprogrampage.pagePath,
                  thumb_media_id: reply.miniprogrampage.thumbMediaId,
                },
              };
    return new Request(`${base}/cgi-bin/message/custom/send?access_token=${encodeURIComponent(token)}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ touser: openid, msgtype: reply.type, ...payload }),
    });
  },
  readSend(body): PlatformAnswer {
    const errcode = Number(field(body, "errcode"));
    if (!Number.isInteger(errcode)) return { verdict: "retry", message: "answer has no errcode" };
    return { verdict: errcodeVerdicts[errcode] ?? "rejected", platformCode: errcode, message: String(field(body, "errmsg") ?? "") };
  },
  replyTypes: {
    text: ["content"],
    image: ["mediaId"],
    link: ["title", "description", "url", "thumbUrl"],
    miniprogrampage: ["title", "pagePath", "thumbMediaId"],
  },
};

export const wechat = wechatRules();
