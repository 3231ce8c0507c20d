import { type Doc, expectDocumented as expectDocumentedIn, loadDocument, pointer, validate as validateIn } from "../document.ts";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { testThirdParties } from "../fixtures/third-party.ts";
import { api, authorizeByEvent, beijingTime, pushTicket, tpEvent, tpUserWrites, uniqueAppId, uniqueId, webhookDeliveries } from "../helpers.ts";

/** The third-party routes' real answers and a real delivery, checked against /openapi.json by an independent validator. */

let doc: Doc;

beforeAll(async () => {
  doc = await loadDocument();
});

const validate = (ref: string, instance: unknown) => validateIn(doc, ref, instance);
const expectDocumented = (method: string, path: string, answer: { status: number; body: unknown }) => expectDocumentedIn(doc, method, path, answer);

describe("the third-party routes in /openapi.json", () => {
  const mytp = testThirdParties.mytp;

  it("authorization-link and authorizers: 200 and 404", async () => {
    await pushTicket("mytp", mytp);
    expect((await authorizeByEvent("mytp", mytp, uniqueAppId())).status).toBe(200);
    expectDocumented("post", "/api/tp/{tp}/authorization-link", await api("POST", "/tp/mytp/authorization-link"));
    expectDocumented("post", "/api/tp/{tp}/authorization-link", await api("POST", "/tp/nosuch/authorization-link"));
    const list = await api("GET", "/tp/mytp/authorizers");
    expect(list.body.authorizers.length).toBeGreaterThan(0);
    expectDocumented("get", "/api/tp/{tp}/authorizers", list);
    expectDocumented("get", "/api/tp/{tp}/authorizers", await api("GET", "/tp/nosuch/authorizers"));
  });

  it("a reply to a withdrawn mini program: 409 unauthorized; a delivery with tp and appId fits message.received", async () => {
    await pushTicket("mytp", mytp);
    const appId = uniqueAppId();
    await authorizeByEvent("mytp", mytp, appId);
    const openid = uniqueId("o");
    await tpUserWrites("mytp", mytp, appId, openid);
    const [delivery] = await vi.waitFor(async () => {
      const deliveries = await webhookDeliveries(openid);
      expect(deliveries).toHaveLength(1);
      return deliveries;
    });
    expect(delivery!.body.data).toMatchObject({ tp: "mytp", appId });
    const ref = pointer("webhooks", "message.received", "post", "requestBody", "content", "application/json", "schema");
    expect(validate(ref, delivery!.body).valid).toBe(true);
    await tpEvent("mytp", mytp, { appId: Number(appId), tpAppId: 1, eventTime: beijingTime(), event: "UNAUTHORIZED" });
    const refused = await api("POST", `/apps/mytp.${appId}/messages`, { openid, type: "text", content: "hi" });
    expect(refused.status).toBe(409);
    expectDocumented("post", "/api/apps/{app}/messages", refused);
  });
});
