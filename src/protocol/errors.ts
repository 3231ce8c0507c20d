/**
 * Errors are values with a code. Protocol code throws them; `app.ts` maps the code to an HTTP
 * status in one place (`httpStatus`). The message says what was wrong and never carries secrets.
 */
export const httpStatus = {
  bad_signature: 401,
  expired_signature: 401,
  wrong_mode: 401,
  wrong_app: 403,
  unknown_app: 404,
  not_found: 404,
  body_too_large: 413,
  unsupported_body: 400,
  bad_xml: 400,
  xml_doctype: 400,
  bad_json: 400,
  missing_field: 400,
  bad_field: 400,
  bad_envelope: 400,
  bad_base64: 400,
  bad_block_length: 400,
  bad_padding: 400,
  bad_length: 400,
  bad_utf8: 400,
  wrong_trailing_id: 400,
  invalid_body: 400,
  idempotency_conflict: 422,
  window_closed: 409,
  quota_exhausted: 409,
  // A mini program whose merchant withdrew its third-party authorization (the API key's 401s are bearerAuth's own).
  unauthorized: 409,
  config_invalid: 503,
  unavailable: 503,
} as const;

export type ErrorCode = keyof typeof httpStatus;

export class KefuError extends Error {
  override readonly name = "KefuError";
  readonly code: ErrorCode;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.code = code;
    this.details = details;
  }

  get status(): number {
    return httpStatus[this.code];
  }
}
