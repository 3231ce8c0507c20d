import type { TestProject } from "vitest/node";
import { startStandIn } from "../tools/stand-in.ts";
import { WEBHOOK_SECRET } from "./fixtures/apps.ts";

/** Runs in Node before the workerd tests: the local stand-in of Baidu, WeChat and the business webhook. */
export default async function setup(project: TestProject) {
  const standIn = await startStandIn({ webhookSecret: WEBHOOK_SECRET });
  project.provide("standInUrl", standIn.url);
  // FUZZ_RUNS=100000 npm test: a longer property-test run than the default.
  project.provide("fuzzRuns", Number(process.env.FUZZ_RUNS) || 0);
  return () => standIn.close();
}

declare module "vitest" {
  interface ProvidedContext {
    standInUrl: string;
    fuzzRuns: number;
  }
}
