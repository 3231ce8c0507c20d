import type { PlatformRules } from "./platform";

/** Baidu Smart Mini Programs: https://smartprogram.baidu.com/docs/develop/serverapi/custom_message/ */
export const baidu: PlatformRules = {
  name: "baidu",
  pushDeadlineMs: 2_000,
  // The trailing id is a platform id (e.g. 20073496), not the appId; Baidu's own sample ignores it.
  trailingIdIsAppId: false,
  // Third-party platforms receive a `ticket` every 10 minutes on the same URL.
  systemTypes: ["ticket"],
  // Each user message resets the allowance to 5 replies within 48 h; unused ones do not accumulate.
  messageGrant: { replies: 5, seconds: 48 * 3600 },
  eventGrants: {},
};
