// Ties the runtime's `env` and `exports` (from "cloudflare:workers") to this Worker's own types.
declare namespace Cloudflare {
  interface Env extends import("./env").Env {}
  interface GlobalProps {
    mainModule: typeof import("./index");
  }
}
