"""The PG's error catalogue: every documented code with its status, per-endpoint code sets, and
what a caller may conclude from each code (``pg-contract.md``, *Errors*). Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    korean: str
    english: str


ERRORS: dict[str, ErrorSpec] = {
    # 400
    "ALREADY_PROCESSED_PAYMENT": ErrorSpec(
        400, "이미 처리된 결제 입니다.", "This payment has already been processed."
    ),
    "INVALID_CARD_NUMBER": ErrorSpec(
        400, "카드번호를 다시 확인해주세요.", "Check the card number."
    ),
    "INVALID_STOPPED_CARD": ErrorSpec(400, "정지된 카드 입니다.", "The card has been suspended."),
    "INVALID_CARD_EXPIRATION": ErrorSpec(
        400, "카드 정보를 다시 확인해주세요. (유효기간)", "Check the card's expiry date."
    ),
    "INVALID_REJECT_CARD": ErrorSpec(400, "카드 사용이 거절되었습니다.", "The card was declined."),
    "EXCEED_MAX_AMOUNT": ErrorSpec(
        400, "거래금액 한도를 초과했습니다.", "The transaction amount limit was exceeded."
    ),
    "INVALID_CARD_LOST_OR_STOLEN": ErrorSpec(
        400, "분실 혹은 도난 카드입니다.", "The card was reported lost or stolen."
    ),
    "UNAPPROVED_ORDER_ID": ErrorSpec(
        400, "아직 승인되지 않은 주문번호입니다.", "The orderId has not been approved yet."
    ),
    "INVALID_REQUEST": ErrorSpec(400, "잘못된 요청입니다.", "The request is invalid."),
    "EXCEED_MAX_CARD_INSTALLMENT_PLAN": ErrorSpec(
        400,
        "설정 가능한 최대 할부 개월 수를 초과했습니다.",
        "The maximum number of instalments was exceeded.",
    ),
    "NOT_ALLOWED_POINT_USE": ErrorSpec(
        400, "포인트 사용이 불가한 카드입니다.", "Card points cannot be used with this card."
    ),
    "INVALID_API_KEY": ErrorSpec(
        400, "잘못된 시크릿키 연동 정보 입니다.", "The secret key is not valid for this request."
    ),
    "BELOW_MINIMUM_AMOUNT": ErrorSpec(
        400,
        "신용카드는 결제금액이 100원 이상이어야 합니다.",
        "Card payments need at least 100 KRW.",
    ),
    "EXCEED_MAX_DAILY_PAYMENT_COUNT": ErrorSpec(
        400, "하루 결제 가능 횟수를 초과했습니다.", "The daily payment count limit was exceeded."
    ),
    "NOT_SUPPORTED_INSTALLMENT_PLAN_CARD_OR_MERCHANT": ErrorSpec(
        400,
        "할부가 지원되지 않는 카드 또는 가맹점 입니다.",
        "Instalments are not supported for this card or merchant.",
    ),
    "INVALID_CARD_INSTALLMENT_PLAN": ErrorSpec(
        400, "할부 개월 정보가 잘못되었습니다.", "The instalment plan is invalid."
    ),
    "NOT_SUPPORTED_MONTHLY_INSTALLMENT_PLAN": ErrorSpec(
        400, "할부가 지원되지 않는 카드입니다.", "This card does not support instalments."
    ),
    "EXCEED_MAX_PAYMENT_AMOUNT": ErrorSpec(
        400, "하루 결제 가능 금액을 초과했습니다.", "The maximum payment amount was exceeded."
    ),
    "NOT_FOUND_TERMINAL_ID": ErrorSpec(
        400,
        "단말기번호(Terminal Id)가 없습니다. 토스페이먼츠로 문의 바랍니다.",
        "The merchant terminal is not set up.",
    ),
    "INVALID_AUTHORIZE_AUTH": ErrorSpec(
        400, "유효하지 않은 인증 방식입니다.", "The authentication method is invalid."
    ),
    "RESTRICTED_TRANSFER_ACCOUNT": ErrorSpec(
        400,
        "계좌는 등록 후 12시간 뒤부터 결제할 수 있습니다.",
        "The account can be used 12 hours after registration.",
    ),
    "INVALID_UNREGISTERED_SUBMALL": ErrorSpec(
        400, "등록되지 않은 서브몰입니다.", "The sub-mall is not registered."
    ),
    "NOT_REGISTERED_BUSINESS": ErrorSpec(
        400, "등록되지 않은 사업자 번호입니다.", "The business number is not registered."
    ),
    "EXCEED_MAX_ONE_DAY_WITHDRAW_AMOUNT": ErrorSpec(
        400, "1일 출금 한도를 초과했습니다.", "The daily withdrawal limit was exceeded."
    ),
    "EXCEED_MAX_ONE_TIME_WITHDRAW_AMOUNT": ErrorSpec(
        400, "1회 출금 한도를 초과했습니다.", "The single withdrawal limit was exceeded."
    ),
    "INVALID_ACCOUNT_INFO_RE_REGISTER": ErrorSpec(
        400,
        "유효하지 않은 계좌입니다. 계좌 재등록 후 시도해주세요.",
        "The account is invalid: register it again.",
    ),
    "NOT_AVAILABLE_PAYMENT": ErrorSpec(
        400, "결제가 불가능한 시간대입니다.", "Payments are not available at this time."
    ),
    "EXCEED_MAX_MONTHLY_PAYMENT_AMOUNT": ErrorSpec(
        400, "당월 결제 가능금액을 초과했습니다.", "The monthly payment limit was exceeded."
    ),
    "PROVIDER_ERROR": ErrorSpec(
        400,
        "일시적인 오류가 발생했습니다. 잠시 후 다시 시도해주세요.",
        "A temporary error occurred.",
    ),
    "CARD_PROCESSING_ERROR": ErrorSpec(
        400, "카드사에서 오류가 발생했습니다.", "The card company had an error."
    ),
    "NOT_SUPPORTED_MONTHLY_INSTALLMENT_PLAN_BELOW_AMOUNT": ErrorSpec(
        400,
        "할부는 5만원 이상 결제부터 가능합니다.",
        "Instalments need a larger amount.",
    ),
    "INVALID_REFUND_ACCOUNT_INFO": ErrorSpec(
        400,
        "환불 계좌번호와 예금주명이 일치하지 않습니다.",
        "The refund account number and holder do not match.",
    ),
    "EXCEED_CANCEL_AMOUNT_DISCOUNT_AMOUNT": ErrorSpec(
        400,
        "즉시할인금액보다 적은 금액은 부분취소가 불가능합니다.",
        "A partial cancel below the discount amount is not possible.",
    ),
    "INVALID_REFUND_ACCOUNT_NUMBER": ErrorSpec(
        400, "잘못된 환불 계좌번호입니다.", "The refund account number is invalid."
    ),
    "INVALID_BANK": ErrorSpec(400, "유효하지 않은 은행입니다.", "The bank is invalid."),
    "NOT_MATCHES_REFUNDABLE_AMOUNT": ErrorSpec(
        400, "잔액 결과가 일치하지 않습니다.", "The refundable amount does not match."
    ),
    "REFUND_REJECTED": ErrorSpec(
        400,
        "환불이 거절됐습니다. 결제사에 문의 부탁드립니다.",
        "The refund was rejected by the provider.",
    ),
    "ALREADY_REFUND_PAYMENT": ErrorSpec(
        400, "이미 환불된 결제입니다.", "This payment has already been refunded."
    ),
    "FORBIDDEN_BANK_REFUND_REQUEST": ErrorSpec(
        400,
        "고객 계좌가 입금이 되지 않는 상태입니다.",
        "The buyer's account cannot receive deposits.",
    ),
    "ALREADY_CANCELED_PAYMENT": ErrorSpec(
        400, "이미 취소된 결제 입니다.", "This payment has already been canceled."
    ),
    "INVALID_IDEMPOTENCY_KEY": ErrorSpec(
        400, "멱등키가 올바르지 않습니다. (최대 300자)", "The idempotency key is invalid (max 300)."
    ),
    # 401
    "UNAUTHORIZED_KEY": ErrorSpec(
        401,
        "인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다.",
        "Unauthorized secret or client key.",
    ),
    # 403
    "REJECT_CARD_PAYMENT": ErrorSpec(
        403, "한도초과 혹은 잔액부족으로 결제에 실패했습니다.", "Declined: limit or balance."
    ),
    "REJECT_CARD_COMPANY": ErrorSpec(
        403, "결제 승인이 거절되었습니다.", "The card company declined the payment."
    ),
    "FORBIDDEN_REQUEST": ErrorSpec(403, "허용되지 않은 요청입니다.", "The request is not allowed."),
    "REJECT_ACCOUNT_PAYMENT": ErrorSpec(
        403, "잔액부족으로 결제에 실패했습니다.", "Declined: insufficient balance."
    ),
    "REJECT_TOSSPAY_INVALID_ACCOUNT": ErrorSpec(
        403,
        "선택하신 출금 계좌가 출금이체 등록이 되어 있지 않아요.",
        "The withdrawal account is not registered for transfers.",
    ),
    "EXCEED_MAX_AUTH_COUNT": ErrorSpec(
        403,
        "최대 인증 횟수를 초과했습니다. 카드사로 문의해주세요.",
        "Too many authentication attempts.",
    ),
    "EXCEED_MAX_ONE_DAY_AMOUNT": ErrorSpec(
        403, "일일 한도를 초과했습니다.", "The daily amount limit was exceeded."
    ),
    "NOT_AVAILABLE_BANK": ErrorSpec(
        403, "은행 서비스 시간이 아닙니다.", "The bank is not available at this time."
    ),
    "INVALID_PASSWORD": ErrorSpec(
        403, "결제 비밀번호가 일치하지 않습니다.", "The payment password does not match."
    ),
    "INCORRECT_BASIC_AUTH_FORMAT": ErrorSpec(
        403,
        "잘못된 요청입니다. ':' 를 포함해 인코딩해주세요.",
        "Malformed Basic auth: encode the key followed by ':'.",
    ),
    "FDS_ERROR": ErrorSpec(
        403, "위험거래가 감지되어 결제가 제한됩니다.", "A risky transaction was detected."
    ),
    "FORBIDDEN_CONSECUTIVE_REQUEST": ErrorSpec(
        403,
        "반복적인 요청은 허용되지 않습니다. 잠시 후 다시 시도해주세요.",
        "Repeated requests are not allowed: retry later.",
    ),
    "NOT_CANCELABLE_AMOUNT": ErrorSpec(
        403, "취소 할 수 없는 금액 입니다.", "The amount cannot be canceled."
    ),
    "NOT_CANCELABLE_PAYMENT": ErrorSpec(
        403, "취소 할 수 없는 결제 입니다.", "The payment cannot be canceled."
    ),
    "EXCEED_MAX_REFUND_DUE": ErrorSpec(
        403, "환불 가능한 기간이 지났습니다.", "The refund period has passed."
    ),
    "NOT_ALLOWED_PARTIAL_REFUND_WAITING_DEPOSIT": ErrorSpec(
        403,
        "입금 대기중인 결제는 부분 환불이 불가합니다.",
        "A payment waiting for deposit cannot be partially refunded.",
    ),
    "NOT_ALLOWED_PARTIAL_REFUND": ErrorSpec(
        403,
        "에스크로 주문, 현금 카드 결제일 때는 부분 환불이 불가합니다.",
        "This payment cannot be partially refunded.",
    ),
    "NOT_CANCELABLE_PAYMENT_FOR_DORMANT_USER": ErrorSpec(
        403,
        "휴면 처리된 회원의 결제는 취소할 수 없습니다.",
        "A dormant user's payment cannot be canceled.",
    ),
    "EXCEED_CANCEL_LIMIT": ErrorSpec(
        403, "취소 가능 한도를 초과했습니다.", "The cancel limit was exceeded."
    ),
    # 404
    "NOT_FOUND_PAYMENT": ErrorSpec(
        404, "존재하지 않는 결제 정보 입니다.", "The payment does not exist."
    ),
    "NOT_FOUND_PAYMENT_SESSION": ErrorSpec(
        404,
        "결제 시간이 만료되어 결제 진행 데이터가 존재하지 않습니다.",
        "The payment session expired or does not exist.",
    ),
    "NOT_FOUND": ErrorSpec(404, "존재하지 않는 정보 입니다.", "Not found."),
    # 405 (routing only, not a PG code)
    "METHOD_NOT_ALLOWED": ErrorSpec(405, "허용되지 않는 메소드입니다.", "Method not allowed."),
    # 409
    "IDEMPOTENT_REQUEST_PROCESSING": ErrorSpec(
        409, "이전 멱등 요청이 처리중입니다.", "A request with this idempotency key is in progress."
    ),
    # 500
    "FAILED_INTERNAL_SYSTEM_PROCESSING": ErrorSpec(
        500, "내부 시스템 처리 작업이 실패했습니다.", "Internal processing failed."
    ),
    "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING": ErrorSpec(
        500, "결제가 완료되지 않았어요. 다시 시도해주세요.", "The payment did not complete."
    ),
    "UNKNOWN_PAYMENT_ERROR": ErrorSpec(
        500, "결제에 실패했어요. 같은 문제가 반복된다면 문의해주세요.", "The payment failed."
    ),
    "FAILED_REFUND_PROCESS": ErrorSpec(
        500,
        "은행 응답시간 지연이나 일시적인 오류로 환불요청에 실패했습니다.",
        "The refund failed: the bank was slow or had an error.",
    ),
    "FAILED_PARTIAL_REFUND": ErrorSpec(
        500,
        "은행 점검, 해약 계좌 등의 사유로 부분 환불이 실패했습니다.",
        "The partial refund failed.",
    ),
    "FAILED_METHOD_HANDLING_CANCEL": ErrorSpec(
        500,
        "취소 중 결제 시 사용한 결제 수단 처리과정에서 일시적인 오류가 발생했습니다.",
        "The payment method failed while canceling.",
    ),
    "COMMON_ERROR": ErrorSpec(
        500,
        "일시적인 오류가 발생했습니다. 잠시 후 다시 시도해주세요.",
        "A temporary error occurred.",
    ),
}

# Any POST may answer these (pg-contract.md, Idempotency-Key).
POST_CODES = frozenset({"INVALID_IDEMPOTENCY_KEY", "IDEMPOTENT_REQUEST_PROCESSING"})
AUTH_CODES = frozenset({"UNAUTHORIZED_KEY", "INCORRECT_BASIC_AUTH_FORMAT"})

# The confirm error table, as the contract lists it (47 codes).
CONFIRM_TABLE = frozenset(
    {
        "ALREADY_PROCESSED_PAYMENT", "INVALID_CARD_NUMBER", "INVALID_STOPPED_CARD",
        "INVALID_CARD_EXPIRATION", "INVALID_REJECT_CARD", "EXCEED_MAX_AMOUNT",
        "INVALID_CARD_LOST_OR_STOLEN", "UNAPPROVED_ORDER_ID", "INVALID_REQUEST",
        "EXCEED_MAX_CARD_INSTALLMENT_PLAN", "NOT_ALLOWED_POINT_USE", "INVALID_API_KEY",
        "BELOW_MINIMUM_AMOUNT", "EXCEED_MAX_DAILY_PAYMENT_COUNT",
        "NOT_SUPPORTED_INSTALLMENT_PLAN_CARD_OR_MERCHANT", "INVALID_CARD_INSTALLMENT_PLAN",
        "NOT_SUPPORTED_MONTHLY_INSTALLMENT_PLAN", "EXCEED_MAX_PAYMENT_AMOUNT",
        "NOT_FOUND_TERMINAL_ID", "INVALID_AUTHORIZE_AUTH", "RESTRICTED_TRANSFER_ACCOUNT",
        "INVALID_UNREGISTERED_SUBMALL", "NOT_REGISTERED_BUSINESS",
        "EXCEED_MAX_ONE_DAY_WITHDRAW_AMOUNT", "EXCEED_MAX_ONE_TIME_WITHDRAW_AMOUNT",
        "INVALID_ACCOUNT_INFO_RE_REGISTER", "NOT_AVAILABLE_PAYMENT",
        "EXCEED_MAX_MONTHLY_PAYMENT_AMOUNT", "PROVIDER_ERROR", "CARD_PROCESSING_ERROR",
        "UNAUTHORIZED_KEY",
        "REJECT_CARD_PAYMENT", "REJECT_CARD_COMPANY", "FORBIDDEN_REQUEST",
        "REJECT_ACCOUNT_PAYMENT", "REJECT_TOSSPAY_INVALID_ACCOUNT", "EXCEED_MAX_AUTH_COUNT",
        "EXCEED_MAX_ONE_DAY_AMOUNT", "NOT_AVAILABLE_BANK", "INVALID_PASSWORD",
        "INCORRECT_BASIC_AUTH_FORMAT", "FDS_ERROR",
        "NOT_FOUND_PAYMENT", "NOT_FOUND_PAYMENT_SESSION",
        "FAILED_INTERNAL_SYSTEM_PROCESSING", "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING",
        "UNKNOWN_PAYMENT_ERROR",
    }
)  # fmt: skip
QUERY_TABLE = frozenset(
    {
        "NOT_SUPPORTED_MONTHLY_INSTALLMENT_PLAN_BELOW_AMOUNT", "FORBIDDEN_CONSECUTIVE_REQUEST",
        "INCORRECT_BASIC_AUTH_FORMAT", "NOT_FOUND", "NOT_FOUND_PAYMENT",
        "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING",
    }
)  # fmt: skip
CANCEL_TABLE = frozenset(
    {
        "INVALID_REFUND_ACCOUNT_INFO", "EXCEED_CANCEL_AMOUNT_DISCOUNT_AMOUNT", "INVALID_REQUEST",
        "INVALID_REFUND_ACCOUNT_NUMBER", "INVALID_BANK", "NOT_MATCHES_REFUNDABLE_AMOUNT",
        "PROVIDER_ERROR", "REFUND_REJECTED", "ALREADY_REFUND_PAYMENT",
        "FORBIDDEN_BANK_REFUND_REQUEST", "ALREADY_CANCELED_PAYMENT",
        "NOT_CANCELABLE_AMOUNT", "NOT_CANCELABLE_PAYMENT", "FORBIDDEN_CONSECUTIVE_REQUEST",
        "FORBIDDEN_REQUEST", "EXCEED_MAX_REFUND_DUE", "NOT_ALLOWED_PARTIAL_REFUND_WAITING_DEPOSIT",
        "NOT_ALLOWED_PARTIAL_REFUND", "NOT_AVAILABLE_BANK", "INCORRECT_BASIC_AUTH_FORMAT",
        "NOT_CANCELABLE_PAYMENT_FOR_DORMANT_USER", "EXCEED_CANCEL_LIMIT",
        "FAILED_REFUND_PROCESS", "FAILED_PARTIAL_REFUND", "FAILED_METHOD_HANDLING_CANCEL",
        "COMMON_ERROR", "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING",
    }
)  # fmt: skip

# What each endpoint may answer: its table, plus what every call (auth) or every POST may.
CONFIRM_CODES = CONFIRM_TABLE | AUTH_CODES | POST_CODES
QUERY_CODES = QUERY_TABLE | AUTH_CODES
# "An unknown paymentKey is 404 NOT_FOUND_PAYMENT" (contract, Endpoints).
CANCEL_CODES = CANCEL_TABLE | AUTH_CODES | POST_CODES | {"NOT_FOUND_PAYMENT"}


class Outcome(StrEnum):
    """What the caller may conclude from an error (the contract's reading; Toss publishes none)."""

    UNKNOWN = "UNKNOWN"  # query, then retry with the same key
    MERCHANT = "MERCHANT"  # our configuration is wrong: nothing happened to the payment
    PROBABLY_DONE = "PROBABLY_DONE"  # already processed / canceled: query to be sure
    DECLINED = "DECLINED"  # a definitive answer


UNKNOWN_OUTCOME_CODES = frozenset(
    {
        "PROVIDER_ERROR",
        "CARD_PROCESSING_ERROR",
        "IDEMPOTENT_REQUEST_PROCESSING",
        "FORBIDDEN_CONSECUTIVE_REQUEST",
        "COMMON_ERROR",
    }
)
MERCHANT_CONFIGURATION_CODES = frozenset(
    {
        "UNAUTHORIZED_KEY",
        "INVALID_API_KEY",
        "INCORRECT_BASIC_AUTH_FORMAT",
        "INVALID_IDEMPOTENCY_KEY",
        "NOT_FOUND_TERMINAL_ID",
        "NOT_REGISTERED_BUSINESS",
        "INVALID_UNREGISTERED_SUBMALL",
    }
)
PROBABLY_DONE_CODES = frozenset(
    {"ALREADY_PROCESSED_PAYMENT", "ALREADY_CANCELED_PAYMENT", "ALREADY_REFUND_PAYMENT"}
)


def outcome_of(code: str) -> Outcome:
    if ERRORS[code].status >= 500 or code in UNKNOWN_OUTCOME_CODES:
        return Outcome.UNKNOWN
    if code in MERCHANT_CONFIGURATION_CODES:
        return Outcome.MERCHANT
    if code in PROBABLY_DONE_CODES:
        return Outcome.PROBABLY_DONE
    return Outcome.DECLINED


class PgError(Exception):
    """An answer in the PG's error shape: ``{"code", "message"}`` with the code's status."""

    def __init__(self, code: str, detail: str | None = None) -> None:
        if code not in ERRORS:
            raise ValueError(f"unknown PG error code {code}")
        super().__init__(code)
        self.code = code
        self.detail = detail

    @property
    def status(self) -> int:
        return ERRORS[self.code].status

    @property
    def outcome(self) -> Outcome:
        return outcome_of(self.code)

    def message(self, english: bool = False) -> str:
        spec = ERRORS[self.code]
        text = spec.english if english else spec.korean
        return f"{text} ({self.detail})" if self.detail else text

    def body(self, english: bool = False) -> dict[str, str]:
        return {"code": self.code, "message": self.message(english)}

    @property
    def replayable(self) -> bool:
        """Whether a repeated Idempotency-Key may answer this again: definitive answers only.

        An unknown outcome must let the retry run; a merchant configuration error happened
        before the PG looked at the request, so a retry after the fix runs afresh too."""
        return self.outcome in (Outcome.DECLINED, Outcome.PROBABLY_DONE)


def wants_english(accept_language: str | None) -> bool:
    return bool(accept_language) and str(accept_language).lower().startswith("en")
