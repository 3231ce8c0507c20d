// The benchmark's instrumented Worker: wraps a kefu-edge build (this one or an earlier commit, see
// tools/bench.ts) so every billable operation it makes is counted, in the bench only. Production
// code carries no counter: the bindings are wrapped here, on their way into the Worker and its
// Durable Objects, and the counts are read at GET /__bench/counters (POST resets them).
//
// What is counted, as Cloudflare bills it: KV reads and writes; Durable Object requests (each
// method call on a stub is one RPC session, calls on an RpcTarget it returns are part of that
// session; each alarm invocation); SQLite rows written and read (`cursor.rowsWritten` /
// `rowsRead` of every sql.exec, summed); queue operations (a message written, read — once per
// delivery, so retries count — and deleted); and Worker requests (fetch) and queue invocations.

import type { DurableObject } from "cloudflare:workers";

export interface Counters {
  workerRequests: number;
  queueInvocations: number;
  kvReads: number;
  kvWrites: number;
  doRequests: number;
  /** By binding (alarms apart). */
  doRequestsBy: Record<string, number>;
  alarms: number;
  rowsWritten: number;
  rowsRead: number;
  queueWrites: number;
  queueReads: number;
  queueDeletes: number;
}

const zero = (): Counters => ({
  workerRequests: 0,
  queueInvocations: 0,
  kvReads: 0,
  kvWrites: 0,
  doRequests: 0,
  doRequestsBy: {},
  alarms: 0,
  rowsWritten: 0,
  rowsRead: 0,
  queueWrites: 0,
  queueReads: 0,
  queueDeletes: 0,
});

let counts = zero();
/** Cursors are summed when read: rowsWritten is final only once a cursor has been consumed. */
let cursors: SqlStorageCursor<Record<string, SqlStorageValue>>[] = [];

function settleCursors(): void {
  for (const cursor of cursors) {
    counts.rowsWritten += cursor.rowsWritten;
    counts.rowsRead += cursor.rowsRead;
  }
  cursors = [];
}

type AnyEnv = Record<string, unknown>;
type DurableObjectClass = new (ctx: DurableObjectState, env: never) => DurableObject;

/** The entry module: the build's default export and its Durable Object classes (by name), instrumented. */
export function instrument(build: { default: ExportedHandler<never> } & Record<string, unknown>, classNames: readonly string[]) {
  const handler = build.default;
  const worker: ExportedHandler<AnyEnv> = {
    async fetch(request, env, ctx) {
      const { pathname } = new URL(request.url);
      if (pathname === "/__bench/counters") {
        settleCursors();
        const answer = Response.json(counts);
        if (request.method === "POST") counts = zero();
        return answer;
      }
      counts.workerRequests++;
      return handler.fetch!(request as never, wrapEnv(env) as never, ctx);
    },
    async queue(batch, env, ctx) {
      counts.queueInvocations++;
      counts.queueReads += batch.messages.length;
      const messages = batch.messages.map((message) => ({
        id: message.id,
        timestamp: message.timestamp,
        body: message.body,
        attempts: message.attempts,
        ack: () => {
          counts.queueDeletes++;
          message.ack();
        },
        retry: (options?: QueueRetryOptions) => message.retry(options),
      }));
      const counted = {
        queue: batch.queue,
        messages,
        ackAll: () => {
          counts.queueDeletes += messages.length;
          batch.ackAll();
        },
        retryAll: (options?: QueueRetryOptions) => batch.retryAll(options),
      };
      return handler.queue!(counted as never, wrapEnv(env) as never, ctx);
    },
  };
  const classes = Object.fromEntries(classNames.map((name) => [name, counted(build[name] as DurableObjectClass)]));
  return { worker, classes };
}

/** A Durable Object class whose storage and bindings are counted, and its alarms. */
function counted(Base: DurableObjectClass): DurableObjectClass {
  return class extends (Base as unknown as new (ctx: DurableObjectState, env: AnyEnv) => DurableObject<AnyEnv>) {
    constructor(ctx: DurableObjectState, env: AnyEnv) {
      countSql(ctx.storage.sql);
      super(ctx, wrapEnv(env));
    }

    override async alarm(info?: AlarmInvocationInfo): Promise<void> {
      counts.doRequests++;
      counts.alarms++;
      return (Base.prototype as DurableObject).alarm?.call(this, info);
    }
  } as unknown as DurableObjectClass;
}

function countSql(sql: SqlStorage): void {
  const exec = sql.exec;
  Object.defineProperty(sql, "exec", {
    value: (query: string, ...bindings: unknown[]) => {
      const cursor = exec.call(sql, query, ...bindings);
      cursors.push(cursor);
      return cursor;
    },
  });
}

const wrapped = new WeakMap<object, AnyEnv>();

function wrapEnv(env: AnyEnv): AnyEnv {
  const known = wrapped.get(env);
  if (known) return known;
  const counted: AnyEnv = { ...env };
  for (const [name, binding] of Object.entries(env)) {
    if (name === "DEDUPE") counted[name] = countKv(binding as KVNamespace);
    if (name === "CONVERSATIONS" || name === "DIRECTORY" || name === "ACCESS_TOKENS") counted[name] = countNamespace(name, binding as DurableObjectNamespace);
    if (name === "FORWARDS" || name === "SENDS") counted[name] = countQueue(binding as Queue);
  }
  wrapped.set(env, counted);
  return counted;
}

function countKv(kv: KVNamespace): KVNamespace {
  return new Proxy(kv, {
    get(target, property) {
      const value = Reflect.get(target, property) as unknown;
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (property === "get" || property === "getWithMetadata") counts.kvReads++;
        if (property === "put" || property === "delete") counts.kvWrites++;
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

function countQueue(queue: Queue): Queue {
  return {
    send: (body: unknown, options?: QueueSendOptions) => {
      counts.queueWrites++;
      return queue.send(body, options);
    },
    sendBatch: (messages: Iterable<MessageSendRequest>, options?: QueueSendBatchOptions) => {
      const list = [...messages];
      counts.queueWrites += list.length;
      return queue.sendBatch(list, options);
    },
  } as Queue;
}

function countNamespace(name: string, namespace: DurableObjectNamespace): DurableObjectNamespace {
  return new Proxy(namespace, {
    get(target, property) {
      const value = Reflect.get(target, property) as unknown;
      if (typeof value !== "function") return value;
      if (property === "get" || property === "getByName") {
        return (...args: unknown[]) => countStub(name, (value as (...a: unknown[]) => DurableObjectStub).apply(target, args));
      }
      return (value as (...a: unknown[]) => unknown).bind(target);
    },
  });
}

/** Every method called on the stub is one billed request (an RPC session, or a fetch). */
function countStub(name: string, stub: DurableObjectStub): DurableObjectStub {
  return new Proxy(stub, {
    get(target, property) {
      if (typeof property === "symbol" || property === "then" || property === "id" || property === "name") return Reflect.get(target, property);
      return (...args: unknown[]) => {
        counts.doRequests++;
        counts.doRequestsBy[name] = (counts.doRequestsBy[name] ?? 0) + 1;
        // Called on the stub itself: its methods are RPC properties, not functions with .apply.
        return (target as unknown as Record<string, (...a: unknown[]) => unknown>)[property]!(...args);
      };
    },
  });
}
