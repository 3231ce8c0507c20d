import { app } from "./app.ts";
import { forwardBatch, forwardDeadLetters } from "./dispatch/forward.ts";
import { sendBatch, sendDeadLetters } from "./dispatch/send.ts";
import type { Env } from "./env.ts";

export { Conversation } from "./conversation/conversation.ts";
export { Directory } from "./conversation/directory.ts";
export { AccessTokens } from "./dispatch/tokens.ts";
export { Authorizer, ThirdParty } from "./tp/credentials.ts";

/** Queue consumers by queue name (wrangler.toml). */
const consumers: Record<string, (batch: MessageBatch<never>, env: Env) => Promise<void>> = {
  "kefu-forwards": forwardBatch,
  "kefu-forwards-dlq": forwardDeadLetters,
  "kefu-sends": sendBatch,
  "kefu-sends-dlq": sendDeadLetters,
};

export default {
  fetch: app.fetch,
  async queue(batch, env) {
    const consume = consumers[batch.queue];
    if (!consume) throw new Error(`no consumer for queue ${batch.queue}`);
    await consume(batch as MessageBatch<never>, env);
  },
} satisfies ExportedHandler<Env>;
