// Runs the Baidu/WeChat/webhook stand-in from the command line. Every stdout line is JSON:
// first {"event":"listening","url":…}, then one line per request handled. Its control API
// (/__standin/script and the rest) is in the README's "Trying faults".
//   node tools/stand-in-cli.ts [--port 8788] [--host 127.0.0.1] [--webhook-secret S]
//                              [--token-ttl SECONDS] [--wechat-grace SECONDS]

import { startStandIn } from "./stand-in.ts";
import type { StandInOptions } from "./stand-in.ts";

const USAGE = "usage: node tools/stand-in-cli.ts [--port 8788] [--host 127.0.0.1] [--webhook-secret S] [--token-ttl SECONDS] [--wechat-grace SECONDS]";

function parseArgs(argv: string[]): StandInOptions {
  const options: StandInOptions = { port: 8788, log: (line) => process.stdout.write(`${line}\n`) };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === "--help" || flag === "-h") {
      console.log(USAGE);
      process.exit(0);
    }
    const value = argv[++i];
    if (value === undefined) fail(`missing value for ${flag}`);
    const number = () => {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 0) fail(`${flag} needs a non-negative integer, got ${value}`);
      return n;
    };
    if (flag === "--port") options.port = number();
    else if (flag === "--host") options.host = value;
    else if (flag === "--webhook-secret") options.webhookSecret = value;
    else if (flag === "--token-ttl") options.tokenTtlSeconds = number();
    else if (flag === "--wechat-grace") options.wechatGraceSeconds = number();
    else fail(`unknown option ${flag}`);
  }
  return options;
}

function fail(message: string): never {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
  throw new Error(message); // unreachable; keeps `never` sound where process.exit is not typed `never`
}

const standIn = await startStandIn(parseArgs(process.argv.slice(2)));
process.stdout.write(`${JSON.stringify({ event: "listening", url: standIn.url })}\n`);

let stopping = false;
function stop(signal: string) {
  if (stopping) process.exit(1); // a second signal means "now"
  stopping = true;
  console.error(`stand-in: ${signal}, shutting down`);
  standIn.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
}
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGTERM", () => stop("SIGTERM"));
