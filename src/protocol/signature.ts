import { hash, timingSafeEqual } from "node:crypto";

/** sha1 over the lexicographically sorted parts, lowercase hex: the handshake, `signature` and `msg_signature` rule. */
export function sha1Signature(...parts: string[]): string {
  return hash("sha1", parts.sort().join(""), "hex"); // one-shot: no Hash object per push
}

const encoder = new TextEncoder();

/** Constant-time string equality (time depends only on the lengths, which are public). */
export function safeEqual(given: string, expected: string): boolean {
  const a = encoder.encode(given);
  const b = encoder.encode(expected);
  // Compare against itself on a length mismatch so the work done is the same shape either way.
  return a.length === b.length ? timingSafeEqual(a, b) : !timingSafeEqual(b, b);
}

/** True when `given` is the signature of `parts`. A missing signature never verifies. */
export function verifySignature(given: string | undefined, ...parts: string[]): boolean {
  if (!given) return false;
  return safeEqual(given.toLowerCase(), sha1Signature(...parts));
}
