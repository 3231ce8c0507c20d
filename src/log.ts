/**
 * One JSON line per event, for `wrangler tail` and Workers Logs. Callers pass only what is safe to
 * print: never tokens, keys or message bodies.
 */
export function log(event: string, fields: Record<string, unknown> = {}): void {
  console.log(JSON.stringify({ event, ...fields }));
}

/** Enough of an openid to tell users apart in logs without printing it whole. */
export function shortOpenid(openid: string | undefined): string | undefined {
  if (!openid) return openid;
  return openid.length <= 10 ? openid : `${openid.slice(0, 4)}…${openid.slice(-4)}`;
}
