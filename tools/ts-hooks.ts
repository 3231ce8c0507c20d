// Lets Node run the Worker's own modules (src/protocol/*) from the tools, without a build step:
//   node --import ./tools/ts-hooks.ts tools/simulate.ts
// src/ is written for a bundler: extensionless relative imports ("./cipher") and, here and there,
// TypeScript that Node's default type stripping refuses (parameter properties). So:
//  * resolve: "./cipher" imported from a .ts file becomes "./cipher.ts";
//  * load: .ts files go through Node's own transform mode instead of strip-only mode.

import { registerHooks, stripTypeScriptTypes } from "node:module";

const RELATIVE_WITHOUT_EXTENSION = /^\.{1,2}\/(?:.*\/)?[^./]+$/;

registerHooks({
  resolve(specifier, context, nextResolve) {
    if (RELATIVE_WITHOUT_EXTENSION.test(specifier) && context.parentURL?.endsWith(".ts")) {
      return nextResolve(`${specifier}.ts`, context);
    }
    return nextResolve(specifier, context);
  },
  load(url, context, nextLoad) {
    const loaded = nextLoad(url, context);
    if (loaded.format !== "module-typescript" || loaded.source === undefined) return loaded;
    const source = stripTypeScriptTypes(String(loaded.source), { mode: "transform", sourceUrl: url });
    return { format: "module", source, shortCircuit: true };
  },
});
