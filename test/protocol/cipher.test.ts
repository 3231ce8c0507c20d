import { Buffer } from "node:buffer";
import { createCipheriv } from "node:crypto";
import { describe, expect, it } from "vitest";
import { aesKey, decrypt, encrypt } from "../../src/protocol/cipher.ts";
import { errorCode } from "../helpers.ts";
import { baiduTicket, wechatSample } from "../fixtures/vectors.ts";

const key = aesKey(wechatSample.encodingAesKey);

const code = errorCode;

/** Encrypts an arbitrary plaintext with the app key, to forge malformed envelopes. */
function rawEncrypt(plain: Uint8Array): string {
  const cipher = createCipheriv("aes-256-cbc", key.key, key.iv).setAutoPadding(false);
  return Buffer.concat([cipher.update(plain), cipher.final()]).toString("base64");
}

describe("cipher", () => {
  it("decrypts WeChat's official sample", () => {
    const { message, trailingId } = decrypt(wechatSample.encrypt, key);
    expect(trailingId).toBe(wechatSample.appId);
    expect(message).toContain("<Content><![CDATA[abcdteT]]></Content>");
    expect(message).toContain("<MsgId>6054768590064713728</MsgId>");
  });

  it("decrypts Baidu's real ticket push and keeps its numeric trailing id", () => {
    const { message, trailingId } = decrypt(baiduTicket.encrypt, aesKey(baiduTicket.encodingAesKey));
    expect(message).toBe(baiduTicket.message);
    expect(trailingId).toBe(baiduTicket.trailingId);
  });

  it("round-trips every padding length 1..32 (WebCrypto would fail above 16)", () => {
    const pads = new Set<number>();
    for (let length = 0; length < 64; length++) {
      const text = "字".repeat(length % 7) + "x".repeat(length);
      const encrypted = encrypt(text, "wx2c2769f8efd9abc2", key);
      const plainLength = Buffer.from(encrypted, "base64").length;
      pads.add(plainLength - (20 + Buffer.byteLength(text) + 18));
      expect(decrypt(encrypted, key)).toEqual({ message: text, trailingId: "wx2c2769f8efd9abc2" });
    }
    expect([...pads].sort((a, b) => a - b)).toEqual(Array.from({ length: 32 }, (_, i) => i + 1));
  });

  it("keeps multi-byte UTF-8 intact", () => {
    const text = "你好，客服 👋 ÄÖÜ";
    expect(decrypt(encrypt(text, "id", key), key).message).toBe(text);
  });

  it("rejects bad base64", () => {
    expect(code(() => decrypt("not*base64!", key))).toBe("bad_base64");
    expect(code(() => decrypt("abc", key))).toBe("bad_base64");
    expect(code(() => decrypt("", key))).toBe("bad_base64");
  });

  it("rejects a ciphertext that is not a multiple of 16 bytes", () => {
    expect(code(() => decrypt(Buffer.alloc(40).toString("base64"), key))).toBe("bad_block_length");
    expect(code(() => decrypt(Buffer.alloc(16).toString("base64"), key))).toBe("bad_block_length");
  });

  it("rejects a pad byte outside 1..32 (e.g. the wrong key)", () => {
    const plain = new Uint8Array(64);
    plain[63] = 0;
    expect(code(() => decrypt(rawEncrypt(plain), key))).toBe("bad_padding");
    plain[63] = 33;
    expect(code(() => decrypt(rawEncrypt(plain), key))).toBe("bad_padding");
  });

  it("rejects a declared length that overruns the buffer", () => {
    const plain = new Uint8Array(64).fill(4);
    Buffer.from(plain.buffer).writeUInt32BE(1000, 16);
    expect(code(() => decrypt(rawEncrypt(plain), key))).toBe("bad_length");
  });

  it("rejects a plaintext shorter than its header", () => {
    const plain = new Uint8Array(32).fill(32); // all padding
    expect(code(() => decrypt(rawEncrypt(plain), key))).toBe("bad_length");
  });

  it("rejects a message that is not UTF-8", () => {
    const plain = new Uint8Array(32).fill(8);
    Buffer.from(plain.buffer).writeUInt32BE(2, 16);
    plain[20] = 0xff;
    plain[21] = 0xfe;
    expect(code(() => decrypt(rawEncrypt(plain), key))).toBe("bad_utf8");
  });

  it("refuses a malformed EncodingAESKey", () => {
    expect(() => aesKey("short")).toThrow(/43 characters/);
  });
});
