import { stringField, type Fields } from "./codec.ts";
import { KefuError } from "./errors.ts";

/**
 * What a third-party platform's 授权事件接收URL receives, decrypted (docs/protocol.md §8): the
 * `ticket` every 10 minutes (PascalCase, `MsgType`), the authorization events (camelCase, lower-case
 * `event`), and some twenty other events, acknowledged and logged.
 */
export type PlatformEvent =
  | { kind: "ticket"; ticket: string; createTime: number }
  | { kind: "authorized"; event: "AUTHORIZED" | "UPDATE_AUTHORIZED"; appId: string; eventTime: string; eventAt: number; code: string }
  | { kind: "unauthorized"; event: "UNAUTHORIZED"; appId: string; eventTime: string; eventAt: number }
  | { kind: "other"; name: string; appId?: string };

const MAX_ID = 64;

export function readPlatformEvent(fields: Fields): PlatformEvent {
  if (stringField(fields, "MsgType") === "ticket") {
    const ticket = stringField(fields, "Ticket");
    const createTime = Number(stringField(fields, "CreateTime"));
    if (!ticket || ticket.length > 256) throw new KefuError("missing_field", "ticket push has no Ticket");
    if (!Number.isSafeInteger(createTime) || createTime <= 0) throw new KefuError("missing_field", "ticket push has no valid CreateTime (unix seconds)");
    return { kind: "ticket", ticket, createTime };
  }
  const event = stringField(fields, "event");
  const appId = stringField(fields, "appId");
  if (event === "AUTHORIZED" || event === "UPDATE_AUTHORIZED" || event === "UNAUTHORIZED") {
    if (!appId || !/^[A-Za-z0-9]{1,64}$/.test(appId)) throw new KefuError("missing_field", `${event} event has no valid appId`);
    const eventTime = stringField(fields, "eventTime") ?? "";
    const eventAt = eventTimeMs(eventTime);
    if (eventAt === undefined) throw new KefuError("missing_field", `${event} event has no valid eventTime (yyyy-MM-dd HH:mm:ss)`);
    if (event === "UNAUTHORIZED") return { kind: "unauthorized", event, appId, eventTime, eventAt };
    const code = stringField(fields, "authorizationCode");
    if (!code || code.length > 512) throw new KefuError("missing_field", `${event} event has no authorizationCode`);
    return { kind: "authorized", event, appId, eventTime, eventAt, code };
  }
  const name = event ?? stringField(fields, "Event") ?? stringField(fields, "MsgType") ?? "unknown";
  return { kind: "other", name: name.slice(0, MAX_ID), ...(appId && { appId: appId.slice(0, MAX_ID) }) };
}

/** `eventTime` is Beijing time without a zone ("2019-01-14 12:45:10") [doc sample; zone inferred]. */
export function eventTimeMs(eventTime: string): number | undefined {
  const match = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})$/.exec(eventTime);
  if (!match) return undefined;
  const ms = Date.parse(`${match[1]}-${match[2]}-${match[3]}T${match[4]}:${match[5]}:${match[6]}+08:00`);
  return Number.isFinite(ms) ? ms : undefined;
}
