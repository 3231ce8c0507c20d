import { DurableObject } from "cloudflare:workers";
import { readConfig, type AuthorizationState, type Config, type ThirdPartyConfig } from "../config.ts";
import { refreshAt, type TokenResult } from "../dispatch/tokens.ts";
import type { Env } from "../env.ts";
import { log } from "../log.ts";
import { authorizationUrl, readAppInfo, readCode, readPair, readPlatformToken, tpCalls, type TokenPair } from "../platforms/baidu-tp.ts";
import { callTp, type TpOutcome } from "./call.ts";

/**
 * The credentials of third-party platform mode, each with one owner (docs/protocol.md §8):
 * `ThirdParty`, one per platform, owns the latest ticket and the platform token; `Authorizer`, one
 * per authorized mini program, owns its access token and its single-use refresh token. Everything
 * is in Durable Object storage: nothing is lost when an isolate restarts or an object is evicted.
 */

type Setup = { config: Config; platform: ThirdPartyConfig };

function setupOf(env: Env, tp: string): Setup | undefined {
  const result = readConfig(env);
  const platform = result.ok ? result.config.thirdParties.get(tp) : undefined;
  return result.ok && platform ? { config: result.config, platform } : undefined;
}

const notConfigured = (tp: string): TokenResult => ({ ok: false, retry: false, error: `platform ${tp} is not in KEFU_THIRD_PARTY` });

const describe = (outcome: TpOutcome) =>
  `${outcome.verdict}${"code" in outcome && outcome.code !== undefined ? ` ${outcome.code}` : ""}${outcome.message ? `: ${outcome.message}` : ""}`;

/** A call with the platform token, fetched again once if Baidu refuses it. */
async function withPlatformToken(env: Env, { config, platform }: Setup, build: (token: string) => Request): Promise<TpOutcome> {
  const owner = env.THIRD_PARTIES.getByName(platform.name);
  let token = await owner.token(platform.name);
  for (let round = 0; ; round++) {
    if (!token.ok) return { verdict: token.retry ? "retry" : "final", message: `platform token: ${token.error}` };
    const answer = await callTp(build(token.token), config.callTimeoutMs);
    if (answer.verdict !== "refresh" || round > 0) return answer;
    token = await owner.token(platform.name, token.token);
  }
}

// ---- the platform: ticket and platform token -----------------------------------------------------

interface StoredTicket {
  value: string;
  /** The push's CreateTime: a late retry of an older ticket never replaces a newer one. */
  createTime: number;
  receivedAt: number;
}

interface StoredPlatformToken {
  token: string;
  expiresAt: number;
  /** Renewed from here on: a day before expiry (or halfway through a shorter life). */
  renewAt: number;
}

const PLATFORM_RENEW_MARGIN_MS = 24 * 3600_000;
const EVENT_MEMORY_MS = 7 * 86_400_000;

export class ThirdParty extends DurableObject<Env> {
  private fetching?: Promise<TokenResult>;

  /** Keeps the latest ticket (never evicted: it is in storage, not a cache). */
  saveTicket(value: string, createTime: number): { kept: boolean } {
    const current = this.ctx.storage.kv.get<StoredTicket>("ticket");
    if (current && current.createTime > createTime) return { kept: false };
    this.ctx.storage.kv.put<StoredTicket>("ticket", { value, createTime, receivedAt: Date.now() });
    return { kept: true };
  }

  /**
   * The platform token, fetched with the latest ticket once and shared by every caller; `rejected`
   * is one Baidu just refused (fetched again, once, by whoever comes first).
   */
  async token(tp: string, rejected?: string): Promise<TokenResult> {
    const cached = this.ctx.storage.kv.get<StoredPlatformToken>("token");
    const usable = cached !== undefined && cached.token !== rejected;
    if (usable && Date.now() < cached.renewAt) return { ok: true, token: cached.token };
    this.fetching ??= this.fetchToken(tp).finally(() => {
      this.fetching = undefined;
    });
    const fetched = await this.fetching;
    // Renewing ahead of expiry failed: the current token still has a day to live.
    if (!fetched.ok && usable && Date.now() < cached.expiresAt) return { ok: true, token: cached.token };
    return fetched;
  }

  private async fetchToken(tp: string): Promise<TokenResult> {
    const setup = setupOf(this.env, tp);
    if (!setup) return notConfigured(tp);
    const ticket = this.ctx.storage.kv.get<StoredTicket>("ticket");
    if (!ticket) return this.failed(tp, true, "no ticket yet: Baidu pushes one every 10 minutes to POST /tp/<tp>/events");
    const started = Date.now();
    const request = tpCalls.platformToken(setup.config.apiBase.baidu, setup.platform.clientId, ticket.value);
    const answer = await callTp(request, setup.config.callTimeoutMs);
    const token = answer.verdict === "ok" ? readPlatformToken(answer.data) : undefined;
    if (!token) return this.failed(tp, answer.verdict !== "final", `tp/token: ${describe(answer)}`);
    const lifetime = token.expiresInSeconds * 1000;
    this.ctx.storage.kv.put<StoredPlatformToken>("token", {
      token: token.token,
      expiresAt: started + lifetime,
      renewAt: started + lifetime - Math.min(PLATFORM_RENEW_MARGIN_MS, lifetime / 2),
    });
    this.ctx.storage.kv.put("fetches", (this.ctx.storage.kv.get<number>("fetches") ?? 0) + 1);
    log("tp_token", { tp, outcome: "fetched", expiresIn: token.expiresInSeconds, ms: Date.now() - started });
    return { ok: true, token: token.token };
  }

  private failed(tp: string, retry: boolean, error: string): TokenResult {
    log("tp_token", { tp, outcome: "failed", retry, reason: error });
    return { ok: false, retry, error };
  }

  /** Every mini program ever authorized to this platform (the list of GET /api/tp/:tp/authorizers). */
  register(appId: string): void {
    if (this.ctx.storage.kv.get(`app:${appId}`) === undefined) this.ctx.storage.kv.put(`app:${appId}`, Date.now());
  }

  appIds(): string[] {
    return [...this.ctx.storage.kv.list({ prefix: "app:" })].map(([key]) => key.slice("app:".length));
  }

  /** Authorization events already applied, by appId + event + eventTime: Baidu retries them. */
  wasHandled(key: string): boolean {
    return this.ctx.storage.kv.get(`event:${key}`) !== undefined;
  }

  markHandled(key: string): void {
    const now = Date.now();
    for (const [old, at] of this.ctx.storage.kv.list<number>({ prefix: "event:" })) {
      if (at < now - EVENT_MEMORY_MS) this.ctx.storage.kv.delete(old);
    }
    this.ctx.storage.kv.put(`event:${key}`, now);
  }

  status(): { ticketReceivedAt: string | null; tokenExpiresAt: string | null; tokenFetches: number } {
    const ticket = this.ctx.storage.kv.get<StoredTicket>("ticket");
    const token = this.ctx.storage.kv.get<StoredPlatformToken>("token");
    return {
      ticketReceivedAt: ticket ? new Date(ticket.receivedAt).toISOString() : null,
      tokenExpiresAt: token ? new Date(token.expiresAt).toISOString() : null,
      tokenFetches: this.ctx.storage.kv.get<number>("fetches") ?? 0,
    };
  }
}

// ---- one authorized mini program: access token and single-use refresh token ----------------------

interface AuthorizerRecord {
  tp: string;
  appId: string;
  state: AuthorizationState;
  accessToken?: string;
  refreshToken?: string;
  expiresAt?: number;
  renewAt?: number;
  /** How many token pairs have been committed. */
  generation: number;
  /** app/info says the merchant granted 客服; null: not known yet. */
  kefuGranted: boolean | null;
  /**
   * The refresh token presented in a refresh whose answer is not committed yet. Written before the
   * call: an object that dies mid-refresh leaves it, and the next one recovers instead of presenting
   * a token Baidu may already have burned.
   */
  presenting?: string;
  lastRefreshError?: { message: string; at: number };
  /** The latest authorization event applied (ms): an older one arriving late changes nothing. */
  lastEventAt: number;
  authorizedAt?: number;
  updatedAt: number;
}

export interface AuthorizerSummary {
  app: string;
  appId: string;
  state: AuthorizationState;
  kefuGranted: boolean | null;
  accessTokenExpiresAt: string | null;
  refreshGeneration: number;
  lastRefreshError: { message: string; at: string } | null;
  authorizedAt: string | null;
}

export type AuthorizeResult = { ok: true; summary: AuthorizerSummary; stale?: boolean } | { ok: false; retry: boolean; error: string };

const unauthorized = (app: string): TokenResult => ({
  ok: false,
  retry: false,
  code: "unauthorized",
  error: `${app} is not authorized to its platform (never authorized, or the merchant withdrew it)`,
});

export class Authorizer extends DurableObject<Env> {
  private renewing?: Promise<TokenResult>;

  private get record(): AuthorizerRecord | undefined {
    return this.ctx.storage.kv.get<AuthorizerRecord>("authorizer");
  }

  /** One synchronous write of the whole record. */
  private save(record: AuthorizerRecord): void {
    this.ctx.storage.kv.put<AuthorizerRecord>("authorizer", { ...record, updatedAt: Date.now() });
  }

  private fresh(tp: string, appId: string): AuthorizerRecord {
    return { tp, appId, state: "needs_recovery", generation: 0, kefuGranted: null, lastEventAt: 0, updatedAt: Date.now() };
  }

  summary(): AuthorizerSummary | null {
    const r = this.record;
    if (!r) return null;
    return {
      app: `${r.tp}.${r.appId}`,
      appId: r.appId,
      state: r.state,
      kefuGranted: r.kefuGranted,
      accessTokenExpiresAt: r.expiresAt && r.state === "authorized" ? new Date(r.expiresAt).toISOString() : null,
      refreshGeneration: r.generation,
      lastRefreshError: r.lastRefreshError ? { message: r.lastRefreshError.message, at: new Date(r.lastRefreshError.at).toISOString() } : null,
      authorizedAt: r.authorizedAt ? new Date(r.authorizedAt).toISOString() : null,
    };
  }

  state(): AuthorizationState | null {
    return this.record?.state ?? null;
  }

  /**
   * The new pair, committed in one write before anything else happens. A pair from an
   * authorization makes the program authorized again; one from a refresh never undoes a withdrawal.
   */
  private commit(
    tp: string,
    appId: string,
    pair: TokenPair,
    obtainedAt: number,
    how: { authorization?: { at: number; kefuGranted?: boolean | null } },
  ): AuthorizerRecord {
    const current = this.record ?? this.fresh(tp, appId);
    const record: AuthorizerRecord = {
      ...current,
      state: how.authorization || current.state !== "unauthorized" ? "authorized" : "unauthorized",
      accessToken: pair.accessToken,
      refreshToken: pair.refreshToken,
      expiresAt: obtainedAt + pair.expiresInSeconds * 1000,
      renewAt: refreshAt(obtainedAt, pair.expiresInSeconds),
      generation: current.generation + 1,
      presenting: undefined,
      ...(how.authorization && {
        authorizedAt: Date.now(),
        lastEventAt: Math.max(current.lastEventAt, how.authorization.at),
        ...(how.authorization.kefuGranted !== undefined && { kefuGranted: how.authorization.kefuGranted }),
      }),
      updatedAt: Date.now(),
    };
    this.save(record);
    return record;
  }

  /** A pair exchanged by the caller (the redirect: its code names no mini program until app/info has answered). */
  async adopt(tp: string, appId: string, pair: TokenPair, obtainedAt: number, kefuGranted: boolean | null): Promise<AuthorizerSummary> {
    this.commit(tp, appId, pair, obtainedAt, { authorization: { at: obtainedAt, kefuGranted } });
    log("authorizer", { app: `${tp}.${appId}`, outcome: "authorized", by: "redirect", kefuGranted });
    await this.env.THIRD_PARTIES.getByName(tp).register(appId);
    return this.summary()!;
  }

  /**
   * AUTHORIZED / UPDATE_AUTHORIZED: the event's code (valid 60 s) is exchanged now, then app/info
   * says whether 客服 was granted. A code that no longer works is no loss: the merchant did
   * authorize, so the authorization is recovered through retrieve/authorizationcode.
   */
  async authorize(tp: string, appId: string, code: string, eventAt: number): Promise<AuthorizeResult> {
    const app = `${tp}.${appId}`;
    const current = this.record;
    if (current && eventAt < current.lastEventAt) return { ok: true, summary: this.summary()!, stale: true };
    const setup = setupOf(this.env, tp);
    if (!setup) return { ok: false, retry: false, error: `platform ${tp} is not in KEFU_THIRD_PARTY` };
    const started = Date.now();
    const answer = await withPlatformToken(this.env, setup, (token) => tpCalls.exchangeCode(setup.config.apiBase.baidu, token, code));
    const pair = answer.verdict === "ok" ? readPair(answer.data) : undefined;
    if (pair) {
      this.commit(tp, appId, pair, started, { authorization: { at: eventAt } });
    } else if (answer.verdict === "recover") {
      this.save({ ...(this.record ?? this.fresh(tp, appId)), state: "needs_recovery", lastEventAt: Math.max(current?.lastEventAt ?? 0, eventAt) });
      const recovered = await this.recover(tp, appId, `authorization code refused: ${describe(answer)}`);
      if (!recovered.ok) return { ok: false, retry: recovered.retry, error: recovered.error };
      this.save({ ...this.record!, authorizedAt: Date.now() });
    } else {
      return { ok: false, retry: answer.verdict !== "final", error: `code exchange: ${describe(answer)}` };
    }
    await this.checkKefu(setup, app);
    await this.env.THIRD_PARTIES.getByName(tp).register(appId);
    log("authorizer", { app, outcome: "authorized", by: "event", kefuGranted: this.record?.kefuGranted ?? null, ms: Date.now() - started });
    return { ok: true, summary: this.summary()! };
  }

  /** app/info: whether the merchant granted the customer-service permission (kept; unknown when it cannot be asked). */
  private async checkKefu(setup: Setup, app: string): Promise<void> {
    const token = this.record?.accessToken;
    if (!token) return;
    const answer = await callTp(tpCalls.appInfo(setup.config.apiBase.baidu, token), setup.config.callTimeoutMs);
    if (answer.verdict !== "ok") {
      log("authorizer", { app, outcome: "app_info_failed", reason: describe(answer) });
      return;
    }
    const record = this.record;
    if (record) this.save({ ...record, kefuGranted: readAppInfo(answer.data).kefuGranted });
  }

  /** UNAUTHORIZED: sends stop, tokens are dropped; the conversations and their history stay. */
  async revoke(tp: string, appId: string, eventAt: number): Promise<{ applied: boolean }> {
    const current = this.record ?? this.fresh(tp, appId);
    if (eventAt < current.lastEventAt) return { applied: false };
    this.save({
      ...current,
      state: "unauthorized",
      accessToken: undefined,
      refreshToken: undefined,
      expiresAt: undefined,
      renewAt: undefined,
      presenting: undefined,
      lastEventAt: eventAt,
    });
    log("authorizer", { app: `${tp}.${appId}`, outcome: "unauthorized" });
    await this.env.THIRD_PARTIES.getByName(tp).register(appId);
    return { applied: true };
  }

  /**
   * The access token for a send. Concurrent callers share one renewal (single flight); `rejected`
   * is a token Baidu just refused: renewed if it is still the current one.
   */
  async token(tp: string, appId: string, rejected?: string): Promise<TokenResult> {
    const r = this.record;
    if (!r || r.state === "unauthorized") return unauthorized(`${tp}.${appId}`);
    if (r.state === "authorized" && r.accessToken && r.accessToken !== rejected && r.presenting === undefined && Date.now() < (r.renewAt ?? 0)) {
      return { ok: true, token: r.accessToken };
    }
    this.renewing ??= this.renew(tp, appId).finally(() => {
      this.renewing = undefined;
    });
    return this.renewing;
  }

  private async renew(tp: string, appId: string): Promise<TokenResult> {
    const r = this.record!;
    if (r.presenting !== undefined) return this.recover(tp, appId, "an earlier refresh was cut off before its answer was kept");
    if (r.state === "needs_recovery" || !r.refreshToken) return this.recover(tp, appId, "needs recovery");
    return this.refresh(tp, appId, r.refreshToken);
  }

  /** One refresh. Its token works once: an answer not received means it may be burned, so it is never presented again. */
  private async refresh(tp: string, appId: string, presented: string): Promise<TokenResult> {
    const app = `${tp}.${appId}`;
    const setup = setupOf(this.env, tp);
    if (!setup) return notConfigured(tp);
    const base = setup.config.apiBase.baidu;
    let platformToken = await this.env.THIRD_PARTIES.getByName(tp).token(tp);
    if (!platformToken.ok) return platformToken;
    // While the platform token was fetched, the program may have been withdrawn or authorized anew.
    const before = this.record!;
    if (before.state === "unauthorized") return unauthorized(app);
    if (before.refreshToken !== presented)
      return before.accessToken ? { ok: true, token: before.accessToken } : this.recover(tp, appId, "the refresh token changed");
    const started = Date.now();
    this.save({ ...before, presenting: presented });
    let answer = await callTp(tpCalls.refresh(base, platformToken.token, presented), setup.config.callTimeoutMs);
    if (answer.verdict === "refresh") {
      // The gateway refused the platform token, before the refresh token was looked at.
      platformToken = await this.env.THIRD_PARTIES.getByName(tp).token(tp, platformToken.token);
      if (platformToken.ok) answer = await callTp(tpCalls.refresh(base, platformToken.token, presented), setup.config.callTimeoutMs);
    }
    const pair = answer.verdict === "ok" ? readPair(answer.data) : undefined;
    if (pair) {
      const record = this.commit(tp, appId, pair, started, {});
      log("authorizer", { app, outcome: "refreshed", generation: record.generation, ms: Date.now() - started });
      if (record.state === "unauthorized") return unauthorized(app);
      return { ok: true, token: pair.accessToken };
    }
    const current = this.record!;
    const error = `refresh: ${describe(answer)}`;
    if (current.state === "unauthorized") return unauthorized(app);
    // A new authorization was adopted meanwhile: its pair stands, whatever became of this refresh.
    if (current.refreshToken !== presented && current.accessToken) return { ok: true, token: current.accessToken };
    // Baidu's gateway answered (a limit, a refused platform token) or the request was malformed:
    // the refresh token was not used. Anything else may have burned it.
    const untouched = answer.verdict === "final" || answer.verdict === "refresh" || (answer.verdict === "retry" && typeof answer.code === "number");
    if (untouched) {
      this.save({ ...current, presenting: undefined, lastRefreshError: { message: error, at: Date.now() } });
      log("authorizer", { app, outcome: "refresh_failed", reason: error });
      return { ok: false, retry: true, error };
    }
    this.save({ ...current, state: "needs_recovery", refreshToken: undefined, presenting: undefined, lastRefreshError: { message: error, at: Date.now() } });
    log("authorizer", { app, outcome: "needs_recovery", reason: error });
    return this.recover(tp, appId, error);
  }

  /**
   * A fresh code for the same authorization (retrieve/authorizationcode, valid 18000 s), exchanged
   * at once. errno 50032 means the authorization is gone.
   */
  private async recover(tp: string, appId: string, why: string): Promise<TokenResult> {
    const app = `${tp}.${appId}`;
    const setup = setupOf(this.env, tp);
    if (!setup) return notConfigured(tp);
    const base = setup.config.apiBase.baidu;
    const record = this.record ?? this.fresh(tp, appId);
    if (record.state !== "needs_recovery" || record.presenting !== undefined) {
      this.save({ ...record, state: "needs_recovery", refreshToken: undefined, presenting: undefined });
    }
    const started = Date.now();
    const retrieved = await withPlatformToken(this.env, setup, (token) => tpCalls.retrieveCode(base, token, appId));
    if (retrieved.verdict === "unauthorized") {
      this.save({ ...this.record!, state: "unauthorized", accessToken: undefined, expiresAt: undefined, renewAt: undefined });
      log("authorizer", { app, outcome: "unauthorized", reason: `retrieve/authorizationcode: ${describe(retrieved)}` });
      return unauthorized(app);
    }
    const code = retrieved.verdict === "ok" ? readCode(retrieved.data, "authorization_code") : undefined;
    const exchanged = code ? await withPlatformToken(this.env, setup, (token) => tpCalls.exchangeCode(base, token, code)) : retrieved;
    const pair = exchanged.verdict === "ok" ? readPair(exchanged.data) : undefined;
    if (!pair) {
      const error = `recovery (${why}): ${code ? "code exchange" : "retrieve/authorizationcode"} ${describe(exchanged)}`;
      this.save({ ...this.record!, lastRefreshError: { message: error, at: Date.now() } });
      log("authorizer", { app, outcome: "recovery_failed", reason: error });
      return { ok: false, retry: exchanged.verdict !== "final", error };
    }
    const committed = this.commit(tp, appId, pair, started, {});
    log("authorizer", { app, outcome: "recovered", why, generation: committed.generation, ms: Date.now() - started });
    // Withdrawn while the recovery was under way: the pair is kept, the program stays withdrawn.
    if (committed.state === "unauthorized") return unauthorized(app);
    return { ok: true, token: pair.accessToken };
  }
}

/** The redirect's code: exchanged, then app/info names the mini program, whose Authorizer adopts the pair. */
export async function authorizeByRedirect(env: Env, config: Config, platform: ThirdPartyConfig, code: string): Promise<AuthorizeResult> {
  const base = config.apiBase.baidu;
  const started = Date.now();
  const answer = await withPlatformToken(env, { config, platform }, (token) => tpCalls.exchangeCode(base, token, code));
  const pair = answer.verdict === "ok" ? readPair(answer.data) : undefined;
  if (!pair) return { ok: false, retry: answer.verdict === "retry" || answer.verdict === "lost", error: `code exchange: ${describe(answer)}` };
  const info = await callTp(tpCalls.appInfo(base, pair.accessToken), config.callTimeoutMs);
  const { appId, kefuGranted } = info.verdict === "ok" ? readAppInfo(info.data) : { appId: undefined, kefuGranted: false };
  if (!appId || !/^[A-Za-z0-9]{1,64}$/.test(appId)) {
    return { ok: false, retry: true, error: `app/info did not name the mini program: ${describe(info)}` };
  }
  const summary = await env.AUTHORIZERS.getByName(`${platform.name}.${appId}`).adopt(platform.name, appId, pair, started, kefuGranted);
  return { ok: true, summary };
}

/** Baidu's authorization page with a fresh pre-auth code (valid 1200 s), coming back to `redirectUri`. */
export async function preAuthorizationUrl(
  env: Env,
  config: Config,
  platform: ThirdPartyConfig,
  redirectUri: string,
): Promise<{ ok: true; url: string } | { ok: false; error: string }> {
  const answer = await withPlatformToken(env, { config, platform }, (token) => tpCalls.preAuthCode(config.apiBase.baidu, token));
  const code = answer.verdict === "ok" ? readCode(answer.data, "pre_auth_code") : undefined;
  if (!code) return { ok: false, error: `createpreauthcode: ${describe(answer)}` };
  return { ok: true, url: authorizationUrl(config.authorizationPage, platform.clientId, code, redirectUri) };
}
