import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
import { testApps } from "./test/fixtures/apps.ts";

export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        bindings: {
          KEFU_APPS: JSON.stringify(testApps),
        },
      },
    }),
  ],
});
