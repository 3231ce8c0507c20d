import type { PlatformRules, ReplyGrant } from "./platform";

/** Entering the session through the 客服 button: the current doc says 2 replies within 1 minute. */
export const defaultSessionGrant: ReplyGrant = { replies: 2, seconds: 60 };

/** WeChat Mini Programs: developers.weixin.qq.com …/customer-message/send.html */
export function wechatRules(sessionGrant: ReplyGrant = defaultSessionGrant): PlatformRules {
  return {
    name: "wechat",
    pushDeadlineMs: 5_000,
    trailingIdIsAppId: true,
    systemTypes: [],
    messageGrant: { replies: 5, seconds: 48 * 3600 },
    eventGrants: { user_enter_tempsession: sessionGrant },
  };
}

export const wechat = wechatRules();
