import { XMLParser } from "fast-xml-parser";
import { KefuError } from "./errors.ts";

/**
 * XML push bodies, read without ever expanding an entity (docs/protocol.md §3).
 *
 * `scanXml` is one linear pass over the markup, bounded by the body limit: it refuses any
 * declaration (`<!DOCTYPE`, `<!ENTITY`, … anywhere, however it is wrapped), unbalanced tags, deep
 * nesting, too many elements, and references other than the five predefined entities and numeric
 * character references. It returns the root's leaf children, decoded, which is all an envelope
 * needs (`Encrypt`, `MsgSignature`, …): a signature can be checked before anything else is parsed.
 * `parseXml` then lets fast-xml-parser build the fields — with its entity processing off — and
 * decodes the text outside CDATA sections itself.
 */

/** Nesting depth and element count no genuine push comes near (they are flat: root + fields). */
const MAX_DEPTH = 8;
const MAX_ELEMENTS = 512;

const NAME = /[A-Za-z_][\w.:-]*/y;
const START_TAG = /<([A-Za-z_][\w.:-]*)((?:\s+[\w.:-]+\s*=\s*(?:"[^"<]*"|'[^'<]*'))*)\s*(\/?)>/y;
const END_TAG = /<\/([A-Za-z_][\w.:-]*)\s*>/y;
/** Names that would reach an object's prototype when used as a key. */
const RESERVED = new Set(["__proto__", "constructor", "prototype"]);

const bad = (why: string) => new KefuError("bad_xml", `body is not a well-formed XML push: ${why}`);

/**
 * Checks the whole document and returns the decoded text of each leaf child of the root (a child
 * with elements inside is checked but not returned). Throws `xml_doctype` or `bad_xml`.
 */
export function scanXml(text: string): Map<string, string> {
  const leaves = new Map<string, string>();
  const open: string[] = [];
  let elements = 0;
  let rootDone = false;
  /** The root's child being read, while it has no elements of its own. */
  let leaf: { name: string; text: string } | undefined;
  let i = 0;
  while (i < text.length) {
    const lt = text.indexOf("<", i);
    const end = lt === -1 ? text.length : lt;
    if (end > i) {
      if (open.length === 0) {
        if (!/^\s*$/.test(text.slice(i, end))) throw bad("text outside the root element");
      } else {
        const decoded = decodeText(text.slice(i, end));
        if (leaf) leaf.text += decoded;
      }
    }
    if (lt === -1) break;
    if (text.startsWith("<!--", lt)) {
      const close = text.indexOf("-->", lt + 4);
      if (close === -1) throw bad("unterminated comment");
      i = close + 3;
    } else if (text.startsWith("<![CDATA[", lt)) {
      if (open.length === 0) throw bad("CDATA outside the root element");
      const close = text.indexOf("]]>", lt + 9);
      if (close === -1) throw bad("unterminated CDATA section");
      if (leaf) leaf.text += text.slice(lt + 9, close);
      i = close + 3;
    } else if (text.startsWith("<!", lt)) {
      throw new KefuError("xml_doctype", "XML with a DOCTYPE or other declaration is refused: entities are never expanded");
    } else if (text.startsWith("<?", lt)) {
      if (open.length > 0 || rootDone) throw bad("processing instruction inside the document");
      const close = text.indexOf("?>", lt + 2);
      if (close === -1) throw bad("unterminated processing instruction");
      i = close + 2;
    } else if (text[lt + 1] === "/") {
      END_TAG.lastIndex = lt;
      const match = END_TAG.exec(text);
      if (!match) throw bad("malformed end tag");
      const name = open.pop();
      if (name !== match[1]) throw bad(name ? `</${match[1]}> closes <${name}>` : `</${match[1]}> has no start tag`);
      if (open.length === 1 && leaf) {
        if (leaves.has(leaf.name)) throw bad(`<${leaf.name}> appears twice`);
        leaves.set(leaf.name, leaf.text);
      }
      if (open.length <= 1) leaf = undefined;
      if (open.length === 0) rootDone = true;
      i = END_TAG.lastIndex;
    } else {
      START_TAG.lastIndex = lt;
      const match = START_TAG.exec(text);
      if (!match) {
        NAME.lastIndex = lt + 1;
        throw bad(NAME.test(text) ? "malformed start tag" : "'<' that starts no tag (write &lt;)");
      }
      const name = match[1]!;
      if (RESERVED.has(name)) throw bad(`<${name}> is a reserved name`);
      if (rootDone) throw bad("more than one root element");
      if (++elements > MAX_ELEMENTS) throw bad(`more than ${MAX_ELEMENTS} elements`);
      if (open.length === 1 && leaves.has(name)) throw bad(`<${name}> appears twice`);
      leaf = open.length === 1 ? { name, text: "" } : undefined;
      if (match[3]) {
        if (open.length === 0) rootDone = true;
        else if (leaf) leaves.set(name, "");
        leaf = undefined;
      } else {
        open.push(name);
        if (open.length > MAX_DEPTH) throw bad(`nested deeper than ${MAX_DEPTH} elements`);
      }
      i = START_TAG.lastIndex;
    }
  }
  if (open.length > 0) throw bad(`<${open.at(-1)}> is not closed`);
  if (!rootDone) throw bad("no root element");
  return leaves;
}

const REFERENCE = /&(?:(lt|gt|amp|quot|apos)|#([0-9]{1,7})|#x([0-9A-Fa-f]{1,6}));|&/g;
const PREDEFINED: Record<string, string> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };

/** Character data outside CDATA: the five predefined entities and numeric references, nothing else. */
export function decodeText(raw: string): string {
  if (!raw.includes("&")) return raw;
  return raw.replace(REFERENCE, (whole, name: string | undefined, decimal: string | undefined, hex: string | undefined) => {
    if (name) return PREDEFINED[name]!;
    if (decimal === undefined && hex === undefined) {
      throw bad("an '&' that is neither one of the five XML entities nor a character reference (entities are never expanded)");
    }
    const code = decimal !== undefined ? Number(decimal) : parseInt(hex!, 16);
    if (!isXmlChar(code)) throw bad(`character reference ${whole} is not an XML character`);
    return String.fromCodePoint(code);
  });
}

function isXmlChar(code: number): boolean {
  return (
    code === 0x9 || code === 0xa || code === 0xd ||
    (code >= 0x20 && code <= 0xd7ff) || (code >= 0xe000 && code <= 0xfffd) || (code >= 0x10000 && code <= 0x10ffff)
  );
}

const CDATA = "#cdata";
const TEXT = "#text";

const parser = new XMLParser({
  preserveOrder: true, // text and CDATA keep their order, so each is decoded as what it is
  cdataPropName: CDATA,
  processEntities: false, // never: references are decoded by decodeText, entities never declared
  htmlEntities: false,
  ignoreAttributes: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  parseTagValue: false, // MsgId must stay an exact string; numbers are converted where known
  trimValues: false, // message content keeps its spaces
});

type Node = Record<string, unknown>;
export type XmlValue = string | { [name: string]: XmlValue | XmlValue[] };

/** An XML push → its root's children: text fields as strings, nested elements as objects. */
export function parseXml(text: string): Record<string, XmlValue> {
  scanXml(text);
  let document: Node[];
  try {
    document = parser.parse(text) as Node[];
  } catch {
    throw bad("the parser refused it");
  }
  const root = document.find((node) => !(TEXT in node));
  const children = root ? Object.values(root)[0] : undefined;
  if (!Array.isArray(children)) throw bad("no root element");
  const value = valueOf(children as Node[]);
  if (typeof value === "string") throw bad("the root element has no child elements");
  return value as Record<string, XmlValue>;
}

/** An element's content: its text when it has no child elements, else its children by name. */
function valueOf(children: Node[]): XmlValue {
  let text = "";
  let fields: Record<string, XmlValue | XmlValue[]> | undefined;
  for (const node of children) {
    if (TEXT in node) text += decodeText(String(node[TEXT]));
    else if (CDATA in node) text += (node[CDATA] as Node[]).map((part) => String(part[TEXT] ?? "")).join("");
    else {
      const name = Object.keys(node)[0]!;
      const value = valueOf(node[name] as Node[]);
      fields ??= {};
      const previous = fields[name];
      fields[name] = previous === undefined ? value : Array.isArray(previous) ? [...previous, value] : [previous, value];
    }
  }
  return fields ?? text;
}
