import { describe, expect, it } from "vitest";
import { dedupeKey, parseBody, seenKey, toMessage } from "../../src/protocol/codec.ts";
import { errorCode } from "../helpers.ts";
import { encode } from "../../src/protocol/seal.ts";

const code = errorCode;

const text = {
  ToUserName: "gh_10f6c3c3ac5a",
  FromUserName: "oyORnuP8q7ou2gfYjqLzSIWZf0rs",
  CreateTime: "1409735668",
  MsgType: "text",
  Content: "  你好 <world> & ]]> 👋  ",
  MsgId: "6054768590064713728",
};

describe("codec", () => {
  it("decodes XML and JSON the same, with MsgId exact beyond 2^53", () => {
    for (const format of ["xml", "json"] as const) {
      const { format: detected, fields } = parseBody(encode(text, format));
      expect(detected).toBe(format);
      const message = toMessage(fields, "wechat", "wx-sample");
      expect(message).toMatchObject({
        platform: "wechat",
        app: "wx-sample",
        openid: text.FromUserName,
        to: text.ToUserName,
        createTime: 1409735668,
        type: "text",
        content: text.Content,
        msgId: "6054768590064713728",
      });
    }
    // JSON.parse alone would have rounded it:
    expect(String(JSON.parse('{"MsgId":6054768590064713728}').MsgId)).not.toBe("6054768590064713728");
  });

  it("decides the format from the body, whatever the header said", () => {
    expect(parseBody('\uFEFF \n{"MsgType":"text"}').format).toBe("json");
    expect(parseBody("\n <xml><MsgType>text</MsgType></xml>").format).toBe("xml");
  });

  it("decodes images, mini program pages and the tempsession event", () => {
    const image = toMessage(
      { FromUserName: "u", ToUserName: "t", CreateTime: 1, MsgType: "image", PicUrl: "https://p/1.jpg", MediaId: "m1", MsgId: 5 },
      "wechat",
      "a",
    );
    expect(image).toMatchObject({ type: "image", picUrl: "https://p/1.jpg", mediaId: "m1", msgId: "5" });

    const page = toMessage(
      parseBody(
        "<xml><ToUserName><![CDATA[gh]]></ToUserName><FromUserName><![CDATA[u]]></FromUserName><CreateTime>2</CreateTime><MsgType><![CDATA[miniprogrampage]]></MsgType><MsgId>9</MsgId><Title><![CDATA[T]]></Title><AppId><![CDATA[wxa]]></AppId><PagePath><![CDATA[pages/i?x=1]]></PagePath><ThumbUrl><![CDATA[https://t]]></ThumbUrl><ThumbMediaId><![CDATA[tm]]></ThumbMediaId></xml>",
      ).fields,
      "wechat",
      "a",
    );
    expect(page).toMatchObject({ title: "T", appId: "wxa", pagePath: "pages/i?x=1", thumbUrl: "https://t", thumbMediaId: "tm" });

    const event = toMessage(
      { FromUserName: "u", ToUserName: "t", CreateTime: 3, MsgType: "event", Event: "user_enter_tempsession", SessionFrom: "sf" },
      "wechat",
      "a",
    );
    expect(event).toMatchObject({ type: "event", event: "user_enter_tempsession", sessionFrom: "sf" });
    expect(event.msgId).toBeUndefined();
    expect(dedupeKey(event)).toMatch(/^evt:u:3:user_enter_tempsession:[\w-]{22}$/);
  });

  it("keeps unknown types and fields instead of rejecting them", () => {
    const message = toMessage(parseBody('{"FromUserName":"u","CreateTime":4,"MsgType":"video","VideoUrl":"v","MsgId":1}').fields, "baidu", "b");
    expect(message.type).toBe("video");
    expect(message.raw.VideoUrl).toBe("v");
  });

  it("names the missing field", () => {
    expect(() => toMessage({ CreateTime: 1, MsgType: "text" }, "baidu", "b")).toThrow(/FromUserName/);
    expect(() => toMessage({ FromUserName: "u", CreateTime: 1 }, "baidu", "b")).toThrow(/MsgType/);
    expect(() => toMessage({ FromUserName: "u", MsgType: "text" }, "baidu", "b")).toThrow(/CreateTime/);
  });

  it("rejects bodies that are neither XML nor JSON objects", () => {
    expect(code(() => parseBody(""))).toBe("unsupported_body");
    expect(code(() => parseBody("hello"))).toBe("unsupported_body");
    expect(code(() => parseBody("{not json"))).toBe("bad_json");
    expect(code(() => parseBody("<xml><a></xml>"))).toBe("bad_xml");
    expect(code(() => parseBody("<xml>text only</xml>"))).toBe("bad_xml");
  });

  it("refuses XML the parser cannot take, as bad_xml", () => {
    expect(code(() => parseBody("<xml><__proto__>x</__proto__></xml>"))).toBe("bad_xml");
    expect(code(() => parseBody("<xml><constructor>x</constructor></xml>"))).toBe("bad_xml");
  });

  it("lets a message quote a DOCTYPE inside CDATA", () => {
    const { fields } = parseBody('<xml><Content><![CDATA[<!DOCTYPE html> & <!ENTITY x "y">]]></Content></xml>');
    expect(fields.Content).toBe('<!DOCTYPE html> & <!ENTITY x "y">');
  });

  it("never expands DOCTYPE entities", () => {
    const bomb = '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><xml><Content>&lol2;</Content></xml>';
    expect(code(() => parseBody(bomb))).toBe("xml_doctype");
    const xxe = '<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><Content>&x;</Content></xml>';
    expect(code(() => parseBody(xxe))).toBe("xml_doctype");
  });

  it("never merges two messages: without MsgId the key covers the content", () => {
    const at = { FromUserName: "u", CreateTime: 5, MsgType: "text" };
    const keys = ["一", "二", "三"].map((Content) => dedupeKey(toMessage({ ...at, Content }, "baidu", "b")));
    expect(new Set(keys).size).toBe(3);
    // A retry is an exact copy, whatever order its fields came in.
    const again = toMessage({ Content: "一", MsgType: "text", CreateTime: 5, FromUserName: "u" }, "baidu", "b");
    expect(dedupeKey(again)).toBe(keys[0]);
  });

  it("takes MsgId only as a 64-bit decimal integer, in canonical form", () => {
    const withId = (MsgId: unknown) => () => toMessage({ FromUserName: "u", CreateTime: 5, MsgType: "text", MsgId } as never, "baidu", "b");
    for (const bad of ["1e30", "1.5", "-5", "18446744073709551616", "0x10", " 7", "abc"]) expect(code(withId(bad)), bad).toBe("bad_field");
    expect(withId("18446744073709551615")().msgId).toBe("18446744073709551615");
    expect(withId("007")().msgId).toBe("7");
    // As JSON numbers, the text sent is judged, not what JSON.parse makes of it.
    for (const bad of ["1e30", "1.5", "-5", "1E3"]) {
      const { fields } = parseBody(`{"FromUserName":"u","CreateTime":5,"MsgType":"text","MsgId":${bad}}`);
      expect(
        code(() => toMessage(fields, "baidu", "b")),
        bad,
      ).toBe("bad_field");
    }
  });

  it("refuses an openid longer than 128 characters, and keeps KV keys within 512 bytes", () => {
    expect(code(() => toMessage({ FromUserName: "o".repeat(129), CreateTime: 5, MsgType: "text" }, "baidu", "b"))).toBe("bad_field");
    const longest = toMessage({ FromUserName: "用".repeat(128), CreateTime: 5, MsgType: "event", Event: "e".repeat(4000) }, "wechat", "a".repeat(64));
    const key = seenKey("a".repeat(64), longest);
    expect(new TextEncoder().encode(key).length).toBeLessThanOrEqual(512);
    expect(seenKey("a".repeat(64), longest)).toBe(key);
    expect(seenKey("shop", toMessage({ FromUserName: "u", CreateTime: 5, MsgType: "text", MsgId: "9" }, "baidu", "b"))).toBe("shop/u/msg:9");
  });
});
