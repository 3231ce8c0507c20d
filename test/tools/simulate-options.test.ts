import { describe, expect, it } from "vitest";
import { sealPush } from "../../src/protocol/seal.ts";
import { refusal, tpRefusal } from "../../tools/simulate-options.ts";

const baidu = { platform: "baidu", encodingAesKey: "kefuEdgeDemoKey0123456789abcdefghijklmnopqr" } as const;
const wechat = { ...baidu, platform: "wechat" } as const;
const fields = { ToUserName: "10000001", FromUserName: "user-1", CreateTime: 1700000000, MsgType: "text", Content: "hi", MsgId: "1" };

describe("the simulator's options", () => {
  it("accepts what the platforms send, as in the README", () => {
    expect(refusal({}, baidu)).toBeUndefined();
    expect(refusal({ openid: "user-1", content: "你好", repeat: "3" }, baidu)).toBeUndefined();
    expect(refusal({ type: "image", "pic-url": "https://example.com/a.jpg", repeat: "3" }, baidu)).toBeUndefined();
    expect(refusal({ type: "event", event: "user_enter_tempsession" }, wechat)).toBeUndefined();
    expect(refusal({ envelope: "body", mode: "compatible" }, baidu)).toBeUndefined();
    expect(refusal({ handshake: true, envelope: "body" }, baidu)).toBeUndefined();
    expect(refusal({ mode: "plaintext" }, { platform: "wechat" })).toBeUndefined();
  });

  it("refuses the body envelope with plaintext, which would silently be an ordinary plaintext push", () => {
    expect(refusal({ envelope: "body", mode: "plaintext" }, baidu)).toMatch(/--envelope body .*--mode safe or compatible/);
    const sealed = sealPush(fields, { token: "t", mode: "plaintext", format: "json", envelope: "body" });
    expect(sealed.body).not.toContain("MsgSignature");
    expect(sealed.query.signature).toBeDefined();
  });

  it("refuses what no platform sends", () => {
    expect(refusal({ envelope: "body" }, wechat)).toMatch(/Baidu's third-party envelope/);
    expect(refusal({ handshake: true, envelope: "body" }, wechat)).toMatch(/WeChat's URL check is a GET/);
    expect(refusal({ handshake: true, content: "hi", repeat: "2" }, baidu)).toBe(
      "--handshake only checks the URL and sends no message: --content, --repeat cannot apply",
    );
    expect(refusal({ type: "image", content: "hi" }, baidu)).toBe("--content belongs to --type text, not to --type image");
    expect(refusal({ "pic-url": "https://example.com/a.jpg" }, baidu)).toBe("--pic-url belongs to --type image, not to --type text");
    expect(refusal({ type: "event", "msg-id": "1" }, wechat)).toMatch(/events carry no MsgId/);
    expect(refusal({ mode: "compatible" }, { platform: "baidu" })).toMatch(/no encodingAesKey/);
  });
});

describe("the simulator's third-party platform options", () => {
  it("accepts what Baidu sends a platform", () => {
    expect(tpRefusal({})).toBeUndefined();
    expect(tpRefusal({ tp: "demotp" })).toBeUndefined();
    expect(tpRefusal({ tp: "demotp", "tp-event": "ticket" })).toBeUndefined();
    expect(tpRefusal({ tp: "demotp", "tp-event": "AUTHORIZED", "app-id": "20000001", repeat: "2" })).toBeUndefined();
    expect(tpRefusal({ tp: "demotp", "app-id": "20000001", content: "你好" })).toBeUndefined();
    expect(tpRefusal({ tp: "demotp", handshake: true })).toBeUndefined();
  });

  it("refuses what no platform sends", () => {
    expect(tpRefusal({ "tp-event": "ticket" })).toMatch(/add --tp NAME/);
    expect(tpRefusal({ tp: "demotp", app: "demo-baidu" })).toMatch(/--app-id, not --app/);
    expect(tpRefusal({ tp: "demotp", mode: "compatible" })).toMatch(/safe mode only/);
    expect(tpRefusal({ tp: "demotp", format: "xml" })).toMatch(/JSON only/);
    expect(tpRefusal({ tp: "demotp", envelope: "query" })).toMatch(/body envelope only/);
    expect(tpRefusal({ tp: "demotp", "tp-event": "ticket", content: "hi" })).toMatch(/--content cannot apply/);
    expect(tpRefusal({ tp: "demotp", "tp-event": "ticket", handshake: true })).toMatch(/drop --tp-event/);
  });
});
