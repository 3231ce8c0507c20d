import { Buffer } from "node:buffer";
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { KefuError } from "./errors.ts";

/**
 * The message cipher both platforms share (docs/protocol.md §4):
 *   AES-256-CBC, key = base64(EncodingAESKey + "="), iv = key[0..16],
 *   plaintext = random(16) ‖ uint32be(len) ‖ message ‖ trailing id, PKCS#7-padded to 32 bytes.
 * WebCrypto only strips 16-byte PKCS#7 and throws on pad bytes 17..32, so padding is handled here.
 */

const BLOCK = 32;
const HEADER = 16 + 4;
const encoder = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

export interface AesKey {
  readonly key: Uint8Array;
  readonly iv: Uint8Array;
}

export interface Decrypted {
  readonly message: string;
  /** WeChat: the appid; Baidu: a platform id. Kept for checks and diagnostics. */
  readonly trailingId: string;
}

const keyCache = new Map<string, AesKey>();

/** Turns a 43-character EncodingAESKey into the AES key and IV; throws on a malformed key. */
export function aesKey(encodingAesKey: string): AesKey {
  const cached = keyCache.get(encodingAesKey);
  if (cached) return cached;
  if (!isEncodingAesKey(encodingAesKey)) {
    throw new Error("EncodingAESKey must be 43 characters of [A-Za-z0-9]");
  }
  const key = new Uint8Array(Buffer.from(`${encodingAesKey}=`, "base64"));
  const result = { key, iv: key.subarray(0, 16) };
  keyCache.set(encodingAesKey, result);
  return result;
}

export function isEncodingAesKey(value: string): boolean {
  return /^[A-Za-z0-9]{43}$/.test(value);
}

/** Strict base64: decoding skips what is not base64, so only text that encodes back to itself is. */
function fromBase64(encrypted: string): Buffer {
  let text = encrypted;
  let bytes = Buffer.from(text, "base64");
  if (bytes.toString("base64") !== text) {
    text = encrypted.replace(/\s+/g, ""); // line-wrapped base64 is still base64
    bytes = Buffer.from(text, "base64");
  }
  if (text.length === 0 || bytes.toString("base64") !== text) throw new KefuError("bad_base64", "Encrypt is not valid base64");
  return bytes;
}

export function decrypt(encrypted: string, { key, iv }: AesKey): Decrypted {
  const cipherText = fromBase64(encrypted);
  if (cipherText.length < BLOCK || cipherText.length % 16 !== 0) {
    throw new KefuError("bad_block_length", `ciphertext is ${cipherText.length} bytes: not a positive multiple of the AES block (16) of at least ${BLOCK}`);
  }
  const plain = decryptCbc(cipherText, key, iv);

  const pad = plain[plain.length - 1]!;
  if (pad < 1 || pad > BLOCK) {
    throw new KefuError("bad_padding", `padding byte ${pad} is outside 1..${BLOCK}: wrong key or corrupted ciphertext`);
  }
  const end = plain.length - pad;
  if (end < HEADER) {
    throw new KefuError("bad_length", "plaintext is shorter than its 20-byte header");
  }
  const length = plain.readUInt32BE(16);
  if (HEADER + length > end) {
    throw new KefuError("bad_length", `declared message length ${length} overruns the ${end - HEADER} bytes available`);
  }
  let message: string;
  try {
    message = utf8.decode(plain.subarray(HEADER, HEADER + length));
  } catch {
    throw new KefuError("bad_utf8", "decrypted message is not valid UTF-8: wrong key or corrupted ciphertext");
  }
  const trailingId = plain.subarray(HEADER + length, end).toString("latin1");
  return { message, trailingId };
}

/**
 * CBC decryption is each block's ECB decryption XORed with the ciphertext block before it (the IV
 * for the first). An ECB context keeps no state between blocks, so one per key serves every push
 * instead of a new CBC context each time.
 */
const ecbContexts = new WeakMap<Uint8Array, ReturnType<typeof createDecipheriv>>();

function decryptCbc(cipherText: Buffer, key: Uint8Array, iv: Uint8Array): Buffer {
  let ecb = ecbContexts.get(key);
  if (!ecb) {
    ecb = createDecipheriv("aes-256-ecb", key, null).setAutoPadding(false);
    ecbContexts.set(key, ecb);
  }
  const plain = ecb.update(cipherText); // whole blocks only (checked): nothing is held back
  for (let i = 0; i < 16; i++) plain[i]! ^= iv[i]!;
  for (let i = 16; i < plain.length; i++) plain[i]! ^= cipherText[i - 16]!;
  return plain;
}

/** The platform's side of the cipher: used by tests, the simulator and the benchmark. */
export function encrypt(message: string, trailingId: string, { key, iv }: AesKey, random: Uint8Array = randomBytes(16)): string {
  const body = encoder.encode(message);
  const id = encoder.encode(trailingId);
  const unpadded = HEADER + body.length + id.length;
  const pad = BLOCK - (unpadded % BLOCK);
  const plain = Buffer.alloc(unpadded + pad, pad);
  plain.set(random.subarray(0, 16), 0);
  plain.writeUInt32BE(body.length, 16);
  plain.set(body, HEADER);
  plain.set(id, HEADER + body.length);
  const cipher = createCipheriv("aes-256-cbc", key, iv).setAutoPadding(false);
  return Buffer.concat([cipher.update(plain), cipher.final()]).toString("base64");
}
