import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { stripVTControlCharacters } from "node:util";
import { defineConfig } from "vitest/config";
import { testApps, WEBHOOK_SECRET } from "./test/fixtures/apps.ts";
import { testThirdParties } from "./test/fixtures/third-party.ts";

// Some tests make the stand-in drop connections or fail a message until its dead-letter queue, on
// purpose; workerd and miniflare report each such event on stderr/stdout although the Worker
// handles it. Exactly those lines are kept out of the output; anything else (and every test
// result) still shows.
const KNOWN_RUNTIME_NOISE = [
  /^uncaught exception; source = Uncaught \(in promise\); stack = Error: Network connection lost\.$/,
  /^uncaught exception; exception = workerd\/jsg\/value\.h:\d+: disconnected: jsg\.Error: Network connection lost\.$/,
  /^exception = rust\/worker\/ffi\.rs:\d+: disconnected: client error \(SendRequest\)$/,
  /^exception = kj\/async-io\.c\+\+:\d+: disconnected: read end of pipe was aborted$/,
  /^\[mf:warn\] Moving message "[0-9a-f]+" on queue "kefu-(forwards|sends)" to dead letter queue "kefu-\1-dlq" after \d+ failed attempts\.\.\.$/,
];
const WORKERD_STACK = /^stack:( \S+workerd@[0-9a-f]+)+$/;

function withoutKnownNoise(stream: NodeJS.WriteStream) {
  const write = stream.write.bind(stream) as (chunk: unknown, ...rest: unknown[]) => boolean;
  let dropped = false; // the previous line was noise: its workerd stack goes too
  stream.write = ((chunk: unknown, ...rest: unknown[]) => {
    if (typeof chunk !== "string" && !(chunk instanceof Uint8Array)) return write(chunk, ...rest);
    const lines: string[] = (typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8")).split("\n");
    const kept = lines.filter((line: string, i: number) => {
      if (i === lines.length - 1 && line === "") return true; // the chunk's final newline
      const plain = stripVTControlCharacters(line);
      dropped = KNOWN_RUNTIME_NOISE.some((noise) => noise.test(plain)) || (dropped && WORKERD_STACK.test(plain));
      return !dropped;
    });
    if (kept.length === lines.length) return write(chunk, ...rest);
    const text = kept.join("\n");
    if (text === "") {
      const callback = rest.find((arg) => typeof arg === "function") as (() => void) | undefined;
      callback?.();
      return true;
    }
    return write(text, ...rest);
  }) as typeof stream.write;
}
withoutKnownNoise(process.stdout);
withoutKnownNoise(process.stderr);

export default defineConfig({
  plugins: [
    cloudflareTest(({ inject }) => {
      const standIn = inject("standInUrl");
      return {
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: {
          bindings: {
            KEFU_APPS: JSON.stringify(testApps),
            KEFU_THIRD_PARTY: JSON.stringify(testThirdParties),
            BAIDU_AUTHORIZATION_PAGE: `${standIn}/mappconsole/tp/authorization`,
            KEFU_API_KEY: "test-api-key",
            KEFU_WEBHOOK_URL: `${standIn}/webhook`,
            KEFU_WEBHOOK_SECRET: WEBHOOK_SECRET,
            BAIDU_API_BASE: standIn,
            WECHAT_API_BASE: standIn,
            KEFU_RETRY_DELAY_SECONDS: "0",
            KEFU_CALL_TIMEOUT_MS: "1000",
            KEFU_FORWARD_ATTEMPTS: "4",
            KEFU_SEND_ATTEMPTS: "4",
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
