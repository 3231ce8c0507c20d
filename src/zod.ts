import { z } from "zod";

/**
 * zod, speaking our words: every issue a schema does not word itself gets a short "why" here, so
 * that no refusal (API) or configuration problem ever shows zod's own text — or the input value,
 * which may be a secret.
 */
z.config({
  customError(issue) {
    switch (issue.code) {
      case "invalid_type":
        return issue.input === undefined ? "is required" : `must be ${article(issue.expected)}`;
      case "too_small":
        if (issue.origin === "string") return issue.minimum === 1 ? "must be a non-empty string" : `must be at least ${issue.minimum} characters`;
        if (issue.origin === "array") return `must have at least ${issue.minimum} items`;
        return `must be ≥ ${issue.minimum}`;
      case "too_big":
        if (issue.origin === "string") return `must be at most ${issue.maximum} characters`;
        if (issue.origin === "array") return `must have at most ${issue.maximum} items`;
        return `must be ≤ ${issue.maximum}`;
      case "invalid_value":
        return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
      case "invalid_union":
        return "does not match any allowed shape";
      case "unrecognized_keys":
        return "is not a known field";
      default:
        return "is not valid";
    }
  },
});

const article = (type: string) => (/^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`);

/** The path of an issue as one name: `link.title`, `KEFU_API_KEYS[1]`. */
export function issuePath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((name, part) => (typeof part === "number" ? `${name}[${part}]` : name ? `${name}.${String(part)}` : String(part)), "");
}

export { z };
