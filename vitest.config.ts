import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
import { testApps, WEBHOOK_SECRET } from "./test/fixtures/apps.ts";

export default defineConfig({
  plugins: [
    cloudflareTest(({ inject }) => {
      const standIn = inject("standInUrl");
      return {
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: {
          bindings: {
            KEFU_APPS: JSON.stringify(testApps),
            KEFU_API_KEY: "test-api-key",
            KEFU_WEBHOOK_URL: `${standIn}/webhook`,
            KEFU_WEBHOOK_SECRET: WEBHOOK_SECRET,
            BAIDU_API_BASE: standIn,
            WECHAT_API_BASE: standIn,
            KEFU_RETRY_DELAY_SECONDS: "0",
            KEFU_CALL_TIMEOUT_MS: "1000",
          },
          queueConsumers: {
            "kefu-forwards": { maxBatchTimeout: 0.05, maxRetries: 3, deadLetterQueue: "kefu-forwards-dlq" },
            "kefu-forwards-dlq": { maxBatchTimeout: 0.05 },
            "kefu-sends": { maxBatchTimeout: 0.05, maxRetries: 3, deadLetterQueue: "kefu-sends-dlq" },
            "kefu-sends-dlq": { maxBatchTimeout: 0.05 },
          },
        },
      };
    }),
  ],
  test: {
    globalSetup: ["./test/global-setup.ts"],
    setupFiles: ["./test/setup.ts"],
    // The Worker logs a JSON line per event; show them only for failing tests.
    silent: "passed-only",
  },
});
