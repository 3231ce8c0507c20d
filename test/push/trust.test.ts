import { describe, expect, it } from "vitest";
import { conversation } from "../../src/conversation/conversation.ts";
import { aesKey, encrypt } from "../../src/protocol/cipher.ts";
import { encode, queryString, sealPush } from "../../src/protocol/seal.ts";
import { sha1Signature } from "../../src/protocol/signature.ts";
import { PUSH_BODY_LIMIT } from "../../src/protocol/push.ts";
import { testApps } from "../fixtures/apps.ts";
import { env, logsOf, postRaw, sealFor, sendPush, textPush, uniqueId, webhookDeliveries, received } from "../helpers.ts";

/** Each attack of the trust issue, as an attacker would try it on the public push URL. */

const now = () => Math.floor(Date.now() / 1000);

async function refused(response: Response, status: number, code: string): Promise<string> {
  expect(response.status).toBe(status);
  const { error } = (await response.json()) as { error: { code: string; message: string } };
  expect(error.code).toBe(code);
  return error.message;
}

const historyOf = async (app: string, openid: string) => (await conversation(env, app, openid).snapshot())?.history ?? [];

describe("a leaked signature triple", () => {
  it("cannot carry a forged plaintext push into a safe-mode app", async () => {
    // A genuine safe-mode WeChat push, as seen in a log line or a proxy.
    const genuine = sealFor(textPush(), { app: "wx-sample", mode: "safe", format: "xml" });
    const victim = uniqueId("victim");
    const forged = encode(
      { ToUserName: "gh_10f6c3c3ac5a", FromUserName: victim, CreateTime: now(), MsgType: "text", Content: "退款给我", MsgId: "123456789" },
      "xml",
    );
    for (const query of [genuine.query, { signature: genuine.query.signature!, timestamp: genuine.query.timestamp!, nonce: genuine.query.nonce! }]) {
      const message = await refused(await postRaw(`/push/wx-sample${queryString(query)}`, forged), 401, "wrong_mode");
      expect(message).toMatch(/safe mode/);
    }
    // And the compatible format's plaintext copy, with a foreign Encrypt beside it, does not count either.
    const withCopy = encode({ ToUserName: "gh_10f6c3c3ac5a", FromUserName: victim, CreateTime: now(), MsgType: "text", Content: "x", Encrypt: "AAAA" }, "xml");
    await refused(await postRaw(`/push/wx-sample${queryString(genuine.query)}`, withCopy), 401, "bad_signature");
    expect(await historyOf("wx-sample", victim)).toEqual([]);
    expect(await webhookDeliveries(victim)).toEqual([]);
  });

  it("expires: a signed timestamp beyond the tolerance is refused, for pushes and the handshake", async () => {
    for (const skew of [-310, 310, 86_400 * 365]) {
      const timestamp = String(now() - skew);
      const fields = textPush();
      const plain = sealFor(fields, { app: "bd-plain", timestamp });
      const message = await refused(await postRaw(`/push/bd-plain${queryString(plain.query)}`, plain.body), 401, "expired_signature");
      expect(message).toMatch(/300 s tolerance/);
      // Baidu's envelope: the timestamp signed in the body.
      const envelope = sealFor(fields, { app: "bd-shop", envelope: "body", format: "json", timestamp });
      await refused(await postRaw("/push/bd-shop", envelope.body, "application/json"), 401, "expired_signature");
      const signature = sha1Signature("plaintoken", timestamp, "n");
      const handshake = await postRaw(`/push/bd-plain${queryString({ signature, timestamp, nonce: "n", echoStr: "e" })}`, "");
      await refused(handshake, 401, "expired_signature");
    }
    // Within the tolerance a retry is still a retry: answered, recorded once.
    const fields = textPush();
    const retry = sealFor(fields, { app: "bd-plain", timestamp: String(now() - 250) });
    for (let i = 0; i < 2; i++) expect(await (await postRaw(`/push/bd-plain${queryString(retry.query)}`, retry.body)).text()).toBe("success");
    expect(await historyOf("bd-plain", fields.FromUserName as string)).toHaveLength(1);
  });
});

describe("hostile XML", () => {
  const wrapped = (inner: string) => `<!-- <![CDATA[ --><!DOCTYPE x [<!ENTITY a "AAAA">]><!-- ]]> -->${inner}`;

  it("refuses a DOCTYPE hidden behind CDATA-in-comment tricks, in the body and inside Encrypt", async () => {
    const openid = uniqueId("o");
    const body = wrapped(
      `<xml><ToUserName>baidu-app</ToUserName><FromUserName>${openid}</FromUserName><CreateTime>${now()}</CreateTime><MsgType>text</MsgType><Content>&a;</Content></xml>`,
    );
    const plain = sealFor(textPush(), { app: "bd-plain" });
    await refused(await postRaw(`/push/bd-plain${queryString(plain.query)}`, body), 400, "xml_doctype");
    // The same inside a correctly signed, encrypted payload.
    const { token, encodingAesKey, appId } = testApps["wx-sample"];
    const encrypted = encrypt(body, appId, aesKey(encodingAesKey));
    const timestamp = String(now());
    const query = { timestamp, nonce: "1", encrypt_type: "aes", msg_signature: sha1Signature(token, timestamp, "1", encrypted) };
    await refused(await postRaw(`/push/wx-sample${queryString(query)}`, `<xml><Encrypt><![CDATA[${encrypted}]]></Encrypt></xml>`), 400, "xml_doctype");
    // An entity that was never declared is not expanded either.
    const undeclared = `<xml><ToUserName>baidu-app</ToUserName><FromUserName>${openid}</FromUserName><CreateTime>${now()}</CreateTime><MsgType>text</MsgType><Content>&a;</Content></xml>`;
    await refused(await postRaw(`/push/bd-plain${queryString(plain.query)}`, undeclared), 400, "bad_xml");
    expect(await historyOf("bd-plain", openid)).toEqual([]);
  });

  it("checks the signature before it parses: an unsigned hostile body is a 401, not a parser error", async () => {
    const bomb = wrapped("<xml><Content>&a;</Content></xml>");
    for (const app of ["bd-plain", "bd-shop", "wx-sample"]) {
      const message = await refused(await postRaw(`/push/${app}`, bomb), 401, "bad_signature");
      expect(message).toMatch(/no signature/);
      await refused(await postRaw(`/push/${app}`, "{ not even json"), 401, "bad_signature");
    }
    // A wrong plaintext signature is refused before the body is looked at.
    await refused(await postRaw(`/push/bd-plain?signature=${"0".repeat(40)}&timestamp=${now()}&nonce=1`, bomb), 401, "bad_signature");
  });

  it("decodes character references in text to what the user wrote", async () => {
    const openid = uniqueId("o");
    const body = `<xml><ToUserName>baidu-app</ToUserName><FromUserName>${openid}</FromUserName><CreateTime>${now()}</CreateTime><MsgType>text</MsgType><Content>&#20320;&#x597D; &amp;lt;</Content><MsgId>${Date.now()}</MsgId></xml>`;
    const plain = sealFor(textPush(), { app: "bd-plain" });
    expect(await (await postRaw(`/push/bd-plain${queryString(plain.query)}`, body)).text()).toBe("success");
    expect(received(await historyOf("bd-plain", openid))[0]!.message.content).toBe("你好 &lt;");
  });

  it("answers in its own words: no parser internals, no stack-depth errors", async () => {
    const plain = sealFor(textPush(), { app: "bd-plain" });
    const q = queryString(plain.query);
    const deepJson = "[".repeat(PUSH_BODY_LIMIT / 2) + "]".repeat(PUSH_BODY_LIMIT / 2);
    expect(await refused(await postRaw(`/push/bd-plain${q}`, `{"a":${deepJson.slice(0, PUSH_BODY_LIMIT - 10)}}`), 400, "bad_json")).toMatch(
      /more than 32 objects/,
    );
    expect(await refused(await postRaw(`/push/bd-plain${q}`, `{"a":[1,2}`), 400, "bad_json")).toBe("body is not valid JSON");
    const deepXml = "<a>".repeat(5000) + "</a>".repeat(5000);
    expect(await refused(await postRaw(`/push/bd-plain${q}`, deepXml), 400, "bad_xml")).toMatch(/nested deeper than 8/);
  });
});

describe("distinct messages stay distinct", () => {
  it("three different texts in one second without MsgId are three messages; their retries are not", async () => {
    const openid = uniqueId("o");
    const at = now();
    for (const Content of ["一", "二", "三"]) {
      const fields = { FromUserName: openid, CreateTime: at, MsgType: "text", Content };
      for (let i = 0; i < 2; i++) expect(await (await sendPush(fields, { app: "bd-shop", format: "json" })).text()).toBe("success");
    }
    const history = await historyOf("bd-shop", openid);
    expect(
      received(history)
        .map((h) => h.message.content)
        .sort(),
    ).toEqual(["一", "三", "二"].sort());
  });

  it("refuses MsgIds that are not 64-bit decimal integers, and reads 007 as 7", async () => {
    for (const MsgId of ["1e30", "1.5", "-5", "18446744073709551616"]) {
      const message = await refused(await sendPush(textPush({ MsgId }), { app: "bd-shop", format: "json" }), 400, "bad_field");
      expect(message).toMatch(/MsgId/);
    }
    const openid = uniqueId("o");
    for (const MsgId of ["0077", "77"]) await sendPush(textPush({ FromUserName: openid, MsgId }), { app: "wx-sample" });
    const history = await historyOf("wx-sample", openid);
    expect(received(history).map((h) => h.message.msgId)).toEqual(["77"]);
  });

  it("refuses an openid longer than 128 characters", async () => {
    await refused(await sendPush(textPush({ FromUserName: "o".repeat(129) }), { app: "wx-sample" }), 400, "bad_field");
  });
});

describe("one app's pushes stay its own", () => {
  it("a Baidu app refuses a push addressed to another appId, even with the same Token and key", async () => {
    const fields = textPush({ ToUserName: testApps["bd-shop"].appId });
    expect(await (await sendPush(fields, { app: "bd-shop" })).text()).toBe("success");
    let response!: Response;
    const lines = await logsOf(async () => {
      response = await sendPush(fields, { app: "bd-twin" });
    });
    expect(await refused(response, 403, "wrong_app")).toMatch(/ToUserName/);
    expect(lines.find((l) => l.event === "push")).toMatchObject({ app: "bd-twin", outcome: "rejected", code: "wrong_app", status: 403 });
    expect(await historyOf("bd-twin", fields.FromUserName as string)).toEqual([]);
  });
});

describe("the body limit", () => {
  it("takes the largest genuine push with room to spare, and refuses one byte more than the limit", async () => {
    // The longest text we allow for: 8,192 characters of 3-byte UTF-8, sent in compatible mode.
    const fields = textPush({ Content: "长".repeat(8192) });
    const sealed = sealPush(
      { ToUserName: "16824787", ...fields },
      {
        token: testApps["bd-compat"].token,
        encodingAesKey: testApps["bd-compat"].encodingAesKey,
        mode: "compatible",
        format: "xml",
      },
    );
    const size = new TextEncoder().encode(sealed.body).length;
    expect(size * 1.2).toBeLessThan(PUSH_BODY_LIMIT);
    expect(await (await postRaw(`/push/bd-compat${queryString(sealed.query)}`, sealed.body)).text()).toBe("success");
    await refused(await postRaw(`/push/bd-compat${queryString(sealed.query)}`, "x".repeat(PUSH_BODY_LIMIT + 1)), 413, "body_too_large");
  });
});
