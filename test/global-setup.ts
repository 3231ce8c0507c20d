import type { TestProject } from "vitest/node";
import { startStandIn } from "../tools/stand-in.ts";
import { WEBHOOK_SECRET } from "./fixtures/apps.ts";

/** Runs in Node before the workerd tests: the local stand-in of Baidu, WeChat and the business webhook. */
export default async function setup(project: TestProject) {
  const standIn = await startStandIn({ webhookSecret: WEBHOOK_SECRET });
  project.provide("standInUrl", standIn.url);
  return () => standIn.close();
}

declare module "vitest" {
  interface ProvidedContext {
    standInUrl: string;
  }
}
