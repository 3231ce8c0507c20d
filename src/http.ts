import { KefuError } from "./protocol/errors.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/** Reads a request body as UTF-8 text, refusing more than `limit` bytes without buffering them. */
export async function readText(request: Request, limit: number): Promise<string> {
  const tooLarge = () => new KefuError("body_too_large", `body exceeds the ${limit}-byte limit`);
  if (Number(request.headers.get("content-length")) > limit) throw tooLarge();
  if (!request.body) return "";
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      throw tooLarge();
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  try {
    return utf8.decode(bytes);
  } catch {
    throw new KefuError("unsupported_body", "body is not valid UTF-8");
  }
}
