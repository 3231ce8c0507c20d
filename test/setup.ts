import { listDurableObjectIds, runInDurableObject } from "cloudflare:test";
import { afterAll } from "vitest";
import { env, sleep } from "./helpers.ts";

/**
 * Each test file ends only once the work its pushes and replies started in the background (hand-offs,
 * forwards, sends) has settled: tearing a runtime down mid-alarm can stall the whole run.
 */
afterAll(async () => {
  const deadline = Date.now() + 10_000;
  for (const id of await listDurableObjectIds(env.CONVERSATIONS)) {
    const stub = env.CONVERSATIONS.get(id);
    while (Date.now() < deadline && (await busyWork(stub)) > 0) await sleep(25);
  }
  await sleep(50); // the last queue acks
});

function busyWork(stub: DurableObjectStub): Promise<number> {
  return runInDurableObject(stub, (_instance, state) => {
    const count = (sql: string) => state.storage.sql.exec<{ n: number }>(sql).one().n;
    return (
      count("SELECT count(*) AS n FROM handoffs") +
      count("SELECT count(*) AS n FROM messages WHERE forward = 'pending'") +
      count("SELECT count(*) AS n FROM replies WHERE status IN ('queued', 'sending')")
    );
  });
}
