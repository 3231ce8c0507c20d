import type { Reply } from "../protocol/reply.ts";
import type { PlatformAnswer, PlatformRules, SendVerdict } from "./platform.ts";
import { accessToken, field } from "./platform.ts";

/**
 * errno of custom/send (smartprogram.baidu.com …/custom_message). Codes not listed are final
 * rejections, reported with their code.
 */
const errnoVerdicts: Record<number, SendVerdict> = {
  0: "sent",
  3001: "rejected", // bad parameters
  30022: "rejected", // invalid openid
  90001: "quota", // over the 5 replies of this window
  90002: "rejected", // 客服 not enabled for this mini program
};

/** error_code of Baidu's OpenAPI gateway, answered before the send is looked at. */
const gatewayVerdicts: Record<number, SendVerdict> = {
  2: "retry", // service temporarily unavailable
  18: "retry", // QPS limit reached
  110: "token", // access token invalid
  111: "token", // access token expired
};

/** A custom/send form (or custom/sendbytp, which takes the same one) to `url`. */
export function baiduSendRequest(url: string, token: string, openid: string, reply: Reply, userType: 1 | 2): Request {
  const form = new URLSearchParams({ user_type: String(userType), open_id: openid, msg_type: reply.type });
  if (reply.type === "text") form.set("content", reply.content);
  if (reply.type === "image") form.set("pic_url", reply.picUrl ?? "");
  return new Request(`${url}?access_token=${encodeURIComponent(token)}`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: form.toString(),
  });
}

/** Baidu Smart Mini Programs: https://smartprogram.baidu.com/docs/develop/serverapi/custom_message/ */
export const baidu: PlatformRules = {
  name: "baidu",
  // The trailing id is a platform id (e.g. 20073496), not the appId; Baidu's own sample ignores it.
  trailingIdIsAppId: false,
  // ToUserName is the mini program's appId: a push for another app is refused.
  toUserNameIsAppId: true,
  // Third-party platforms receive a `ticket` every 10 minutes on the same URL.
  systemTypes: ["ticket"],
  // Each user message resets the allowance to 5 replies within 48 h; unused ones do not accumulate.
  messageGrant: { replies: 5, seconds: 48 * 3600 },
  eventGrants: {},
  api: {
    tokenRequest(base, { appKey, appSecret }) {
      const query = new URLSearchParams({
        grant_type: "client_credentials",
        client_id: appKey,
        client_secret: appSecret,
        scope: "smartapp_snsapi_base",
      });
      return new Request(`${base}/oauth/2.0/token?${query}`);
    },
    readToken(body) {
      const error = String(field(body, "error") ?? "no access_token");
      return (
        accessToken(body) ?? {
          error: `${error}: ${field(body, "error_description") ?? "unexpected answer"}`,
          retry: error === "temporarily_unavailable", // OAuth 2.0's "try again later"
        }
      );
    },
    sendRequest: (base, token, openid, reply, userType) => baiduSendRequest(`${base}/rest/2.0/smartapp/message/custom/send`, token, openid, reply, userType),
    readSend(body): PlatformAnswer {
      const gateway = field(body, "error_code");
      if (typeof gateway === "number") {
        return { verdict: gatewayVerdicts[gateway] ?? "rejected", platformCode: gateway, message: String(field(body, "error_msg") ?? "") };
      }
      const errno = Number(field(body, "errno"));
      if (!Number.isInteger(errno)) return { verdict: "retry", message: "answer has neither errno nor error_code" };
      return { verdict: errnoVerdicts[errno] ?? "rejected", platformCode: errno, message: String(field(body, "msg") ?? "") };
    },
    replyTypes: { text: ["content"], image: ["picUrl"] },
  },
};
