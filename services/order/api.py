"""HTTP edge of the order service: request/response models, auth, and the error table.

Routes only translate: HTTP in, a call to :mod:`services.order.service`, JSON out. Every
``/api`` route needs a customer: ``Authorization: Bearer <token>`` (API clients), or the
storefront's session cookie (``POST /api/session`` starts one). A state change made with the
cookie must come from our own origin (the ``Origin`` header, else ``Referer``): that, with
SameSite=Lax, is the CSRF protection.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr
from pydantic.alias_generators import to_camel

from services.order import domain, service
from services.order.config import Settings
from services.order.domain import Coupon, Customer, LineRequest, Order, Refund, Session
from services.order.metrics import ORDERS_PLACED
from shared.http import NowDep, PoolDep
from shared.logging import order_context
from shared.origin import same_origin
from shared.problems import Problem, problem_response, problem_responses

log = logging.getLogger(__name__)

# --- errors: one table from domain exception to problem -----------------------------------------

PROBLEMS: dict[type[domain.OrderError], tuple[int, str]] = {
    domain.NotAuthenticated: (401, "UNAUTHORIZED"),
    domain.CrossSiteRequest: (403, "CROSS_SITE_REQUEST"),
    domain.EmptyOrder: (422, "EMPTY_ORDER"),
    domain.TooManyLines: (422, "TOO_MANY_LINES"),
    domain.QuantityOutOfRange: (422, "QUANTITY_OUT_OF_RANGE"),
    domain.DuplicateSku: (422, "DUPLICATE_SKU"),
    domain.UnknownProduct: (422, "UNKNOWN_PRODUCT"),
    domain.CouponNotFound: (422, "COUPON_NOT_FOUND"),
    domain.CouponExpired: (422, "COUPON_EXPIRED"),
    domain.CouponMinimumNotMet: (422, "COUPON_MINIMUM_NOT_MET"),
    domain.CouponUnavailable: (409, "COUPON_UNAVAILABLE"),
    domain.NegativePoints: (422, "NEGATIVE_POINTS"),
    domain.InsufficientPoints: (409, "INSUFFICIENT_POINTS"),
    domain.AmountBelowMinimum: (422, "AMOUNT_BELOW_MINIMUM"),
    domain.OrderNotFound: (404, "ORDER_NOT_FOUND"),
    domain.OrderNotCancelable: (409, "ORDER_NOT_CANCELABLE"),
    domain.RefundInProgress: (409, "REFUND_IN_PROGRESS"),
    domain.InvalidRefundAmount: (422, "INVALID_REFUND_AMOUNT"),
    domain.RefundExceedsBalance: (409, "REFUND_EXCEEDS_BALANCE"),
}


def to_problem(exc: domain.OrderError) -> Problem:
    status, code = PROBLEMS[type(exc)]
    return Problem(status, code, str(exc), field=exc.field)


def install_error_table(app: FastAPI) -> None:
    async def on_order_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, domain.OrderError)
        response = problem_response(to_problem(exc), request.url.path)
        if isinstance(exc, domain.NotAuthenticated):
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    app.add_exception_handler(domain.OrderError, on_order_error)


# --- dependencies ----------------------------------------------------------------------------


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]

MAX_TOKEN_LENGTH = 512
SESSION_COOKIE = "session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def bearer_token(request: Request) -> str | None:
    """The bearer token, if the request carries an Authorization header (a malformed one is
    refused rather than ignored: the client meant to authenticate)."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        raise domain.NotAuthenticated("A valid bearer token is required.")
    return token


def session_cookie(request: Request) -> str | None:
    value = request.cookies.get(SESSION_COOKIE)
    if not value or len(value) > MAX_TOKEN_LENGTH:
        return None
    return value


def check_same_origin(request: Request) -> None:
    """Refuse a cookie-authenticated state change that another site's page could have sent."""
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not same_origin(origin, request.headers.get("host")):
        raise domain.CrossSiteRequest("This request must come from the shop's own pages.")


async def current_customer(request: Request, pool: PoolDep, now: NowDep) -> Customer:
    settings: Settings = request.app.state.settings
    token = bearer_token(request)
    if token is not None:
        return await service.authenticate(pool, token, demo_allowed=settings.sandbox)
    session_id = session_cookie(request)
    if session_id is None:
        raise domain.NotAuthenticated("A valid bearer token or session is required.")
    check_same_origin(request)
    return (await service.session_customer(pool, session_id, now)).customer


CustomerDep = Annotated[Customer, Depends(current_customer)]


# --- models ----------------------------------------------------------------------------------


def _storable(text: str) -> str:
    # PostgreSQL text holds neither NUL nor what UTF-8 cannot encode (a lone surrogate, which
    # JSON can spell as "\ud800"): refuse them here rather than fail in the database.
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return text


Text = Annotated[
    StrictStr, AfterValidator(_storable), Field(json_schema_extra={"pattern": "^[^\\x00]*$"})
]
OrderId = Annotated[str, AfterValidator(_storable)]


class Wire(BaseModel):
    """A request body: camelCase only, and nothing the model does not name."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False, extra="forbid")


class Out(BaseModel):
    """A response body: built by field name, written in camelCase."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ItemIn(Wire):
    sku: Text = Field(min_length=1, max_length=64)
    quantity: StrictInt


class PlaceOrderIn(Wire):
    """What a buyer may say: items, a coupon code and points. No price, no total."""

    items: list[ItemIn] = Field(max_length=1000)
    coupon_code: Text | None = Field(default=None, min_length=1, max_length=64)
    points: StrictInt = 0


class SessionIn(Wire):
    """Sign in with a customer's bearer token; without one, a guest session (or the current)."""

    token: Text | None = Field(default=None, min_length=1, max_length=MAX_TOKEN_LENGTH)


class SessionOut(Out):
    customer_key: str
    guest: bool
    expires_at: datetime


class CancelIn(Wire):
    reason: Text = Field(min_length=1, max_length=200)
    amount: StrictInt | None = None


class ProductOut(Out):
    sku: str
    name: str
    price: int
    currency: str = domain.CURRENCY


class CouponOut(Out):
    code: str
    kind: str
    description: str
    amount_off: int | None
    percent_off: int | None
    max_discount: int | None
    min_order_amount: int
    expires_at: datetime

    @classmethod
    def of(cls, coupon: Coupon) -> CouponOut:
        return cls(
            code=coupon.code,
            kind=coupon.kind.value,
            description=coupon.describe(),
            amount_off=coupon.amount_off,
            percent_off=coupon.percent_off,
            max_discount=coupon.max_discount,
            min_order_amount=coupon.min_order_amount,
            expires_at=coupon.expires_at,
        )


class MeOut(Out):
    customer_key: str
    points_balance: int
    coupons: list[CouponOut]


class FailureOut(Out):
    code: str
    message: str
    pg_code: str | None = None


class PaymentOut(Out):
    status: str
    payment_key: str | None
    approved_at: datetime | None
    method: str | None
    failure: FailureOut | None


class LineOut(Out):
    sku: str
    name: str
    unit_price: int
    quantity: int
    line_total: int


class RefundOut(Out):
    refund_id: str
    kind: str
    amount: int
    reason: str
    status: str
    refunded_amount: int | None
    requested_at: datetime
    completed_at: datetime | None
    failure: FailureOut | None

    @classmethod
    def of(cls, refund: Refund) -> RefundOut:
        failure = refund.failure
        return cls(
            refund_id=refund.refund_id,
            kind=refund.kind.value,
            amount=refund.amount,
            reason=refund.reason,
            status=refund.status.value,
            refunded_amount=refund.refunded_amount,
            requested_at=refund.requested_at,
            completed_at=refund.completed_at,
            failure=FailureOut(code=failure.code, message=failure.message) if failure else None,
        )


class OrderOut(Out):
    order_id: str
    order_name: str
    status: str
    amount: int
    currency: str
    customer_key: str
    created_at: datetime
    expires_at: datetime
    items: list[LineOut]
    subtotal: int
    coupon_code: str | None
    coupon_discount: int
    points_used: int
    refunded_amount: int
    payment: PaymentOut
    refunds: list[RefundOut]

    @classmethod
    def of(cls, order: Order) -> OrderOut:
        return cls(
            order_id=order.order_id,
            order_name=order.order_name,
            status=order.status.value,
            amount=order.amount,
            currency=domain.CURRENCY,
            customer_key=order.customer_key,
            created_at=order.created_at,
            expires_at=order.expires_at,
            items=[
                LineOut(
                    sku=line.sku,
                    name=line.name,
                    unit_price=line.unit_price,
                    quantity=line.quantity,
                    line_total=line.line_total,
                )
                for line in order.lines
            ],
            subtotal=order.subtotal,
            coupon_code=order.coupon_code,
            coupon_discount=order.coupon_discount,
            points_used=order.points_used,
            refunded_amount=order.refunded_amount,
            payment=_payment_out(order.payment),
            refunds=[RefundOut.of(refund) for refund in order.refunds],
        )


def _payment_out(payment: domain.Payment) -> PaymentOut:
    failure = payment.failure
    return PaymentOut(
        status=payment.status.value,
        payment_key=payment.payment_key,
        approved_at=payment.approved_at,
        method=payment.method,
        failure=FailureOut(code=failure.code, message=failure.message, pg_code=failure.pg_code)
        if failure
        else None,
    )


# --- routes ----------------------------------------------------------------------------------

router = APIRouter()


def session_policy(settings: Settings) -> service.SessionPolicy:
    return service.SessionPolicy(
        ttl=timedelta(seconds=settings.session_ttl_seconds), welcome=settings.sandbox
    )


def _set_cookie(response: Response, session: Session, request: Request, settings: Settings) -> None:
    secure = settings.session_cookie_secure
    if secure is None:
        secure = not settings.sandbox or request.url.scheme == "https"
    response.set_cookie(
        SESSION_COOKIE,
        session.session_id,
        max_age=settings.session_ttl_seconds,
        path="/",
        secure=secure,
        httponly=True,
        samesite="lax",
    )


def _session_out(session: Session) -> SessionOut:
    return SessionOut(
        customer_key=session.customer.customer_key,
        guest=session.guest,
        expires_at=session.expires_at,
    )


@router.post(
    "/api/session",
    response_model=SessionOut,
    responses={201: {"model": SessionOut}, **problem_responses(400, 401, 403, 422)},
)
async def start_session(
    request: Request,
    response: Response,
    pool: PoolDep,
    settings: SettingsDep,
    now: NowDep,
    body: SessionIn | None = None,
) -> SessionOut:
    """The storefront's visitor: the current session, else a new one of their own (a guest
    customer), or, with ``token``, a session as that customer. Sets the HttpOnly cookie."""
    check_same_origin(request)
    current = session_cookie(request)
    token = body.token if body is not None else None
    if token is None and current is not None:
        with contextlib.suppress(domain.NotAuthenticated):
            return _session_out(await service.session_customer(pool, current, now))
    policy = session_policy(settings)
    if token is None:
        session = await service.start_guest_session(pool, policy, now)
    else:
        session = await service.sign_in(
            pool, token, policy, now, demo_allowed=settings.sandbox, previous=current
        )
    _set_cookie(response, session, request, settings)
    response.status_code = 201
    return _session_out(session)


@router.delete("/api/session", status_code=204, responses=problem_responses(400, 403))
async def end_session(request: Request, response: Response, pool: PoolDep) -> None:
    """Sign out: the session ends and its cookie is removed."""
    check_same_origin(request)
    current = session_cookie(request)
    if current is not None:
        await service.end_session(pool, current)
    response.delete_cookie(SESSION_COOKIE, path="/")


@router.get("/healthz", include_in_schema=False)
async def healthz(pool: PoolDep) -> dict[str, str]:
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
    return {"status": "ok"}


@router.get("/api/products", response_model=list[ProductOut], responses=problem_responses(400, 401))
async def list_products(customer: CustomerDep, pool: PoolDep) -> list[ProductOut]:
    return [ProductOut(sku=p.sku, name=p.name, price=p.price) for p in await service.catalog(pool)]


@router.get("/api/me", response_model=MeOut, responses=problem_responses(400, 401))
async def me(customer: CustomerDep, pool: PoolDep, now: NowDep) -> MeOut:
    current, coupons = await service.profile(pool, customer.customer_id, now)
    return MeOut(
        customer_key=current.customer_key,
        points_balance=current.points_balance,
        coupons=[CouponOut.of(coupon) for coupon in coupons],
    )


@router.post(
    "/api/orders",
    status_code=201,
    response_model=OrderOut,
    responses=problem_responses(400, 401, 409, 422),
)
async def place_order(
    body: PlaceOrderIn,
    customer: CustomerDep,
    pool: PoolDep,
    settings: SettingsDep,
    response: Response,
    now: NowDep,
) -> OrderOut:
    order = await service.place_order(
        pool,
        customer.customer_id,
        [LineRequest(item.sku, item.quantity) for item in body.items],
        coupon_code=body.coupon_code,
        points=body.points,
        ttl_seconds=settings.order_ttl_seconds,
        now=now,
    )
    ORDERS_PLACED.inc()
    response.headers["Location"] = f"/api/orders/{order.order_id}"
    with order_context(order.order_id):
        log.info("order placed", extra={"amount": order.amount})
    return OrderOut.of(order)


@router.get(
    "/api/orders/{order_id}",
    response_model=OrderOut,
    responses=problem_responses(400, 401, 404, 422),
)
async def get_order(order_id: OrderId, customer: CustomerDep, pool: PoolDep) -> OrderOut:
    return OrderOut.of(await service.order_of(pool, customer.customer_id, order_id))


@router.post(
    "/api/orders/{order_id}/cancel",
    response_model=OrderOut,
    responses={
        202: {"model": OrderOut, "description": "Paid: a refund was requested"},
        **problem_responses(400, 401, 404, 409, 422),
    },
)
async def cancel_order(
    order_id: OrderId,
    body: CancelIn,
    customer: CustomerDep,
    pool: PoolDep,
    response: Response,
    now: NowDep,
) -> OrderOut:
    with order_context(order_id):
        order, refunding = await service.cancel_order(
            pool, customer.customer_id, order_id, reason=body.reason, amount=body.amount, now=now
        )
    response.status_code = 202 if refunding else 200
    return OrderOut.of(order)
