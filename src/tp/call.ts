import { readTpAnswer, type TpAnswer } from "../platforms/baidu-tp.ts";

/** An answer, or none: the call timed out, the connection dropped, or the body was unreadable. */
export type TpOutcome = TpAnswer | { verdict: "lost"; message: string };

/** One call to Baidu's TP API. A lost answer is told apart: the call may have taken effect. */
export async function callTp(request: Request, timeoutMs: number): Promise<TpOutcome> {
  let response: Response;
  let body: unknown;
  try {
    response = await fetch(request, { signal: AbortSignal.timeout(timeoutMs) });
    const text = await response.text();
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined; // a gateway page: judged by its status
    }
  } catch (error) {
    return { verdict: "lost", message: `no answer: ${String(error)}` };
  }
  return readTpAnswer(response.status, body);
}
