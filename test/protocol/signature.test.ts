import { describe, expect, it } from "vitest";
import { safeEqual, sha1Signature, verifySignature } from "../../src/protocol/signature.ts";
import { wechatHandshake, wechatSample } from "../fixtures/vectors.ts";

describe("signatures", () => {
  it("matches WeChat's documented handshake vector", () => {
    const { token, timestamp, nonce, signature } = wechatHandshake;
    expect(sha1Signature(token, timestamp, nonce)).toBe(signature);
    expect(verifySignature(signature, token, timestamp, nonce)).toBe(true);
  });

  it("matches the official msg_signature over the sorted four parts", () => {
    const { token, timestamp, nonce, encrypt, msgSignature } = wechatSample;
    expect(sha1Signature(token, timestamp, nonce, encrypt)).toBe(msgSignature);
  });

  it("sorts plainly, so argument order does not matter", () => {
    expect(sha1Signature("b", "a", "c")).toBe(sha1Signature("c", "b", "a"));
  });

  it("rejects missing, wrong, truncated and other-token signatures", () => {
    const { token, timestamp, nonce, signature } = wechatHandshake;
    expect(verifySignature(undefined, token, timestamp, nonce)).toBe(false);
    expect(verifySignature("", token, timestamp, nonce)).toBe(false);
    expect(verifySignature(signature.slice(0, -1), token, timestamp, nonce)).toBe(false);
    expect(verifySignature(signature, "BBBBB", timestamp, nonce)).toBe(false);
    expect(verifySignature(signature.toUpperCase(), token, timestamp, nonce)).toBe(true);
  });

  it("compares strings of any length without throwing", () => {
    expect(safeEqual("abc", "abc")).toBe(true);
    expect(safeEqual("abc", "abd")).toBe(false);
    expect(safeEqual("abc", "abcd")).toBe(false);
    expect(safeEqual("", "")).toBe(true);
  });
});
