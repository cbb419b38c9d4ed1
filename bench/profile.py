"""py-spy's raw (collapsed-stack) output, summarized: where each role spends its samples.

Pure: text in, figures and a table out. Recording is :mod:`bench.spy`'s job.

A collapsed-stack line is ``frame;frame;…;frame COUNT`` from the outermost frame to the
innermost, each frame ``function (path:line)``. A function's *inclusive* share is the part of
the samples whose stack holds it anywhere (counted once however deep the recursion); its *self*
share is the part where it is the innermost frame, the one on the CPU.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP_INCLUSIVE = 12
TOP_SELF = 8

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<path>[^()]*?)(?::(?P<line>\d+))?\)$")
_STDLIB = re.compile(r"/lib/python\d+(?:\.\d+)?/")

Stacks = Counter[tuple[str, ...]]


def parse(text: str, root: Path | str = ROOT) -> Stacks:
    """Samples by stack (outermost first), each frame shortened by :func:`frame_name`."""
    stacks: Stacks = Counter()
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        frames, _, count = line.rpartition(" ")
        if not frames or not count.isdigit():
            continue  # not a sample line
        stack = tuple(frame_name(frame, root) for frame in frames.split(";"))
        stacks[stack] += int(count)
    return stacks


def frame_name(frame: str, root: Path | str = ROOT) -> str:
    """``function (path)``: the line number dropped, the path relative to site-packages, the
    standard library's folder or the repository (py-spy's own short paths are kept)."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    return f"{match['function']} ({short_path(match['path'], root)})"


def short_path(path: str, root: Path | str = ROOT) -> str:
    if "site-packages/" in path:
        return path.rsplit("site-packages/", 1)[1]
    prefix = str(root).rstrip("/") + "/"
    if path.startswith(prefix):
        return path[len(prefix) :]
    stdlib = _STDLIB.search(path)
    if stdlib is not None:
        return path[stdlib.end() :]
    return path


@dataclass(frozen=True)
class Share:
    function: str
    samples: int
    percent: float


@dataclass(frozen=True)
class Summary:
    samples: int
    inclusive: list[Share]
    own: list[Share]


def merge(parts: Iterable[Stacks]) -> Stacks:
    total: Stacks = Counter()
    for part in parts:
        total.update(part)
    return total


def summarize(
    stacks: Mapping[tuple[str, ...], int],
    top_inclusive: int = TOP_INCLUSIVE,
    top_self: int = TOP_SELF,
) -> Summary:
    """Top functions by inclusive and by self share of the samples.

    Functions always on the stack together (the same samples: ``<module>``, ``main``,
    ``Runner.run`` … every sample of a thread has) rank as one line: the innermost of them,
    ``[+N callers]`` telling how many it stands for.
    """
    total = sum(stacks.values())
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    seen_in: dict[str, set[int]] = {}
    depth: dict[str, int] = {}
    for index, (stack, count) in enumerate(stacks.items()):
        if not stack:
            continue
        for position, function in enumerate(stack):
            if function not in seen_in:
                depth[function] = position  # where it sits in the first stack that has it
            seen_in.setdefault(function, set()).add(index)
        for function in set(stack):
            inclusive[function] += count
        own[stack[-1]] += count
    together: dict[frozenset[int], list[str]] = {}
    for function, indices in seen_in.items():
        together.setdefault(frozenset(indices), []).append(function)
    chains: Counter[str] = Counter()
    for functions in together.values():
        innermost = max(functions, key=lambda f: (depth[f], f))
        callers = len(functions) - 1
        plural = "s" if callers > 1 else ""
        label = f"{innermost} [+{callers} caller{plural}]" if callers else innermost
        chains[label] = inclusive[innermost]
    return Summary(total, _top(chains, total, top_inclusive), _top(own, total, top_self))


def _top(counts: Counter[str], total: int, n: int) -> list[Share]:
    # Ties by name, so the order does not depend on the file's.
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n]
    return [
        Share(function, count, 100 * count / total if total else 0.0) for function, count in ranked
    ]


def table(role: str, summary: Summary, max_width: int = 96) -> str:
    lines = [f"{role}: {summary.samples:,} samples of busy threads"]
    if not summary.samples:
        return lines[0]
    names = [s.function for s in summary.inclusive + summary.own]
    width = min(max_width, max(len(name) for name in names))
    for title, shares in (("inclusive", summary.inclusive), ("self", summary.own)):
        lines.append(f"  {'top by ' + title:{width}}      %")
        lines += [f"  {_clip(s.function, width):{width}} {s.percent:6.1f}" for s in shares]
    return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def role_of(process_name: str) -> str:
    """supervisord's ``approval-0`` and ``approval-1`` are one role."""
    return process_name.split("-")[0]


def report(files: Mapping[str, Path], root: Path | str = ROOT) -> str:
    """One table per role from the raw files recorded per process (``name → path``)."""
    by_role: dict[str, list[Stacks]] = {}
    for name, path in sorted(files.items()):
        stacks = parse(path.read_text(errors="replace"), root) if path.exists() else Counter()
        by_role.setdefault(role_of(name), []).append(stacks)
    return "\n\n".join(table(role, summarize(merge(parts))) for role, parts in by_role.items())
