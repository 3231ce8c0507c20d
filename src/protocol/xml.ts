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

/**
 * Bounds no genuine push comes near (they are flat: a root and a dozen fields, text in CDATA), so
 * that the worst body within the size limit costs a fraction of a millisecond to refuse.
 */
const MAX_DEPTH = 8;
const MAX_ELEMENTS = 64;
/** Tags, comments, CDATA sections and processing instructions, all counted. */
const MAX_MARKUP = 256;
/**
 * Characters outside CDATA in a document to be parsed: fast-xml-parser reads raw text a character
 * at a time. Platforms put text in CDATA; 16,384 still holds a long escaped text.
 */
const MAX_TEXT = 16_384;
const MAX_REFERENCES = 1024;

const NAME = /[A-Za-z_][\w.:-]*/y;
const START_TAG = /<([A-Za-z_][\w.:-]*)((?:\s+[\w.:-]+\s*=\s*(?:"[^"<]*"|'[^'<]*'))*)\s*(\/?)>/y;
const END_TAG = /<\/([A-Za-z_][\w.:-]*)\s*>/y;
const PLAIN_NAME = /^[A-Za-z_][\w.:-]*$/;

function startTag(text: string, at: number): RegExpExecArray {
  START_TAG.lastIndex = at;
  const match = START_TAG.exec(text);
  if (match) return match;
  NAME.lastIndex = at + 1;
  throw bad(NAME.test(text) ? "malformed start tag" : "'<' that starts no tag (write &lt;)");
}
/** Names that would reach an object's prototype when used as a key. */
const RESERVED = new Set(["__proto__", "constructor", "prototype"]);

const bad = (why: string) => new KefuError("bad_xml", `body is not a well-formed XML push: ${why}`);

/**
 * Checks the whole document and returns the decoded text of each leaf child of the root (a child
 * with elements inside is checked but not returned). Throws `xml_doctype` or `bad_xml`.
 */
export function scanXml(text: string): Map<string, string> {
  return scan(text, true);
}

/** The same checks before a full parse, which also bounds the text the parser will read. */
function checkXml(text: string): void {
  scan(text, false);
}

function scan(text: string, collect: boolean): Map<string, string> {
  const leaves = new Map<string, string>();
  const open: string[] = [];
  let elements = 0;
  let markup = 0;
  let plainText = 0;
  let references = 0;
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
        plainText += end - i;
        if (!collect && plainText > MAX_TEXT) throw bad(`more than ${MAX_TEXT} characters of text outside CDATA sections`);
        const amp = text.indexOf("&", i);
        if ((amp !== -1 && amp < end) || (collect && leaf)) {
          const chunk = text.slice(i, end);
          if (amp !== -1 && amp < end) {
            references += countOf(chunk, "&");
            if (references > MAX_REFERENCES) throw bad(`more than ${MAX_REFERENCES} character references`);
            if (!collect || !leaf) checkReferences(chunk);
          }
          if (collect && leaf) leaf.text += decodeText(chunk);
        }
      }
    }
    if (lt === -1) break;
    if (++markup > MAX_MARKUP) throw bad(`more than ${MAX_MARKUP} tags, comments and sections`);
    const next = text.charCodeAt(lt + 1);
    if (next === 33 /* ! */) {
      if (text.startsWith("<!--", lt)) {
        const close = text.indexOf("-->", lt + 4);
        if (close === -1) throw bad("unterminated comment");
        i = close + 3;
      } else if (text.startsWith("<![CDATA[", lt)) {
        if (open.length === 0) throw bad("CDATA outside the root element");
        const close = text.indexOf("]]>", lt + 9);
        if (close === -1) throw bad("unterminated CDATA section");
        if (collect && leaf) leaf.text += text.slice(lt + 9, close);
        i = close + 3;
      } else {
        throw new KefuError("xml_doctype", "XML with a DOCTYPE or other declaration is refused: entities are never expanded");
      }
    } else if (next === 63 /* ? */) {
      if (open.length > 0 || rootDone) throw bad("processing instruction inside the document");
      const close = text.indexOf("?>", lt + 2);
      if (close === -1) throw bad("unterminated processing instruction");
      i = close + 2;
    } else if (next === 47 /* / */) {
      const name = open.pop();
      const after = lt + 2 + (name?.length ?? 0);
      if (name !== undefined && text.startsWith(name, lt + 2) && text.charCodeAt(after) === 62 /* > */) {
        i = after + 1; // the usual </name>, without a regex
      } else {
        END_TAG.lastIndex = lt;
        const match = END_TAG.exec(text);
        if (!match) throw bad("malformed end tag");
        if (name !== match[1]) throw bad(name ? `</${match[1]}> closes <${name}>` : `</${match[1]}> has no start tag`);
        i = END_TAG.lastIndex;
      }
      if (open.length === 1 && leaf) leaves.set(leaf.name, leaf.text);
      if (open.length <= 1) leaf = undefined;
      if (open.length === 0) rootDone = true;
    } else {
      // The usual <Name>, without a regex; anything else (attributes, spaces, />) through START_TAG.
      const close = text.indexOf(">", lt);
      const simple = close !== -1 && PLAIN_NAME.test(text.slice(lt + 1, close));
      const match = simple ? undefined : startTag(text, lt);
      const name = simple ? text.slice(lt + 1, close) : match![1]!;
      if (RESERVED.has(name)) throw bad(`<${name}> is a reserved name`);
      if (rootDone) throw bad("more than one root element");
      if (++elements > MAX_ELEMENTS) throw bad(`more than ${MAX_ELEMENTS} elements`);
      if (open.length === 1 && leaves.has(name)) throw bad(`<${name}> appears twice`);
      leaf = open.length === 1 ? { name, text: "" } : undefined;
      if (match?.[3]) {
        if (open.length === 0) rootDone = true;
        else if (leaf) leaves.set(name, "");
        leaf = undefined;
      } else {
        open.push(name);
        if (open.length > MAX_DEPTH) throw bad(`nested deeper than ${MAX_DEPTH} elements`);
      }
      i = simple ? close + 1 : START_TAG.lastIndex;
    }
  }
  if (open.length > 0) throw bad(`<${open.at(-1)}> is not closed`);
  if (!rootDone) throw bad("no root element");
  return leaves;
}

const VALID_REFERENCES = /&(?!(?:lt|gt|amp|quot|apos|#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6});)/;
const PREDEFINED: Record<string, string> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };

function checkReferences(raw: string): void {
  if (VALID_REFERENCES.test(raw)) {
    throw bad("an '&' that is neither one of the five XML entities nor a character reference (entities are never expanded)");
  }
}

function countOf(text: string, char: string): number {
  let count = 0;
  for (let at = text.indexOf(char); at !== -1; at = text.indexOf(char, at + 1)) count++;
  return count;
}

/** Character data outside CDATA: the five predefined entities and numeric references, nothing else. */
export function decodeText(raw: string): string {
  if (!raw.includes("&")) return raw;
  checkReferences(raw);
  const parts = raw.split("&");
  let out = parts[0]!;
  for (let i = 1; i < parts.length; i++) {
    const part = parts[i]!;
    const semicolon = part.indexOf(";");
    const name = part.slice(0, semicolon);
    let char = PREDEFINED[name];
    if (char === undefined) {
      const code = name.charCodeAt(1) === 120 /* x */ ? parseInt(name.slice(2), 16) : Number(name.slice(1));
      if (!isXmlChar(code)) throw bad(`character reference &${name}; is not an XML character`);
      char = String.fromCodePoint(code);
    }
    out += char + part.slice(semicolon + 1);
  }
  return out;
}

function isXmlChar(code: number): boolean {
  return (
    code === 0x9 ||
    code === 0xa ||
    code === 0xd ||
    (code >= 0x20 && code <= 0xd7ff) ||
    (code >= 0xe000 && code <= 0xfffd) ||
    (code >= 0x10000 && code <= 0x10ffff)
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
  jPath: false, // no path strings built per tag: nothing here reads them
});

type Node = Record<string, unknown>;
export type XmlValue = string | { [name: string]: XmlValue | XmlValue[] };

/** An XML push → its root's children: text fields as strings, nested elements as objects. */
export function parseXml(text: string): Record<string, XmlValue> {
  checkXml(text);
  let document: Node[];
  try {
    document = parser.parse(text) as Node[];
  } catch {
    throw bad("the parser refused it");
  }
  const root = document.find((node) => !(TEXT in node));
  const children = root ? Object.values(root)[0] : undefined;
  if (!Array.isArray(children)) throw bad("no root element");
  const value = contentOf(children as Node[]);
  if (typeof value === "string") throw bad("the root element has no child elements");
  return value as Record<string, XmlValue>;
}

/** An element's content: its text when it has no child elements, else its children by name. */
function contentOf(children: Node[]): XmlValue {
  let text = "";
  let fields: Record<string, XmlValue | XmlValue[]> | undefined;
  for (const node of children) {
    if (TEXT in node) text += decodeText(String(node[TEXT]));
    else if (CDATA in node) text += (node[CDATA] as Node[]).map((part) => String(part[TEXT] ?? "")).join("");
    else {
      const name = Object.keys(node)[0]!;
      const value = contentOf(node[name] as Node[]);
      fields ??= {};
      const previous = fields[name];
      fields[name] = previous === undefined ? value : Array.isArray(previous) ? [...previous, value] : [previous, value];
    }
  }
  return fields ?? text;
}
