import { describe, expect, it } from "vitest";
import { parseBody } from "../../src/protocol/codec.ts";
import { decodeText, parseXml, scanXml } from "../../src/protocol/xml.ts";
import { errorCode as code } from "../helpers.ts";

describe("XML, never expanding an entity", () => {
  it("decodes numeric character references and the five entities outside CDATA", () => {
    expect(parseXml("<xml><Content>&#20320;&#x597D;</Content></xml>").Content).toBe("你好");
    expect(parseXml("<xml><Content>&amp;lt; &lt;&gt;&quot;&apos; &#x1F44B;</Content></xml>").Content).toBe("&lt; <>\"' 👋");
    expect(parseXml("<xml><Content><![CDATA[&amp; &#20320;]]></Content></xml>").Content).toBe("&amp; &#20320;");
    expect(parseXml("<xml><Content>a &amp; <![CDATA[<b> &amp;]]> c</Content></xml>").Content).toBe("a & <b> &amp; c");
  });

  it("refuses any other reference instead of expanding or keeping it", () => {
    for (const text of ["&a;", "&nbsp;", "& ", "&#0;", "&#xD800;", "&#x110000;", "&#;", "&amp"]) {
      expect(
        code(() => parseXml(`<xml><Content>${text}</Content></xml>`)),
        text,
      ).toBe("bad_xml");
    }
  });

  it("refuses a DOCTYPE anywhere in the markup, however it is wrapped", () => {
    const attacks = [
      '<!DOCTYPE x [<!ENTITY a "AAAA">]><xml><Content>&a;</Content></xml>',
      '<!-- <![CDATA[ --><!DOCTYPE x [<!ENTITY a "AAAA">]><!-- ]]> --><xml><Content>&a;</Content></xml>',
      '<?xml version="1.0"?><!-- c --><!DOCTYPE x><xml><Content>x</Content></xml>',
      "<xml><!DOCTYPE x><Content>x</Content></xml>",
      '<xml><Content>x</Content><!ENTITY a "b"></xml>',
      "<xml><Content><![CDATA[x]]><!DOCTYPE y></Content></xml>",
      "<xml><Content>x</Content></xml><!DOCTYPE z>",
    ];
    for (const attack of attacks)
      expect(
        code(() => parseXml(attack)),
        attack,
      ).toBe("xml_doctype");
  });

  it("keeps a user's text that merely reads like markup", () => {
    expect(parseXml("<xml><Content><![CDATA[<!DOCTYPE html><!ENTITY x 'y'>]]></Content></xml>").Content).toBe("<!DOCTYPE html><!ENTITY x 'y'>");
    expect(parseXml("<xml><Content>&lt;!DOCTYPE html&gt;</Content></xml>").Content).toBe("<!DOCTYPE html>");
    expect(parseXml("<xml><!-- <!DOCTYPE x> --><Content>a</Content></xml>").Content).toBe("a");
  });

  it("bounds the work: depth, element count, one root, balanced tags", () => {
    const deep = "<a>".repeat(20) + "</a>".repeat(20);
    expect(() => scanXml(deep)).toThrow(/nested deeper/);
    const many = `<xml>${Array.from({ length: 600 }, (_, i) => `<F${i}>x</F${i}>`).join("")}</xml>`;
    expect(() => scanXml(many)).toThrow(/more than 64 elements/);
    expect(() => parseXml(`<xml><Content>${"x".repeat(16_385)}</Content></xml>`)).toThrow(/16384 characters of text outside CDATA/);
    expect(parseXml(`<xml><Content><![CDATA[${"x".repeat(40_000)}]]></Content></xml>`).Content).toHaveLength(40_000);
    expect(() => parseXml(`<xml><Content>${"&lt;".repeat(1025)}</Content></xml>`)).toThrow(/1024 character references/);
    expect(() => scanXml("<xml><a>1</a></xml><xml/>")).toThrow(/more than one root/);
    expect(() => scanXml("<xml><a>1</b></xml>")).toThrow(/closes <a>/);
    expect(() => scanXml("<xml><a>1</a>")).toThrow(/not closed/);
    expect(() => scanXml("<xml><a>1 < 2</a></xml>")).toThrow(/&lt;/);
    expect(() => scanXml("<xml><a>1</a><a>2</a></xml>")).toThrow(/appears twice/);
  });

  it("finds the envelope's fields without parsing the rest", () => {
    const leaves = scanXml("<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt>abc=</Encrypt><Nested><x>1</x></Nested><Empty/></xml>");
    expect(Object.fromEntries(leaves)).toEqual({ ToUserName: "gh", Encrypt: "abc=", Empty: "" });
  });

  it("gives nested elements as objects, as the parser reads them", () => {
    const { fields } = parseBody("<xml><MsgType>event</MsgType><Info><A>1</A><B>&#65;</B></Info></xml>");
    expect(fields).toEqual({ MsgType: "event", Info: { A: "1", B: "A" } });
  });

  it("decodeText leaves text without references untouched", () => {
    const text = "plain text, no references";
    expect(decodeText(text)).toBe(text);
  });
});
