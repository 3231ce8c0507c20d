import { Buffer } from "node:buffer";
import { afterEach, describe, expect, it, vi } from "vitest";
import { app as worker } from "../../src/app.ts";
import { aesKey, encrypt } from "../../src/protocol/cipher.ts";
import { encode, queryString } from "../../src/protocol/seal.ts";
import { sha1Signature } from "../../src/protocol/signature.ts";
import { testApps } from "../fixtures/apps.ts";
import { baiduTicket, wechatHandshake, wechatSample } from "../fixtures/vectors.ts";
import { conversation } from "../../src/conversation/conversation.ts";
import { requireApp, requireConfig } from "../../src/app-config.ts";
import { receive } from "../../src/push/receive.ts";
import { PUSH_BODY_LIMIT } from "../../src/protocol/push.ts";
import { env, logsOf, postRaw, sealFor, sendPush, textPush, received } from "../helpers.ts";

const now = () => String(Math.floor(Date.now() / 1000));
/** A plaintext-mode query, signed now. */
function signedQuery(token: string, extra: Record<string, string> = {}) {
  const timestamp = now();
  return queryString({ timestamp, nonce: "2", signature: sha1Signature(token, timestamp, "2"), ...extra });
}

afterEach(() => vi.restoreAllMocks());

async function expectError(response: Response, status: number, code: string) {
  expect(response.status).toBe(status);
  const body = (await response.json()) as { error: { code: string; message: string } };
  expect(body.error.code).toBe(code);
  expect(body.error.message).toBeTruthy();
  return body.error.message;
}

function signedEncrypted(appName: "wx-sample" | "bd-shop", encrypted: string, body?: string) {
  const { token } = testApps[appName];
  const query = { timestamp: now(), nonce: "42", encrypt_type: "aes" };
  const msg_signature = sha1Signature(token, query.timestamp, query.nonce, encrypted);
  return postRaw(
    `/push/${appName}${queryString({ ...query, msg_signature })}`,
    body ?? `<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt><![CDATA[${encrypted}]]></Encrypt></xml>`,
  );
}

describe("URL handshake", () => {
  const { timestamp, nonce, signature } = wechatHandshake;

  it("answers WeChat's GET with the echo verbatim, as text/plain", async () => {
    const echostr = "6820390862413839017 with spaces & 符号";
    const response = await postRaw(`/push/wx-doc${signedQuery(wechatHandshake.token, { echostr })}`, null, undefined, "GET");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/plain/);
    expect(await response.text()).toBe(echostr);
  });

  it("checks the official vector's signature, and refuses it now that it is years old", async () => {
    const app = { ...requireApp(requireConfig(env), "wx-doc") };
    const params = { signature, timestamp, nonce, echostr: "e" };
    const atTheTime = { now: Number(timestamp) + 2, toleranceSeconds: 300 };
    expect(receive(app, { method: "GET", query: params, body: "" }, atTheTime)).toEqual({ kind: "handshake", echo: "e" });
    const message = await expectError(await postRaw(`/push/wx-doc${queryString(params)}`, null, undefined, "GET"), 401, "expired_signature");
    expect(message).toMatch(/300 s tolerance/);
  });

  it("refuses a wrong signature with 401 and no echo", async () => {
    const echostr = "secret-echo";
    const response = await postRaw(`/push/wx-doc${queryString({ signature: "0".repeat(40), timestamp, nonce, echostr })}`, null, undefined, "GET");
    expect(await expectError(response, 401, "bad_signature")).not.toContain(echostr);
  });

  it("answers Baidu's POST with its parameters in the query, a form body or a JSON body", async () => {
    const { token } = testApps["bd-plain"];
    const params = { timestamp: now(), nonce: "abc", signature: sha1Signature(token, now(), "abc") };
    const q = await postRaw(`/push/bd-plain${queryString({ ...params, echoStr: "e1" })}`, "");
    expect(await q.text()).toBe("e1");
    const form = await postRaw("/push/bd-plain", new URLSearchParams({ ...params, echoStr: "e2" }).toString(), "application/x-www-form-urlencoded");
    expect(await form.text()).toBe("e2");
    const json = await postRaw("/push/bd-plain", JSON.stringify({ ...params, echostr: "e3" }), "application/json");
    expect(await json.text()).toBe("e3");
    const bad = await postRaw("/push/bd-plain", JSON.stringify({ ...params, signature: "f".repeat(40), echoStr: "e4" }), "application/json");
    await expectError(bad, 401, "bad_signature");
  });

  it("says a GET without echostr is not a handshake", async () => {
    await expectError(await postRaw(`/push/wx-doc${signedQuery(wechatHandshake.token)}`, null, undefined, "GET"), 400, "bad_envelope");
  });
});

describe("pushes", () => {
  it("opens WeChat's official safe-mode sample into the exact message, and refuses its replay today", async () => {
    const { timestamp, nonce, msgSignature, encrypt: encrypted, expected } = wechatSample;
    const query = { timestamp, nonce, encrypt_type: "aes", msg_signature: msgSignature, signature: sha1Signature("spamtest", timestamp, nonce) };
    const body = `<xml><ToUserName><![CDATA[${expected.to}]]></ToUserName><Encrypt><![CDATA[${encrypted}]]></Encrypt></xml>`;
    const app = requireApp(requireConfig(env), "wx-sample");
    const received = receive(app, { method: "POST", query, body }, { now: Number(timestamp), toleranceSeconds: 300 });
    expect(received).toMatchObject({
      kind: "push",
      mode: "safe",
      message: { openid: expected.openid, to: expected.to, content: expected.content, msgId: expected.msgId, createTime: expected.createTime },
    });
    let response!: Response;
    const lines = await logsOf(async () => {
      response = await postRaw(`/push/wx-sample${queryString(query)}`, body);
    });
    await expectError(response, 401, "expired_signature");
    expect(lines.find((l) => l.event === "push")).toMatchObject({ app: "wx-sample", outcome: "rejected", code: "expired_signature" });
  });

  it("logs an accepted push with its mode and never its content", async () => {
    const fields = textPush({ Content: "不要记录我" });
    const lines = await logsOf(async () => expect(await (await sendPush(fields, { app: "wx-sample" })).text()).toBe("success"));
    expect(lines.find((l) => l.event === "push")).toMatchObject({ app: "wx-sample", msgId: fields.MsgId, type: "text", mode: "safe", outcome: "accepted" });
    expect(JSON.stringify(lines)).not.toContain("不要记录我");
  });

  // Each app accepts what its console sends in its mode; compatible and safe apps accept both encrypted formats.
  const accepts = {
    plaintext: ["bd-plain", "wx-doc"],
    compatible: ["bd-compat", "bd-shop", "wx-sample"],
    safe: ["bd-compat", "bd-shop", "wx-sample"],
  } as const;
  for (const format of ["xml", "json"] as const) {
    for (const mode of ["plaintext", "compatible", "safe"] as const) {
      it(`accepts a ${mode} ${format} push on the apps configured for it`, async () => {
        for (const app of accepts[mode]) {
          const fields = textPush({ Content: "多字节 ✓ & <b>" });
          const lines = await logsOf(async () => {
            const response = await sendPush(fields, { app, mode, format });
            expect(await response.text()).toBe("success");
          });
          expect(lines.find((l) => l.event === "push")).toMatchObject({ app, msgId: fields.MsgId, mode, outcome: "accepted" });
          const history = (await conversation(env, app, fields.FromUserName as string).snapshot())!.history;
          expect(received(history)[0]!.message.content).toBe("多字节 ✓ & <b>");
        }
      });
    }
  }

  it("reads only the encrypted copy of a compatible-mode push; a plaintext app reads the copy", async () => {
    for (const app of ["bd-shop", "bd-compat"] as const) {
      const fields = textPush({ Content: "the encrypted copy" });
      const sealed = sealFor(fields, { app, mode: "compatible", format: "json" });
      const body = JSON.parse(sealed.body);
      body.Content = "the plaintext copy"; // not covered by msg_signature: it must not count
      body.FromUserName = "someone-else";
      expect(await (await postRaw(`/push/${app}${queryString(sealed.query)}`, JSON.stringify(body), "application/json")).text()).toBe("success");
      const history = (await conversation(env, app, fields.FromUserName as string).snapshot())!.history;
      expect(received(history)[0]!.message.content).toBe("the encrypted copy");
      expect(await conversation(env, app, "someone-else").snapshot()).toBeNull();
    }
    const plain = textPush();
    let response!: Response;
    const lines = await logsOf(async () => {
      response = await sendPush(plain, { app: "bd-plain", mode: "compatible", format: "xml", encodingAesKey: baiduTicket.encodingAesKey });
    });
    expect(await response.text()).toBe("success");
    expect(lines.find((l) => l.event === "push")).toMatchObject({ app: "bd-plain", mode: "compatible", outcome: "accepted" });
  });

  it("accepts a JSON push labelled text/xml", async () => {
    const fields = textPush();
    const response = await postRaw(`/push/bd-plain${signedQuery("plaintoken")}`, encode({ ToUserName: "baidu-app", ...fields }, "json"), "text/xml");
    expect(await response.text()).toBe("success");
  });

  it("accepts Baidu's third-party envelope, signature inputs in the body, any trailing id", async () => {
    const fields = textPush();
    const response = await sendPush(fields, { app: "bd-shop", mode: "safe", format: "json", envelope: "body", trailingId: "20073496" });
    expect(await response.text()).toBe("success");
  });

  it("acknowledges Baidu's real ticket push (signed now)", async () => {
    const { token } = testApps["bd-shop"];
    const body = { Encrypt: baiduTicket.encrypt, TimeStamp: now(), Nonce: "n1" };
    const MsgSignature = sha1Signature(token, body.TimeStamp, body.Nonce, body.Encrypt);
    const response = await postRaw("/push/bd-shop", JSON.stringify({ ...body, MsgSignature }), "application/json");
    expect(await response.text()).toBe("success");
  });
});

describe("bad input", () => {
  it("401: missing or wrong signature, plaintext and encrypted", async () => {
    await expectError(await postRaw("/push/bd-plain", encode(textPush(), "xml")), 401, "bad_signature");
    const forged = encrypt(encode(textPush(), "xml"), wechatSample.appId, aesKey(wechatSample.encodingAesKey));
    const response = await postRaw(
      `/push/wx-sample${signedQuery("spamtest", { msg_signature: "a".repeat(40) })}`,
      `<xml><Encrypt><![CDATA[${forged}]]></Encrypt></xml>`,
    );
    // A valid plaintext `signature` does not excuse a wrong msg_signature.
    expect(await expectError(response, 401, "bad_signature")).toMatch(/msg_signature/);
  });

  it("404: unknown app", async () => {
    await expectError(await postRaw("/push/nope", "<xml/>"), 404, "unknown_app");
  });

  it("400: a body that is neither XML nor JSON, or malformed", async () => {
    const q = signedQuery("plaintoken");
    await expectError(await postRaw(`/push/bd-plain${q}`, "hello"), 400, "unsupported_body");
    await expectError(await postRaw(`/push/bd-plain${q}`, "{broken"), 400, "bad_json");
    await expectError(await postRaw(`/push/bd-plain${q}`, "<xml><a></xml>"), 400, "bad_xml");
    await expectError(await postRaw(`/push/bd-plain${q}`, new Uint8Array([0x3c, 0xff, 0xfe])), 400, "unsupported_body");
    await expectError(await postRaw(`/push/bd-plain${q}`, "<xml><MsgType>text</MsgType></xml>"), 400, "missing_field");
  });

  it("400, not 5xx: XML the parser refuses (reserved names)", async () => {
    const q = signedQuery("plaintoken");
    await expectError(await postRaw(`/push/bd-plain${q}`, "<xml><__proto__>x</__proto__></xml>"), 400, "bad_xml");
  });

  it("accepts a user message that merely mentions <!DOCTYPE html>", async () => {
    const fields = textPush({ Content: '<!DOCTYPE html><!ENTITY x "y">' });
    expect(await (await sendPush(fields, { app: "wx-sample", mode: "safe", format: "xml" })).text()).toBe("success");
  });

  it("400: XML with a DOCTYPE is refused, never expanded", async () => {
    const q = signedQuery("plaintoken");
    const bomb = '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]><xml><Content>&b;</Content></xml>';
    await expectError(await postRaw(`/push/bd-plain${q}`, bomb), 400, "xml_doctype");
  });

  it("400: broken envelope, bad base64, bad block length, bad padding, wrong trailing id", async () => {
    await expectError(await signedEncrypted("wx-sample", "", "<xml><Encrypt></Encrypt></xml>"), 400, "bad_envelope");
    await expectError(await signedEncrypted("wx-sample", "@@@@"), 400, "bad_base64");
    await expectError(await signedEncrypted("wx-sample", Buffer.alloc(40).toString("base64")), 400, "bad_block_length");
    // Encrypted with another key: decrypts to noise, caught by the padding or length checks.
    const otherKey = aesKey("ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut");
    const noise = await signedEncrypted("wx-sample", encrypt("<xml/>", wechatSample.appId, otherKey));
    expect(noise.status).toBe(400);
    const wrongApp = encrypt(encode(textPush(), "xml"), "wx0000000000000000", aesKey(wechatSample.encodingAesKey));
    await expectError(await signedEncrypted("wx-sample", wrongApp), 400, "wrong_trailing_id");
    const notAPush = encrypt("plain words", wechatSample.appId, aesKey(wechatSample.encodingAesKey));
    await expectError(await signedEncrypted("wx-sample", notAPush), 400, "bad_envelope");
  });

  it("401 wrong_mode, saying which mode the app expects, when the console and the configuration differ", async () => {
    const safeToPlain = await sendPush(textPush(), { app: "bd-plain", mode: "safe", format: "json", encodingAesKey: baiduTicket.encodingAesKey });
    expect(await expectError(safeToPlain, 401, "wrong_mode")).toMatch(/configured for plaintext mode/);
    const plainToSafe = await sendPush(textPush(), { app: "bd-shop", mode: "plaintext", format: "json" });
    expect(await expectError(plainToSafe, 401, "wrong_mode")).toMatch(/configured for safe mode/);
    const plainToCompatible = await sendPush(textPush(), { app: "bd-compat", mode: "plaintext", format: "xml" });
    expect(await expectError(plainToCompatible, 401, "wrong_mode")).toMatch(/configured for compatible mode/);
  });

  it("413: bodies over the limit, with or without Content-Length", async () => {
    const big = `<xml>${"x".repeat(PUSH_BODY_LIMIT)}</xml>`;
    await expectError(await postRaw("/push/bd-plain", big), 413, "body_too_large");
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 20; i++) controller.enqueue(new TextEncoder().encode("y".repeat(8192)));
        controller.close();
      },
    });
    await expectError(await postRaw("/push/bd-plain", stream), 413, "body_too_large");
  });

  it("logs every rejection as one JSON line with the reason and no secrets", async () => {
    const lines = await logsOf(() => signedEncrypted("wx-sample", "@@@@"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ event: "push", app: "wx-sample", outcome: "rejected", code: "bad_base64", status: 400 });
    expect(lines[0]!.reason).toMatch(/base64/);
    const text = JSON.stringify(lines);
    for (const secret of [wechatSample.token, wechatSample.encodingAesKey]) expect(text).not.toContain(secret);
  });

  it("503 naming no field when the configuration is missing or invalid; /health with the key names them", async () => {
    const request = () => new Request("https://kefu.test/push/demo", { method: "POST", body: "<xml/>" });
    const missing = await worker.fetch(request(), {});
    expect(await expectError(missing, 503, "config_invalid")).toBe("configuration is invalid: GET /health with the API key lists the problems");
    const env = {
      KEFU_API_KEY: "k1",
      KEFU_APPS: JSON.stringify({ demo: { platform: "qq", token: "" }, x: { platform: "wechat", token: "t", encodingAesKey: "short" } }),
    };
    const invalid = await worker.fetch(request(), env);
    const message = await expectError(invalid, 503, "config_invalid");
    expect(message).not.toMatch(/KEFU_APPS|demo|platform/);
    const health = await worker.fetch(new Request("https://kefu.test/health"), env);
    expect(health.status).toBe(503);
    expect(await health.json()).toEqual({ ok: false });
    const detailed = await worker.fetch(new Request("https://kefu.test/health", { headers: { authorization: "Bearer k1" } }), env);
    expect(detailed.status).toBe(503);
    const { problems } = (await detailed.json()) as { problems: string[] };
    expect(problems.join("\n")).toMatch(/KEFU_APPS.demo.platform/);
    expect(problems.join("\n")).toMatch(/KEFU_APPS.x.encodingAesKey/);
    expect(problems.join("\n")).toMatch(/KEFU_APPS.x.appId/);
    const none = await worker.fetch(new Request("https://kefu.test/health", { headers: { authorization: "Bearer k1" } }), { KEFU_API_KEY: "k1" });
    expect(((await none.json()) as { problems: string[] }).problems).toContain(
      "KEFU_APPS is not set: give it a JSON object of apps (wrangler secret put KEFU_APPS)",
    );
  });
});
