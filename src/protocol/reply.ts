/** What the business sends back to a user. One shape for both platforms; each platform file maps it. */
export type Reply =
  | { type: "text"; content: string }
  | { type: "image"; picUrl?: string; mediaId?: string }
  | { type: "link"; link: { title: string; description: string; url: string; thumbUrl: string } }
  | { type: "miniprogrampage"; miniprogrampage: { title: string; pagePath: string; thumbMediaId: string } };

export interface ReplyRequest {
  reply: Reply;
  /** Baidu user_type: 1 guest, 2 Baidu account; the app's default when absent. */
  userType?: 1 | 2;
}

export type ReplyStatus = "queued" | "sending" | "sent" | "failed";

export interface ReplyError {
  code: string;
  platformCode?: number;
  message: string;
}

export interface ReplyState {
  id: string;
  status: ReplyStatus;
  attempts: number;
  createdAt: string;
  updatedAt: string;
  error?: ReplyError;
}
