// The benchmark's probes: the Worker of this tree plus two routes that isolate what an
// acknowledged push waits for locally — one Durable Object round trip, and one with a one-row
// SQLite commit — so the push's time can be split into the runtime's share and kefu-edge's own.
// Used by tools/bench.ts only (generated config); production never loads this file.

import { DurableObject } from "cloudflare:workers";

export class Probe extends DurableObject {
  noop(): number {
    return 1;
  }

  write(key: string): number {
    this.ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS probe (key TEXT PRIMARY KEY) WITHOUT ROWID");
    return this.ctx.storage.sql.exec("INSERT OR REPLACE INTO probe (key) VALUES (?)", key).rowsWritten;
  }
}

type ProbeEnv = { PROBE: DurableObjectNamespace<Probe> };

/** `worker` with GET /__probe/do and /__probe/do-write?key=… in front of it. */
export function withProbes(worker: ExportedHandler<never>): ExportedHandler<ProbeEnv> {
  return {
    ...(worker as ExportedHandler<ProbeEnv>),
    async fetch(request, env, ctx) {
      const url = new URL(request.url);
      if (url.pathname === "/__probe/do" || url.pathname === "/__probe/do-write") {
        const key = url.searchParams.get("key") ?? "k";
        const probe = env.PROBE.getByName(url.searchParams.get("object") ?? "probe"); // one per user, as conversations
        const answer = url.pathname === "/__probe/do" ? await probe.noop() : await probe.write(key);
        return new Response(String(answer));
      }
      return worker.fetch!(request as never, env as never, ctx);
    },
  };
}
