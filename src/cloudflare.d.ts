// Types `exports` from "cloudflare:workers" as this Worker's own entry points.
declare namespace Cloudflare {
  interface GlobalProps {
    mainModule: typeof import("./index.ts");
  }
}
