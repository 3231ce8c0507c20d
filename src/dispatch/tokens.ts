import { DurableObject } from "cloudflare:workers";
import { readConfig, type AppConfig } from "../config.ts";
import type { Env } from "../env.ts";
import { log } from "../log.ts";

export type TokenResult =
  | { ok: true; token: string }
  /** `retry`: the platform could not be reached; otherwise it refused the credentials. */
  | { ok: false; retry: boolean; error: string; code?: "unauthorized" };

interface StoredToken {
  token: string;
  /** When to fetch again: before expiry, so no send races the deadline. */
  refreshAt: number;
}

/**
 * Where an app's access token comes from: its own AccessTokens object, or — for a mini program
 * authorized to a third-party platform — its Authorizer (src/tp/credentials.ts).
 */
export function tokenSource(env: Env, app: AppConfig): { token(rejected?: string): Promise<TokenResult> } {
  if (app.thirdParty) {
    const { platform, appId } = app.thirdParty;
    const authorizer = env.AUTHORIZERS.getByName(app.name);
    return { token: (rejected) => authorizer.token(platform, appId, rejected) };
  }
  const tokens = env.ACCESS_TOKENS.getByName(app.name);
  return { token: (rejected) => tokens.token(app.name, rejected) };
}

const REFRESH_MARGIN_MS = 5 * 60_000;

/**
 * Refresh 5 minutes before expiry, or halfway through a shorter lifetime. WeChat's stable token
 * answers a repeated fetch with the same token and what is left of its life: halving keeps those
 * re-fetches to a handful instead of one per send.
 */
export function refreshAt(fetchedAt: number, expiresInSeconds: number): number {
  const lifetime = expiresInSeconds * 1000;
  return fetchedAt + lifetime - Math.min(REFRESH_MARGIN_MS, lifetime / 2);
}

/**
 * One per app: the access token, shared by every isolate and refreshed by one caller at a time.
 * Concurrent callers while a fetch is under way wait for that same fetch (single flight), so the
 * platform never sees a stampede and WeChat never invalidates a token we are still using.
 */
export class AccessTokens extends DurableObject<Env> {
  private refreshing?: Promise<TokenResult>;

  /**
   * A valid token. `rejected` is a token the platform just refused: if it is still the cached one,
   * it is replaced; if another caller already replaced it, the newer one is returned.
   */
  async token(app: string, rejected?: string): Promise<TokenResult> {
    const cached = this.ctx.storage.kv.get<StoredToken>("token");
    const fresh = cached && cached.token !== rejected && Date.now() < cached.refreshAt;
    if (fresh) return { ok: true, token: cached.token };
    this.refreshing ??= this.fetchToken(app, rejected !== undefined && cached?.token === rejected).finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async fetchToken(appName: string, forceRefresh: boolean): Promise<TokenResult> {
    const config = readConfig(this.env);
    const app = config.ok ? config.config.apps.get(appName) : undefined;
    if (!config.ok || !app) return { ok: false, retry: false, error: `app ${appName} is not configured` };
    if (!app.appKey || !app.appSecret) return { ok: false, retry: false, error: `app ${appName} has no appKey/appSecret` };
    const started = Date.now();
    const credentials = { appKey: app.appKey, appSecret: app.appSecret };
    const request = app.rules.api.tokenRequest(config.config.apiBase[app.platform], credentials, forceRefresh);
    let body: unknown;
    try {
      const response = await fetch(request, { signal: AbortSignal.timeout(config.config.callTimeoutMs) });
      if (response.status >= 500) return this.failed(appName, true, `token endpoint answered HTTP ${response.status}`);
      body = await response.json();
    } catch (error) {
      return this.failed(appName, true, `token endpoint unreachable: ${String(error)}`);
    }
    const answer = app.rules.api.readToken(body);
    if ("error" in answer) return this.failed(appName, answer.retry, `token refused: ${answer.error}`);
    this.ctx.storage.kv.put<StoredToken>("token", { token: answer.token, refreshAt: refreshAt(started, answer.expiresInSeconds) });
    log("token", { app: appName, outcome: "refreshed", forceRefresh, expiresIn: answer.expiresInSeconds, ms: Date.now() - started });
    return { ok: true, token: answer.token };
  }

  private failed(app: string, retry: boolean, error: string): TokenResult {
    log("token", { app, outcome: "failed", retry, reason: error });
    return { ok: false, retry, error };
  }
}
