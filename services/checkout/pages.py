"""The buyer-facing HTML: the result page and the error pages.

Every interpolated value goes through :func:`html.escape`. No inline script or style: the page's
behaviour is ``static/result.js`` and its look ``static/checkout.css``, so a strict
Content-Security-Policy (:data:`CONTENT_SECURITY_POLICY`) holds.
"""

from __future__ import annotations

from html import escape

from services.checkout.domain import BUYER_CANCELED, FailRedirect, FieldError

STATIC = "/payments/static"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

_FIELD_LABELS = {
    "paymentKey": "payment key",
    "orderId": "order number",
    "amount": "amount",
    "paymentType": "payment type",
    "code": "error code",
    "message": "error message",
}


def _layout(title: str, body: str, *, script: str | None = None) -> str:
    script_tag = f'<script src="{STATIC}/{script}" defer></script>' if script else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        f'<link rel="icon" href="/favicon.svg" type="image/svg+xml">'
        f'<link rel="stylesheet" href="{STATIC}/checkout.css">{script_tag}</head>\n'
        f'<body><main class="card">{body}</main></body></html>\n'
    )


def invalid_redirect_page(errors: tuple[FieldError, ...]) -> str:
    """The 400 page for a malformed redirect: what is wrong, and what the buyer can do."""
    items = "".join(
        f'<li data-field="{escape(e.field)}"><strong>{escape(_FIELD_LABELS.get(e.field, e.field))}'
        f"</strong> ({escape(e.field)}) {escape(e.reason)}</li>"
        for e in errors
    )
    body = (
        '<h1 id="error-title">We could not read this payment link</h1>'
        "<p>The payment page sent you back with a link we cannot accept, so nothing was "
        "charged or recorded:</p>"
        f'<ul id="invalid-fields">{items}</ul>'
        '<p>Please go back to the shop and try again.</p><p><a href="/">Back to the shop</a></p>'
    )
    return _layout("Invalid payment link", body)


def error_page(status: int, message: str) -> str:
    body = (
        f'<h1 id="error-title" data-status="{status}">{escape(message)}</h1>'
        '<p><a href="/">Back to the shop</a></p>'
    )
    return _layout(message, body)


def result_page(
    order_id: str | None,
    failure: FailRedirect | None,
    *,
    poll_interval_ms: int,
    poll_limit: int,
    payment_key: str | None = None,
) -> str:
    """The live outcome page: 'processing' until result.js sees the order paid or failed.

    With a failure already known (a fail redirect) it shows that failure at once and does not
    poll: the order itself may stay payable.
    """
    status = "FAILED" if failure is not None else "PROCESSING"
    headline = _headline(failure)
    reason = _failure_text(failure)
    body = (
        f'<section id="result" data-order-id="{escape(order_id or "")}"'
        f' data-payment-key="{escape(payment_key or "")}"'
        f' data-initial-status="{status}" data-poll-interval-ms="{poll_interval_ms}"'
        f' data-poll-limit="{poll_limit}">'
        f'<h1 id="payment-status" data-status="{status}">{escape(headline)}</h1>'
        f'<p id="failure-reason"{"" if reason else " hidden"}>{escape(reason)}</p>'
        '<p id="still-processing" hidden>Still processing — please refresh this page later.</p>'
        '<dl class="facts">'
        f'<dt>Order</dt><dd id="order-id">{escape(order_id or "—")}</dd>'
        '<dt>Amount</dt><dd id="order-amount">—</dd></dl>'
        '<p><a id="back-to-shop" href="/">Back to the shop</a></p></section>'
    )
    return _layout("Payment result", body, script="result.js")


def _headline(failure: FailRedirect | None) -> str:
    if failure is None:
        return "Processing your payment…"
    return "Payment canceled" if failure.code == BUYER_CANCELED else "Payment failed"


def _failure_text(failure: FailRedirect | None) -> str:
    if failure is None:
        return ""
    return f"{failure.buyer_message} ({failure.code})"
