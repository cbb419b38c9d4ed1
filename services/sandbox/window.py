"""The payment window (``/sandbox/checkout``) and the JS SDK stand-in (``/v2/standard``)."""

from __future__ import annotations

import json
from html import escape
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from services.sandbox import domain, service
from services.sandbox.api import SandboxDep
from services.sandbox.domain import InvalidField, WindowRequest

router = APIRouter()

MAX_FORM = 16 * 1024
WINDOW_FIELDS = ("clientKey", "customerKey", "orderId", "orderName", "amount", "successUrl",
                 "failUrl")  # fmt: skip


@router.get("/sandbox/checkout", response_class=HTMLResponse)
async def window_page(request: Request, sandbox: SandboxDep) -> Response:
    fields = dict(request.query_params)
    try:
        window = domain.check_window_request(fields, request.app.state.client_keys)
    except InvalidField as exc:
        return _bad_request(exc)
    payment = await service.open_window(sandbox, window)
    return HTMLResponse(_card_form(window, payment.payment_key))


@router.post("/sandbox/checkout")
async def window_submit(request: Request, sandbox: SandboxDep) -> Response:
    raw = await request.body()
    if len(raw) > MAX_FORM:
        return _bad_request(InvalidField("body", "too large"))
    fields = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    try:
        window = domain.check_window_request(fields, request.app.state.client_keys)
        action = fields.get("action", "")
        if action == "cancel":
            return _see_other(service.cancel_window_url(window))
        if action != "approve":
            raise InvalidField("action", "approve or cancel")
        card = domain.normalize_card_number(fields.get("cardNumber"))
        payment_key = fields.get("paymentKey") or None
        url = await service.approve_window(sandbox, window, payment_key, card)
    except InvalidField as exc:
        return _bad_request(exc)
    except service.UnknownWindow:
        return _bad_request(InvalidField("paymentKey", "no window was opened with it"))
    return _see_other(url)


@router.get("/v2/standard")
async def sdk_script(request: Request) -> Response:
    origin = request.app.state.public_url or str(request.base_url).rstrip("/")
    script = SDK_SCRIPT.replace('"__SANDBOX_ORIGIN__"', json.dumps(origin))
    return Response(
        script,
        media_type="application/javascript; charset=utf-8",
        headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-cache"},
    )


def _see_other(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


def _bad_request(exc: InvalidField) -> HTMLResponse:
    body = (
        f"<h1>잘못된 결제 요청 (invalid payment request)</h1>"
        f"<p><code>{escape(exc.field_name)}</code>: {escape(exc.reason)}</p>"
    )
    return HTMLResponse(_page("Invalid request", body), status_code=400)


def _card_form(window: WindowRequest, payment_key: str) -> str:
    hidden = {
        "clientKey": window.client_key,
        "customerKey": window.customer_key,
        "orderId": window.order_id,
        "orderName": window.order_name,
        "amount": str(window.amount),
        "successUrl": window.success_url,
        "failUrl": window.fail_url,
        "paymentKey": payment_key,
    }
    inputs = "\n".join(
        f'<input type="hidden" name="{name}" value="{escape(value)}">'
        for name, value in hidden.items()
    )
    rejects = "".join(
        f"<li><code>{prefix}…</code> → <code>{code}</code></li>"
        for prefix, (code, _) in domain.REJECT_PREFIXES.items()
    )
    body = f"""
<h1>Toss Payments sandbox</h1>
<p class="order">{escape(window.order_name)}<br><strong>{window.amount:,} 원</strong></p>
<form method="post" action="/sandbox/checkout">
{inputs}
<label for="cardNumber">카드 번호 (card number)</label>
<input id="cardNumber" name="cardNumber" inputmode="numeric" autocomplete="off"
       value="{domain.DEFAULT_TEST_CARD}">
<div class="buttons">
<button type="submit" name="action" value="approve">결제하기 (Pay)</button>
<button type="submit" name="action" value="cancel" class="secondary">취소 (Cancel)</button>
</div>
</form>
<p class="hint">Test cards: any 13-19 digits authenticate; these prefixes are refused:</p>
<ul class="hint">{rejects}</ul>
"""
    return _page("Toss Payments sandbox", body)


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="ko"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 26rem; margin: 3rem auto; padding: 0 1rem;
       color: #191f28; }}
h1 {{ font-size: 1.2rem; color: #3182f6; }}
label, input {{ display: block; width: 100%; box-sizing: border-box; }}
input {{ font-size: 1.1rem; padding: .6rem; margin: .4rem 0 1rem; }}
.buttons {{ display: flex; gap: .5rem; }}
button {{ flex: 1; padding: .8rem; font-size: 1rem; border: 0; border-radius: .5rem;
          background: #3182f6; color: white; cursor: pointer; }}
button.secondary {{ background: #e5e8eb; color: #191f28; }}
.hint {{ color: #6b7684; font-size: .85rem; }}
</style></head>
<body>{body}</body></html>
"""


SDK_SCRIPT = """\
/* Toss Payments JS SDK v2 stand-in, served by the local sandbox. Same call shape as
   https://js.tosspayments.com/v2/standard: TossPayments(clientKey).payment({customerKey})
   .requestPayment({method, amount: {currency, value}, orderId, orderName, successUrl, failUrl}) */
(function () {
  "use strict";
  var SANDBOX_ORIGIN = "__SANDBOX_ORIGIN__";
  function fail(code, message) {
    var error = new Error(message);
    error.code = code;
    return Promise.reject(error);
  }
  window.TossPayments = function (clientKey) {
    if (!clientKey) { throw new Error("TossPayments: clientKey is required"); }
    return {
      payment: function (options) {
        var customerKey = (options || {}).customerKey;
        return {
          requestPayment: function (opts) {
            opts = opts || {};
            if (opts.method && opts.method !== "CARD") {
              return fail("INVALID_METHOD", "the sandbox supports method CARD only");
            }
            var amount = opts.amount && typeof opts.amount === "object"
              ? opts.amount.value : opts.amount;
            var required = { orderId: opts.orderId, orderName: opts.orderName, amount: amount,
                             successUrl: opts.successUrl, failUrl: opts.failUrl };
            for (var name in required) {
              if (required[name] === undefined || required[name] === null ||
                  required[name] === "") {
                return fail("INVALID_PARAMETERS", name + " is required");
              }
            }
            var query = new URLSearchParams({
              clientKey: clientKey, customerKey: customerKey || "",
              orderId: String(opts.orderId), orderName: String(opts.orderName),
              amount: String(amount), successUrl: String(opts.successUrl),
              failUrl: String(opts.failUrl)
            });
            window.location.assign(SANDBOX_ORIGIN + "/sandbox/checkout?" + query.toString());
            return new Promise(function () {});  /* the page navigates away */
          }
        };
      }
    };
  };
})();
"""
