// The worst bodies an attacker can send to the push URL, for `npm run bench`: each is as large as
// the body limit allows and built to make one step of the inbound path work as hard as it can.
// Plaintext-mode ones carry a valid, fresh query signature (a leaked triple), so they get past
// the signature check and reach the parser; the safe-mode one has to be refused by the MAC.

import { PUSH_BODY_LIMIT } from "../src/protocol/push.ts";
import type { Params, SecurityMode } from "../src/protocol/push.ts";
import { sha1Signature } from "../src/protocol/signature.ts";

export interface HostileBody {
  name: string;
  mode: SecurityMode;
  query: Params;
  body: string;
}

const fill = (head: string, unit: string, tail: string) => head + unit.repeat(Math.floor((PUSH_BODY_LIMIT - head.length - tail.length) / unit.length)) + tail;
const fields = (count: number, content: (i: number) => string) => Array.from({ length: count }, (_, i) => `<F${i}>${content(i)}</F${i}>`).join("");
const user = "<FromUserName>u</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType>";

export function hostileBodies(token: string, now: number): HostileBody[] {
  const timestamp = String(Math.floor(now));
  const leaked = { signature: sha1Signature(token, timestamp, "n"), timestamp, nonce: "n" };
  const plain = (name: string, body: string): HostileBody => ({ name, mode: "plaintext", query: leaked, body });
  return [
    plain("XML nested as deep as the limit allows", fill("", "<a>", "")),
    plain("XML entity bomb behind comment/CDATA tricks", `<!-- <![CDATA[ --><!DOCTYPE x [${fill("", '<!ENTITY a "&a;&a;">', "")}]><xml/>`),
    plain("XML of character references, broken at the end", fill(`<xml>${user}<Content>`, "&#20320;&#x597D;&amp;", "</Content>")),
    plain("XML of tiny comments", fill("<xml>", "<!--x-->", "</xml>")),
    plain("XML of tiny CDATA sections", fill(`<xml>${user}<Content>`, "<![CDATA[x]]>", "</Content></xml>")),
    plain(
      "XML, every bound just met, accepted",
      `<xml>${user}<Content>${"&#20320;".repeat(1020)}${"x".repeat(16384 - 8160 - 300)}</Content>${fields(55, () => `<![CDATA[${"y".repeat(1200)}]]>`)}</xml>`,
    ),
    plain("JSON nested as deep as the limit allows", fill('{"a":', "[", "")),
    plain("JSON of tiny values", fill('{"FromUserName":"u","MsgType":"text","CreateTime":1,"a":[', "1,", "1]}")),
    plain(
      "JSON, 256 values, accepted",
      `{"FromUserName":"u","MsgType":"text","CreateTime":1,${Array.from({ length: 250 }, (_, i) => `"f${i}":${i % 2 ? "123456789012345678" : `"${"\\u4f60".repeat(50)}"`}`).join(",")}}`,
    ),
    {
      name: "safe mode: Encrypt as large as the limit, forged MAC",
      mode: "safe",
      query: { ...leaked, msg_signature: "0".repeat(40) },
      body: fill("<xml><Encrypt><![CDATA[", "A", "]]></Encrypt></xml>"),
    },
  ];
}
