"""Production posture: what ``PAYMENTS_MODE=live`` demands of a role's settings, and what
``sandbox`` refuses.

A misconfigured deployment must not start and look healthy. Each rule below is a pure function
of a setting's value that returns the problem in words naming the setting, or None; a role's
``Settings.posture_problems()`` collects the rules that apply to it, and :func:`refuse_unsafe`
stops the process at start with one line on stderr. In ``live``: real keys, the real PG, no demo
data and no default credentials. In ``sandbox`` (the default): test keys only, so a sandbox can
never move real money.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

REAL_TOSS_API = "https://api.tosspayments.com"
REAL_TOSS_SDK_ORIGIN = "https://js.tosspayments.com"

# Passwords shipped as defaults by this project (docker-compose.yml's dev-only-…), the images
# it uses or their documentation.
DEFAULT_PASSWORDS = frozenset({"", "postgres", "guest", "password", "admin", "changeme", "secret"})
DEFAULT_PASSWORD_PREFIX = "dev-only"  # noqa: S105 - what to refuse, not a credential
DEFAULT_USERS = frozenset({"postgres", "guest", "admin", "root"})


class PaymentsMode(enum.StrEnum):
    SANDBOX = "sandbox"
    LIVE = "live"


def secret_key_problem(mode: PaymentsMode, key: str | None) -> str | None:
    """``TOSS_SECRET_KEY``: a live key in live mode, never a live key in sandbox mode."""
    return _key_problem(mode, key, "TOSS_SECRET_KEY", "sk")


def client_key_problem(mode: PaymentsMode, key: str | None) -> str | None:
    """``TOSS_CLIENT_KEY``: the same rule for the browser's key."""
    return _key_problem(mode, key, "TOSS_CLIENT_KEY", "ck")


def _key_problem(mode: PaymentsMode, key: str | None, name: str, kind: str) -> str | None:
    live_prefixes = (f"live_{kind}_", f"live_g{kind}_")
    if mode is PaymentsMode.LIVE:
        if not key:
            return f"{name} is missing: live mode needs the live key (live_{kind}_…)"
        if not key.startswith(live_prefixes):
            return f"{name} is not a live key (live_{kind}_…): live mode refuses test keys"
        return None
    if key and key.startswith(live_prefixes):
        return (
            f"{name} is a live key: sandbox mode takes test keys only (or set PAYMENTS_MODE=live)"
        )
    return None


def api_base_problem(mode: PaymentsMode, api_base: str) -> str | None:
    """``TOSS_API_BASE``: exactly the real PG in live mode (anything else takes no money)."""
    if mode is PaymentsMode.LIVE and api_base.strip().rstrip("/") != REAL_TOSS_API:
        return f"TOSS_API_BASE is not {REAL_TOSS_API}: live mode talks to the real PG only"
    return None


def sdk_origin_problem(mode: PaymentsMode, origin: str) -> str | None:
    """The storefront's SDK origin (``SANDBOX_PUBLIC_URL`` in the gateway): the real SDK's in
    live mode."""
    if mode is PaymentsMode.LIVE and origin.strip().rstrip("/") != REAL_TOSS_SDK_ORIGIN:
        return f"SANDBOX_PUBLIC_URL is not {REAL_TOSS_SDK_ORIGIN}: live mode loads the real SDK"
    return None


def credential_problem(mode: PaymentsMode, name: str, url: str | None) -> str | None:
    """A database or broker URL (``name`` is its setting): in live mode it must be given, with a
    user and a password that are not defaults."""
    if mode is not PaymentsMode.LIVE:
        return None
    if not url:
        return f"{name} is missing: live mode needs this role's own credentials"
    parts = urlsplit(url)
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    if _is_default(user, password):
        return f"{name} uses a default credential: live mode needs a user and password of its own"
    return None


def operator_problem(mode: PaymentsMode, user: str | None, password: str | None) -> str | None:
    """``OPERATOR_USER``/``OPERATOR_PASSWORD``: never a default pair in live mode."""
    if mode is not PaymentsMode.LIVE or (user is None and password is None):
        return None
    if _is_default(user or "", password or ""):
        return "OPERATOR_PASSWORD is missing or a default: live mode needs a password of its own"
    return None


# The console's password guards refunds and replays from the network: long enough that guessing
# it through the gateway is out of reach.
OPERATOR_PASSWORD_MIN_LENGTH = 16


def operator_strength_problem(
    mode: PaymentsMode, user: str | None, password: str | None
) -> str | None:
    """The console's credentials in live mode: none (the console stays closed) or a password of
    at least :data:`OPERATOR_PASSWORD_MIN_LENGTH` characters."""
    if mode is not PaymentsMode.LIVE or not (user or password):
        return None
    if len(password or "") < OPERATOR_PASSWORD_MIN_LENGTH:
        return (
            f"OPERATOR_PASSWORD is weak: live mode needs at least"
            f" {OPERATOR_PASSWORD_MIN_LENGTH} characters"
        )
    return None


def _is_default(user: str, password: str) -> bool:
    return (
        user in DEFAULT_USERS
        or password in DEFAULT_PASSWORDS
        or password == user
        or password.startswith(DEFAULT_PASSWORD_PREFIX)
    )


def demo_data_problem(mode: PaymentsMode, seed_demo_data: bool) -> str | None:
    if mode is PaymentsMode.LIVE and seed_demo_data:
        return "SEED_DEMO_DATA is on: live mode never seeds demo customers (set it to false)"
    return None


def sandbox_problem(mode: PaymentsMode) -> str | None:
    """The sandbox PG is never part of a live deployment."""
    if mode is PaymentsMode.LIVE:
        return "PAYMENTS_MODE is live: the sandbox PG never runs in a live deployment"
    return None


def problems(*found: str | None) -> list[str]:
    return [problem for problem in found if problem is not None]


def refuse_unsafe(role: str, mode: PaymentsMode, found: Iterable[str]) -> None:
    """Exit with status 2 and one line on stderr naming each offending setting, if any."""
    found = list(found)
    if found:
        print(f"{role}: refusing to start in {mode} mode: {'; '.join(found)}", file=sys.stderr)
        raise SystemExit(2)
