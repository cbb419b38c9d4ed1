"""Plumbing for the operator commands (``… security-events``, ``… conflicts``): a time window
from the command line and a plain-text table that is safe to print to a terminal."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"([0-9]{1,6})([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def parse_since(text: str, now: datetime) -> datetime:
    """``--since``: a duration back from ``now`` (``90s``, ``15m``, ``2h``, ``7d``) or an ISO-8601
    time (UTC unless it names its offset). Raises ValueError for anything else."""
    duration = _DURATION.fullmatch(text.strip())
    if duration:
        amount, unit = duration.groups()
        return now - timedelta(**{_UNITS[unit]: int(amount)})
    moment = datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cell(value: object, width: int = 40) -> str:
    """One table cell: printable, on one line, at most ``width`` characters."""
    if value is None:
        return "-"
    text = value.isoformat(timespec="seconds") if isinstance(value, datetime) else str(value)
    text = _UNPRINTABLE.sub("?", text)
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], width: int = 40) -> str:
    """Left-aligned columns under their headers, separated by two spaces."""
    body = [[cell(value, width) for value in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(headers)]
    lines = [headers, ["-" * w for w in widths], *body]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def parse_window(prog: str, argv: Sequence[str], now: datetime) -> tuple[datetime | None, int]:
    """Every operator listing's options, ``--since`` and ``--limit``, checked; exits 2 on bad
    ones with argparse's usage message."""
    tool = argparse.ArgumentParser(prog=prog)
    tool.add_argument("--since", help="a duration back from now (15m, 2h, 7d) or an ISO time")
    tool.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    args = tool.parse_args(argv)
    if args.limit < 1:
        tool.error("--limit must be at least 1")
    try:
        since = parse_since(args.since, now) if args.since else None
    except ValueError:
        tool.error(f"--since {args.since!r}: expected 15m, 2h, 7d or an ISO-8601 time")
    return since, args.limit
