// The demo's configuration as the tools need it: the env file `npm start` gives the Worker, and
// the apps in its KEFU_APPS (the secrets a platform would share with kefu-edge).

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseEnv } from "node:util";
import type { ThirdPartyConfig } from "../src/config.ts";
import type { Platform } from "../src/protocol/codec.ts";

/** demo/demo.env, found from this file so the tools work from any directory. */
export const DEMO_ENV_FILE = fileURLToPath(new URL("../demo/demo.env", import.meta.url));

/** What the platform knows about an app: enough to sign and seal its pushes. */
export interface PushApp {
  name: string;
  platform: Platform;
  token: string;
  encodingAesKey?: string;
  appId?: string;
}

export function readEnvFile(path: string): Record<string, string> {
  const parsed = parseEnv(readFileSync(path, "utf8"));
  return Object.fromEntries(Object.entries(parsed).filter((entry): entry is [string, string] => entry[1] !== undefined));
}

/**
 * The apps of an env file's KEFU_APPS, or of a JSON file holding that object itself.
 * Throws with a readable message when the file does not describe any app.
 */
export function readApps(path: string = DEMO_ENV_FILE): Map<string, PushApp> {
  const text = readFileSync(path, "utf8");
  const json = text.trimStart().startsWith("{") ? text : readEnvFile(path).KEFU_APPS;
  if (!json) throw new Error(`${path} has no KEFU_APPS`);
  const parsed = JSON.parse(json) as Record<string, Partial<PushApp>>;
  const apps = new Map<string, PushApp>();
  for (const [name, app] of Object.entries(parsed)) {
    if ((app.platform !== "baidu" && app.platform !== "wechat") || typeof app.token !== "string") {
      throw new Error(`${path}: app ${name} needs a platform ("baidu" or "wechat") and a token`);
    }
    apps.set(name, { name, platform: app.platform, token: app.token, encodingAesKey: app.encodingAesKey, appId: app.appId });
  }
  if (apps.size === 0) throw new Error(`${path}: KEFU_APPS has no apps`);
  return apps;
}

/** What Baidu knows about a third-party platform: the same fields kefu-edge is configured with. */
export type PushPlatform = ThirdPartyConfig;

/** The demo platform's mini program, authorized by `npm start` against the stand-in. */
export const DEMO_TP_APP_ID = "20000001";

/** The platforms of an env file's KEFU_THIRD_PARTY (none when it has none). */
export function readThirdParties(path: string = DEMO_ENV_FILE): Map<string, PushPlatform> {
  const text = readFileSync(path, "utf8");
  const json = text.trimStart().startsWith("{") ? undefined : readEnvFile(path).KEFU_THIRD_PARTY;
  const platforms = new Map<string, PushPlatform>();
  if (!json) return platforms;
  for (const [name, p] of Object.entries(JSON.parse(json) as Record<string, Partial<PushPlatform>>)) {
    if (!p.clientId || !p.token || !p.encodingAesKey) throw new Error(`${path}: platform ${name} needs clientId, token and encodingAesKey`);
    platforms.set(name, {
      name,
      clientId: p.clientId,
      token: p.token,
      encodingAesKey: p.encodingAesKey,
      messageToken: p.messageToken ?? p.token,
      messageEncodingAesKey: p.messageEncodingAesKey ?? p.encodingAesKey,
    });
  }
  return platforms;
}
