/**
 * Exponential backoff with "equal jitter": attempt n waits between half and all of
 * base·2^(n-1) seconds, capped, so retries from many messages spread out instead of arriving together.
 */
export function backoffSeconds(attempt: number, baseSeconds: number, capSeconds = 3600, random = Math.random): number {
  const ceiling = Math.min(capSeconds, baseSeconds * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
