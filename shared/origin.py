"""Whether a request comes from our own pages: the CSRF check of the storefront's session and
of the operator console."""

from __future__ import annotations

from urllib.parse import urlsplit


def same_origin(origin: str | None, host: str | None) -> bool:
    """Whether ``origin`` (an Origin header, or a Referer) names the host the request was sent
    to. Host and port are compared: one port serves one scheme, so the scheme adds nothing."""
    if not origin or not host or origin == "null":
        return False
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == host.strip().lower()
