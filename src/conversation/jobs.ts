/** Queue message bodies: small pointers; the conversation Durable Object holds the data. */
export type ForwardJob = MessageForwardJob | StatusEventJob;

/** An accepted message on its way to the business webhook. */
export interface MessageForwardJob {
  app: string;
  openid: string;
  /** The inbound message's de-dupe key. */
  key: string;
}

/** A reply's final state (`message.sent` / `message.failed`) on its way to the business webhook. */
export interface StatusEventJob {
  app: string;
  openid: string;
  event: "message.sent" | "message.failed";
  /** The reply id. */
  id: string;
  /** Which attempt at delivering the event this is (events are not claimed: each re-send counts). */
  attempt?: number;
}

export interface SendJob {
  app: string;
  openid: string;
  /** The reply id. */
  id: string;
}
