import { Validator } from "@cfworker/json-schema";
import { exports } from "cloudflare:workers";
import { expect } from "vitest";

/**
 * The app's /openapi.json, and checks of real answers and deliveries against it with an
 * independent JSON Schema validator (not the zod schemas the document came from, which would agree
 * with themselves whatever the generator dropped).
 */

export const DOC = "https://kefu.test/openapi.json";

export type Doc = {
  openapi: string;
  paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, unknown> }> }>>;
  webhooks: Record<string, unknown>;
  components: { schemas: Record<string, { description?: string }> };
};

export async function loadDocument(): Promise<Doc> {
  return (await (await exports.default.fetch(new Request(DOC))).json()) as Doc;
}

/** A JSON pointer into the document. */
export const pointer = (...parts: string[]) => `${DOC}#/${parts.map((p) => encodeURIComponent(p.replaceAll("~", "~0").replaceAll("/", "~1"))).join("/")}`;

export function validate(doc: Doc, ref: string, instance: unknown) {
  const validator = new Validator({ $ref: ref }, "2020-12", false);
  validator.addSchema(doc as never, DOC);
  return validator.validate(instance);
}

/** The answer is one the document lists for this operation, and its body fits the listed schema. */
export function expectDocumented(doc: Doc, method: string, path: string, answer: { status: number; body: unknown }) {
  const operation = doc.paths[path]?.[method];
  expect(operation, `${method} ${path} in the document`).toBeDefined();
  expect(Object.keys(operation!.responses), `${method} ${path}`).toContain(String(answer.status));
  const result = validate(doc, pointer("paths", path, method, "responses", String(answer.status), "content", "application/json", "schema"), answer.body);
  expect(result.valid, `${method} ${path} ${answer.status}: ${JSON.stringify(result.errors.slice(-3))}`).toBe(true);
}
