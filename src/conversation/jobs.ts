/** Queue message bodies: small pointers; the conversation Durable Object holds the data. */
export interface ForwardJob {
  app: string;
  openid: string;
  /** The inbound message's de-dupe key. */
  key: string;
}

export interface SendJob {
  app: string;
  openid: string;
  /** The reply id. */
  id: string;
}
