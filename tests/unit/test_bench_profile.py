"""bench.profile: py-spy's collapsed stacks parsed and summarized (no py-spy needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import profile

ROOT = "/work/app"
SITE = "/work/app/.venv/lib/python3.11/site-packages"

# 10 samples in all: main → serve → handle (6, of which 2 in json.dumps), main → idle_loop (4).
MAIN = f"main ({ROOT}/services/order/__main__.py:30)"
SERVE = f"serve ({SITE}/uvicorn/server.py:68)"
HANDLE = f"handle ({ROOT}/services/order/api.py:41)"
SAMPLE = "\n".join(
    [
        f"{MAIN};{SERVE};{HANDLE} 3",
        f"{MAIN};{SERVE.replace(':68', ':70')};{HANDLE.replace(':41', ':44')} 1",
        f"{MAIN};{SERVE};{HANDLE};dumps (/usr/lib/python3.11/json/__init__.py:231) 2",
        f"{MAIN.replace(':30', ':31')};idle_loop (asyncio/base_events.py:607) 4",
    ]
)


def shares(items: list[profile.Share]) -> dict[str, float]:
    return {s.function: s.percent for s in items}


def test_frames_lose_their_line_and_keep_a_short_path() -> None:
    stacks = profile.parse(SAMPLE, ROOT)

    assert sum(stacks.values()) == 10
    # Lines 68 and 70 of serve, 41 and 44 of handle: one function each.
    assert (
        stacks[
            (
                "main (services/order/__main__.py)",
                "serve (uvicorn/server.py)",
                "handle (services/order/api.py)",
            )
        ]
        == 4
    )
    assert ("main (services/order/__main__.py)", "idle_loop (asyncio/base_events.py)") in stacks


@pytest.mark.parametrize(
    ("frame", "short"),
    [
        (f"get ({SITE}/httpx/_client.py:1000)", "get (httpx/_client.py)"),
        (f"run ({ROOT}/shared/http.py:12)", "run (shared/http.py)"),
        ("select (/usr/lib/python3.11/selectors.py:468)", "select (selectors.py)"),
        ("dumps (json/__init__.py:231)", "dumps (json/__init__.py)"),  # py-spy's own short form
        ("<module> (<string>:1)", "<module> (<string>)"),
        ("<lambda> (bench/load.py)", "<lambda> (bench/load.py)"),
        ("process 42", "process 42"),
    ],
)
def test_frame_name(frame: str, short: str) -> None:
    assert profile.frame_name(frame, ROOT) == short


def test_inclusive_counts_a_function_once_per_sample_and_self_only_the_innermost() -> None:
    summary = profile.summarize(profile.parse(SAMPLE, ROOT))

    assert summary.samples == 10
    assert shares(summary.inclusive) == {
        "main (services/order/__main__.py)": 100.0,
        # serve is on the stack in exactly the samples handle is: one line, the innermost.
        "handle (services/order/api.py) [+1 caller]": 60.0,
        "idle_loop (asyncio/base_events.py)": 40.0,
        "dumps (json/__init__.py)": 20.0,
    }
    assert [s.samples for s in summary.inclusive] == [10, 6, 4, 2]
    assert shares(summary.own) == {
        "handle (services/order/api.py)": 40.0,
        "idle_loop (asyncio/base_events.py)": 40.0,
        "dumps (json/__init__.py)": 20.0,
    }
    # Ties by name.
    assert [s.function for s in summary.own][:2] == [
        "handle (services/order/api.py)",
        "idle_loop (asyncio/base_events.py)",
    ]


def test_frames_always_together_rank_as_one_line() -> None:
    text = "a (m.py:1);b (m.py:2);c (m.py:3);d (m.py:4) 3\na (m.py:1);b (m.py:2);c (m.py:3) 1\n"
    summary = profile.summarize(profile.parse(text))

    assert shares(summary.inclusive) == {"c (m.py) [+2 callers]": 100.0, "d (m.py)": 75.0}


def test_recursion_counts_once_inclusively() -> None:
    summary = profile.summarize(profile.parse("f (a.py:1);f (a.py:2);g (a.py:9) 5\ng (a.py:9) 5\n"))

    assert shares(summary.inclusive) == {"g (a.py)": 100.0, "f (a.py)": 50.0}
    assert shares(summary.own) == {"g (a.py)": 100.0}


def test_top_n_and_noise() -> None:
    text = "\n".join(f"f{i} (m.py:1) {i}" for i in range(1, 21)) + "\n\nnot a sample line\n"
    summary = profile.summarize(profile.parse(text), top_inclusive=12, top_self=8)

    assert summary.samples == sum(range(1, 21))
    assert len(summary.inclusive) == 12
    assert len(summary.own) == 8
    assert summary.own[0].function == "f20 (m.py)"
    assert summary.own[0].percent == pytest.approx(100 * 20 / 210)


def test_empty_profile() -> None:
    summary = profile.summarize(profile.parse(""))

    assert (summary.samples, summary.inclusive, summary.own) == (0, [], [])
    assert "0 samples" in profile.table("order", summary)


def test_report_merges_the_workers_of_a_role(tmp_path: Path) -> None:
    (tmp_path / "approval-0.txt").write_text("consume (services/approval/consumer.py:10) 3\n")
    (tmp_path / "approval-1.txt").write_text("consume (services/approval/consumer.py:10) 1\n")
    (tmp_path / "order.txt").write_text(SAMPLE)
    files = {p.stem: p for p in tmp_path.glob("*.txt")} | {"checkout": tmp_path / "missing.txt"}

    text = profile.report(files, ROOT)

    assert "approval: 4 samples" in text
    assert "order: 10 samples" in text
    assert "checkout: 0 samples" in text
    assert "consume (services/approval/consumer.py)" in text
    assert " 100.0" in text
    assert "approval-0" not in text
