// Runs the Worker under `wrangler dev` as a child process: used by `npm start` and `npm run bench`.

import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const WRANGLER = fileURLToPath(new URL("../node_modules/wrangler/bin/wrangler.js", import.meta.url));
const STARTUP_TIMEOUT_MS = 120_000;
const STOP_GRACE_MS = 5_000;

export interface WranglerDevOptions {
  port: number;
  envFile: string;
  /** Another wrangler config than ./wrangler.toml (the benchmark's instrumented Worker). */
  config?: string;
  /** Extra variables, passed as `--var NAME:VALUE` (they win over the env file). */
  vars?: Record<string, string>;
  ip?: string;
  inspectorPort?: number;
  /** Local KV / Durable Object state; wrangler's default is .wrangler/state. */
  persistTo?: string;
  logLevel?: "debug" | "info" | "log" | "warn" | "error" | "none";
  /** Where wrangler's and the Worker's output goes: this terminal, an open file descriptor, or line by line to a function. */
  output?: "inherit" | number | ((line: string) => void);
}

// Local only: no telemetry, no fetch of `Request.cf` from workers.cloudflare.com (the Worker gets
// miniflare's placeholder), no wrangler banner and with it no update check against the npm registry.
const OFFLINE_ENV = {
  WRANGLER_SEND_METRICS: "false",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  WRANGLER_HIDE_BANNER: "true",
};

export interface WranglerDev {
  url: string;
  child: ChildProcess;
  /** Resolves with wrangler's exit code (null when it was ended by a signal). */
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

/** Starts `wrangler dev` and resolves once the Worker answers GET /health. */
export async function startWranglerDev(options: WranglerDevOptions): Promise<WranglerDev> {
  const args = [WRANGLER, "dev", "--env-file", options.envFile, "--port", String(options.port), "--show-interactive-dev-session=false"];
  if (options.config) args.push("--config", options.config);
  if (options.ip) args.push("--ip", options.ip);
  if (options.inspectorPort) args.push("--inspector-port", String(options.inspectorPort));
  if (options.persistTo) args.push("--persist-to", options.persistTo);
  if (options.logLevel) args.push("--log-level", options.logLevel);
  for (const [name, value] of Object.entries(options.vars ?? {})) args.push("--var", `${name}:${value}`);

  const output = options.output ?? "inherit";
  const stdio = typeof output === "function" ? "pipe" : output;
  // Its own process group, so stop() reaches wrangler and the workerd it spawns, and nothing else.
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    detached: true,
    stdio: ["ignore", stdio, stdio],
    env: { ...process.env, ...OFFLINE_ENV },
  });
  if (typeof output === "function") {
    for (const stream of [child.stdout, child.stderr]) if (stream) createInterface({ input: stream }).on("line", output);
  }
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  // Should this process die without calling stop(), take the Worker down with it.
  const killOnExit = () => signalGroup(child, "SIGKILL");
  process.once("exit", killOnExit);

  const url = `http://${options.ip ?? "localhost"}:${options.port}`;
  let stopping: Promise<void> | undefined;
  const dev: WranglerDev = {
    url,
    child,
    exited,
    stop: () =>
      (stopping ??= (async () => {
        signalGroup(child, "SIGTERM");
        const deadline = Date.now() + STOP_GRACE_MS;
        while (groupAlive(child) && Date.now() < deadline) await sleep(100);
        signalGroup(child, "SIGKILL");
        await exited;
        process.off("exit", killOnExit);
      })()),
  };

  const started = Date.now();
  for (;;) {
    // Bounded, and raced with wrangler's exit: whatever else holds the port may never answer.
    const answer = await Promise.race([
      exited,
      fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) }).then(
        () => "ready" as const,
        () => "waiting" as const,
      ),
    ]);
    if (answer === "ready") return dev;
    if (answer !== "waiting") {
      await dev.stop();
      throw new Error(`wrangler dev exited (code ${answer}) before the Worker answered on ${url}`);
    }
    await sleep(300);
    if (Date.now() - started > STARTUP_TIMEOUT_MS) {
      await dev.stop();
      throw new Error(`the Worker did not answer on ${url} within ${STARTUP_TIMEOUT_MS / 1000} s`);
    }
  }
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

function groupAlive(child: ChildProcess): boolean {
  if (child.pid === undefined) return false;
  try {
    process.kill(-child.pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
