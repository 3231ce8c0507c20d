import type { AppConfig, AuthorizationState, Config, ThirdPartyConfig } from "../config.ts";
import type { Env } from "../env.ts";
import { baiduTp } from "../platforms/baidu-tp.ts";
import { KefuError } from "../protocol/errors.ts";
import { requireApp } from "../app-config.ts";

/**
 * A mini program authorized to a third-party platform is an app like any other, named
 * `<tp>.<appId>` (KEFU_APPS names have no dot, so the two never meet).
 */

const TP_APP_NAME = /^([A-Za-z0-9_-]{1,64})\.([A-Za-z0-9]{1,64})$/;

export const tpAppName = (tp: string, appId: string) => `${tp}.${appId}`;

/** The app as kefu-edge sees it: Baidu's rules, pushes in the message URL's safe envelope, sends by sendbytp. */
export function tpApp(platform: ThirdPartyConfig, appId: string, state?: AuthorizationState): AppConfig {
  return {
    name: tpAppName(platform.name, appId),
    platform: "baidu",
    token: platform.messageToken,
    encodingAesKey: platform.messageEncodingAesKey,
    mode: "safe",
    appId,
    userType: 1,
    rules: baiduTp,
    thirdParty: { platform: platform.name, appId, ...(state && { state }) },
  };
}

/**
 * A configured app, or a name of the `<tp>.<appId>` form on a configured platform, without asking
 * its Authorizer (the send path: the authorizer's token answers for its state).
 */
export function appByName(config: Config, name: string): AppConfig | undefined {
  const configured = config.apps.get(name);
  if (configured) return configured;
  const match = TP_APP_NAME.exec(name);
  const platform = match ? config.thirdParties.get(match[1]!) : undefined;
  return match && platform ? tpApp(platform, match[2]!) : undefined;
}

/** A configured app, or a mini program its platform has known (any state: the history stays); else undefined. */
export async function findApp(env: Env, config: Config, name: string): Promise<AppConfig | undefined> {
  const app = appByName(config, name);
  if (!app?.thirdParty) return app;
  const state = await env.AUTHORIZERS.getByName(name).state();
  return state ? tpApp(config.thirdParties.get(app.thirdParty.platform)!, app.thirdParty.appId, state) : undefined;
}

export async function resolveApp(env: Env, config: Config, name: string, problems: "hidden" | "shown" = "hidden"): Promise<AppConfig> {
  if (config.brokenApps.has(name)) return requireApp(config, name, problems); // 503 config_invalid
  const app = await findApp(env, config, name);
  if (!app) {
    const why = TP_APP_NAME.test(name) ? "in KEFU_APPS, nor a mini program authorized to a platform of KEFU_THIRD_PARTY" : "in KEFU_APPS";
    throw new KefuError("unknown_app", `no app named "${name}" ${why}`);
  }
  return app;
}

export function requireThirdParty(config: Config, name: string): ThirdPartyConfig {
  const platform = config.thirdParties.get(name);
  if (!platform) throw new KefuError("unknown_app", `no third-party platform named "${name}" in KEFU_THIRD_PARTY`);
  return platform;
}
