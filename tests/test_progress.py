"""ProgressCombiner, ItemsSummary/PYOUTHelper and the humanize-compatible formatters.

The expected records below were derived from spec §6.4 by hand and cross-checked against
dandi-cli's own ``ProgressCombiner`` (same inputs, same records, same key order).  Key order is
asserted because the debug format prints the records' ``repr``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dandiget.compat import progress
from dandiget.compat.progress import (
    DLState,
    DownloadProgress,
    ItemsSummary,
    ProgressCombiner,
    PYOUTHelper,
    naturaldelta,
    naturalsize,
    pairing,
)

Feed = list[tuple[str, dict[str, Any]]]


def run_combiner(zarr_size: int, file_qty: int | None, feed: Feed) -> list[list[tuple[str, Any]]]:
    pc = ProgressCombiner(zarr_size=zarr_size, file_qty=file_qty)
    return [list(rec.items()) for path, status in feed for rec in pc.feed(path, status)]


def items(*records: dict[str, Any]) -> list[list[tuple[str, Any]]]:
    return [list(r.items()) for r in records]


def test_enums_and_defaults() -> None:
    assert [(s.name, s.value) for s in DLState] == [
        ("STARTING", 1),
        ("DOWNLOADING", 2),
        ("SKIPPED", 3),
        ("ERROR", 4),
        ("DONE", 5),
    ]
    assert DownloadProgress() == DownloadProgress(downloaded=0, size=None)
    pc = ProgressCombiner(zarr_size=10)
    assert (pc.file_qty, pc.total_downloaded, pc.maxsize, pc.prev_status) == (None, 0, 0, "")
    assert (pc.yielded_size, pc.files_fed, pc.downloading, dict(pc.file_states)) == (
        False,
        0,
        {},
        {},
    )


def test_worked_example_from_spec() -> None:
    """Two entries (42 B and 127 B) downloading at the same time, both succeed (§6.4)."""
    feed: Feed = [
        ("a", {"size": 42}),
        ("a", {"status": "downloading"}),
        ("b", {"size": 127}),
        ("b", {"status": "downloading"}),
        ("a", {"done": 20, "done%": 20 / 42 * 100}),
        ("b", {"done": 100, "done%": 100 / 127 * 100}),
        ("a", {"done": 42, "done%": 100.0}),
        ("b", {"done": 127, "done%": 100.0}),
        ("a", {"checksum": "ok"}),
        ("a", {"status": "setting mtime"}),
        ("a", {"status": "done"}),
        ("b", {"checksum": "ok"}),
        ("b", {"status": "setting mtime"}),
        ("b", {"status": "done"}),
    ]
    assert run_combiner(169, 2, feed) == items(
        {"size": 169},
        {"status": "downloading"},
        {"done": 0, "done%": 0.0},
        {"done": 20, "done%": 20 / 169 * 100},
        {"done": 120, "done%": 120 / 169 * 100},
        {"done": 142, "done%": 142 / 169 * 100},
        {"done": 169, "done%": 100.0},
        {"message": "1 done", "done": 169, "done%": 100.0},
        {"message": "2 done", "status": "done", "done": 169, "done%": 100.0},
    )


OK_A = [("a", {"checksum": "ok"}), ("a", {"status": "setting mtime"}), ("a", {"status": "done"})]
OK_B = [("b", {"checksum": "ok"}), ("b", {"status": "setting mtime"}), ("b", {"status": "done"})]

# (id, zarr_size, file_qty, feed, expected records).  Sizes are powers of two so that the
# percentages are exact.
COMBINER_CASES: list[tuple[str, int, int, Feed, list[dict[str, Any]]]] = [
    (
        "interleaved-both-ok",
        256,
        2,
        [
            ("a", {"size": 64}),
            ("a", {"status": "downloading"}),
            ("b", {"size": 192}),
            ("b", {"status": "downloading"}),
            ("a", {"done": 32, "done%": 50.0}),
            ("b", {"done": 96, "done%": 50.0}),
            ("a", {"done": 64, "done%": 100.0}),
            ("b", {"done": 192, "done%": 100.0}),
            *OK_A,
            *OK_B,
        ],
        [
            {"size": 256},
            {"status": "downloading"},
            {"done": 0, "done%": 0.0},
            {"done": 32, "done%": 12.5},
            {"done": 128, "done%": 50.0},
            {"done": 160, "done%": 62.5},
            {"done": 256, "done%": 100.0},
            {"message": "1 done", "done": 256, "done%": 100.0},
            {"message": "2 done", "status": "done", "done": 256, "done%": 100.0},
        ],
    ),
    (
        "serial-both-ok",
        256,
        2,
        [
            ("a", {"size": 64}),
            ("a", {"status": "downloading"}),
            ("a", {"done": 32, "done%": 50.0}),
            ("a", {"done": 64, "done%": 100.0}),
            *OK_A,
            ("b", {"size": 192}),
            ("b", {"status": "downloading"}),
            ("b", {"done": 192, "done%": 100.0}),
            *OK_B,
        ],
        [
            {"size": 256},
            {"status": "downloading"},
            {"done": 32, "done%": 12.5},
            {"done": 64, "done%": 25.0},
            {"message": "1 done", "done": 64, "done%": 25.0},
            {"done": 256, "done%": 100.0},
            {"message": "2 done", "status": "done", "done": 256, "done%": 100.0},
        ],
    ),
    (
        "interleaved-entry-error",
        256,
        2,
        [
            ("a", {"size": 64}),
            ("a", {"status": "downloading"}),
            ("b", {"size": 192}),
            ("b", {"status": "downloading"}),
            ("a", {"done": 64, "done%": 100.0}),
            ("b", {"done": 96, "done%": 50.0}),
            ("b", {"status": "error", "message": "Connection reset"}),
            ("a", {"checksum": "ok"}),
            ("a", {"status": "done"}),
        ],
        [
            {"size": 256},
            {"status": "downloading"},
            {"done": 0, "done%": 0.0},
            {"done": 64, "done%": 25.0},
            {"done": 160, "done%": 62.5},
            # the failed entry's bytes no longer count
            {"message": "1 errored", "done": 64, "done%": 25.0},
            {"message": "1 done, 1 errored", "status": "error", "done": 64, "done%": 25.0},
        ],
    ),
    (
        "serial-entry-error",
        256,
        2,
        [
            ("a", {"size": 64}),
            ("a", {"status": "downloading"}),
            ("a", {"done": 32, "done%": 50.0}),
            ("a", {"status": "error", "message": "Connection reset"}),
            ("b", {"size": 192}),
            ("b", {"status": "downloading"}),
            ("b", {"done": 192, "done%": 100.0}),
            *OK_B,
        ],
        [
            {"size": 256},
            {"status": "downloading"},
            {"done": 32, "done%": 12.5},
            {"message": "1 errored", "done": 0, "done%": 0.0},
            {"done": 192, "done%": 75.0},
            {"message": "1 done, 1 errored", "status": "error", "done": 192, "done%": 75.0},
        ],
    ),
    (
        "checksum-error",
        256,
        2,
        [
            ("a", {"size": 64}),
            ("a", {"status": "downloading"}),
            ("a", {"done": 64, "done%": 100.0}),
            *OK_A,
            ("b", {"size": 192}),
            ("b", {"status": "downloading"}),
            ("b", {"done": 192, "done%": 100.0}),
            (
                "b",
                {"checksum": "differs", "status": "error", "message": "md5: downloaded x != y"},
            ),
        ],
        [
            {"size": 256},
            {"status": "downloading"},
            {"done": 64, "done%": 25.0},
            {"message": "1 done", "done": 64, "done%": 25.0},
            {"done": 256, "done%": 100.0},
            # the bytes of a checksum failure did arrive: they keep counting
            {"message": "1 done, 1 errored", "status": "error", "done": 256, "done%": 100.0},
        ],
    ),
    (
        "single-skip-empty-zarr",
        0,
        1,
        [("a", {"status": "skipped", "message": "already exists"})],
        [{"message": "1 skipped", "status": "skipped"}],
    ),
    (
        "skip-without-size-then-download",
        256,
        2,
        [
            ("a", {"status": "skipped", "message": "already exists"}),
            ("b", {"size": 192}),
            ("b", {"status": "downloading"}),
            ("b", {"done": 192, "done%": 100.0}),
            *OK_B,
        ],
        [
            {"message": "1 skipped", "done": 0, "done%": 0.0},
            {"size": 256},
            {"status": "downloading"},
            {"done": 192, "done%": 75.0},
            {"message": "1 done, 1 skipped", "status": "done", "done": 192, "done%": 75.0},
        ],
    ),
    (
        "skip-with-size-then-download",
        256,
        2,
        [
            ("a", {"status": "skipped", "message": "same time and size", "size": 64}),
            ("b", {"size": 192}),
            ("b", {"status": "downloading"}),
            ("b", {"done": 192, "done%": 100.0}),
            *OK_B,
        ],
        [
            {"size": 256},
            # skipped bytes count as done
            {"message": "1 skipped", "done": 64, "done%": 25.0},
            {"status": "downloading"},
            {"done": 256, "done%": 100.0},
            {"message": "1 done, 1 skipped", "status": "done", "done": 256, "done%": 100.0},
        ],
    ),
    (
        "done-errored-skipped",
        512,
        3,
        [
            ("s", {"status": "skipped", "message": "already exists"}),
            ("a", {"size": 64}),
            ("c", {"size": 192}),
            ("a", {"status": "downloading"}),
            ("c", {"status": "downloading"}),
            ("a", {"done": 64, "done%": 100.0}),
            ("c", {"done": 32, "done%": 100 / 6}),
            ("c", {"status": "error", "message": "Connection reset"}),
            ("a", {"checksum": "ok"}),
            ("a", {"status": "done"}),
        ],
        [
            {"message": "1 skipped", "done": 0, "done%": 0.0},
            {"size": 512},
            {"status": "downloading"},
            {"done": 64, "done%": 12.5},
            {"done": 96, "done%": 18.75},
            {"message": "1 errored, 1 skipped", "done": 64, "done%": 12.5},
            {
                "message": "1 done, 1 errored, 1 skipped",
                "status": "error",
                "done": 64,
                "done%": 12.5,
            },
        ],
    ),
]


@pytest.mark.parametrize(
    ("zarr_size", "file_qty", "feed", "expected"),
    [case[1:] for case in COMBINER_CASES],
    ids=[case[0] for case in COMBINER_CASES],
)
def test_progress_combiner(
    zarr_size: int, file_qty: int, feed: Feed, expected: list[dict[str, Any]]
) -> None:
    assert run_combiner(zarr_size, file_qty, feed) == items(*expected)


def test_status_waits_for_the_listing() -> None:
    """Until ``file_qty`` is known the Zarr cannot be declared done."""
    pc = ProgressCombiner(zarr_size=4)
    feed: Feed = [
        ("a", {"size": 4}),
        ("a", {"status": "downloading"}),
        ("a", {"done": 4, "done%": 100.0}),
        ("a", {"status": "done"}),
    ]
    out = [r for p, s in feed for r in pc.feed(p, s)]
    assert out[-1] == {"message": "1 done", "done": 4, "done%": 100.0}
    assert pc.prev_status == "downloading"
    pc.file_qty = 1
    assert pc.get_status() == {"message": "1 done", "status": "done", "done": 4, "done%": 100.0}
    # reported once: the status key is only present when it changes
    assert pc.get_status() == {"message": "1 done", "done": 4, "done%": 100.0}
    assert pc.get_status(report_done=False) == {}


def test_empty_listing_is_skipped() -> None:
    pc = ProgressCombiner(zarr_size=0, file_qty=0)
    assert pc.get_status() == {"status": "skipped"}
    assert pc.get_done() == {"done": 0, "done%": 0}


def test_ignored_and_unexpected_records(caplog: pytest.LogCaptureFixture) -> None:
    pc = ProgressCombiner(zarr_size=10)
    assert list(pc.feed("a", {"checksum": "-"})) == []
    assert list(pc.feed("a", {"status": "setting mtime"})) == []
    with caplog.at_level(logging.WARNING, logger="dandiget"):
        assert list(pc.feed("a", {"foo": 1})) == []
    assert "Unexpected download status dict received for 'a'" in caplog.text


def test_terminal_record_for_unannounced_entry_is_counted() -> None:
    """dandi-cli raises KeyError here; dandiget counts the entry instead."""
    pc = ProgressCombiner(zarr_size=10, file_qty=1)
    assert list(pc.feed("a", {"status": "error", "message": "boom"})) == [
        {"message": "1 errored", "status": "error", "done": 0, "done%": 0.0}
    ]
    assert pc.files_fed == 1
    assert pc.file_states[DLState.DOWNLOADING] == 0


@st.composite
def entry_streams(draw: st.DrawFn) -> tuple[int, Feed, int]:
    """A random Zarr: per-entry protocol-valid streams, randomly interleaved.

    Returns (zarr_size, feed, bytes that must count as done at the end).
    """
    n = draw(st.integers(0, 5))
    streams: list[list[tuple[str, dict[str, Any]]]] = []
    expected_done = 0
    zarr_size = 0
    for i in range(n):
        path = f"e{i}"
        size = draw(st.integers(0, 1000))
        zarr_size += size
        kind = draw(st.sampled_from(["ok", "error", "checksum", "skip", "skip-size"]))
        if kind == "skip":
            streams.append([(path, {"status": "skipped", "message": "already exists"})])
            continue
        if kind == "skip-size":
            expected_done += size
            streams.append([(path, {"status": "skipped", "size": size})])
            continue
        got = draw(st.integers(0, size)) if kind == "error" else size
        recs: list[tuple[str, dict[str, Any]]] = [
            (path, {"size": size}),
            (path, {"status": "downloading"}),
            (path, {"done": got}),
        ]
        if kind == "error":
            recs.append((path, {"status": "error", "message": "x"}))
        elif kind == "checksum":
            expected_done += size
            recs.append((path, {"checksum": "differs", "status": "error", "message": "x"}))
        else:
            expected_done += size
            recs += [(path, {"checksum": "ok"}), (path, {"status": "done"})]
        streams.append(recs)
    feed: Feed = []
    while any(streams):
        live = [s for s in streams if s]
        feed.append(draw(st.sampled_from(live)).pop(0))
    return zarr_size, feed, expected_done


@given(entry_streams())
@settings(max_examples=200, deadline=None)
def test_combiner_invariants(case: tuple[int, Feed, int]) -> None:
    zarr_size, feed, expected_done = case
    pc = ProgressCombiner(zarr_size=zarr_size, file_qty=len({p for p, _ in feed}))
    out = [r for p, s in feed for r in pc.feed(p, s)]
    assert pc.total_downloaded == expected_done
    assert [r for r in out if "size" in r] == (
        [{"size": zarr_size}] if any("size" in s for _, s in feed) else []
    )
    statuses = [r["status"] for r in out if "status" in r]
    if feed:
        # at most one "downloading", then exactly one final status
        final = (
            "error"
            if pc.file_states[DLState.ERROR]
            else ("done" if pc.file_states[DLState.DONE] else "skipped")
        )
        assert statuses[-1] == final
        assert set(statuses[:-1]) <= {"downloading"} and len(statuses) <= 2
    else:
        assert statuses == []
    assert pc.file_states[DLState.STARTING] == pc.file_states[DLState.DOWNLOADING] == 0


# --------------------------------------------------------------------------- ItemsSummary


def test_items_summary_counts_dicts_and_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress.time, "time", lambda: 1000.0)
    s = ItemsSummary()
    assert s.as_dict() == {"files": 0, "size": 0, "has_unknown_sizes": False}
    assert s.t0 is None
    assert s({"path": "a", "size": 10}) is s
    assert s.t0 == 1000.0

    class Asset:
        size = 5

    monkeypatch.setattr(progress.time, "time", lambda: 2000.0)
    s(Asset(), s)
    assert s.t0 == 1000.0  # set by the first item only
    assert s.as_dict() == {"files": 2, "size": 15, "has_unknown_sizes": False}
    s({"path": "b"})
    assert s.as_dict() == {"files": 3, "size": 15, "has_unknown_sizes": True}


def test_pairing() -> None:
    assert list(pairing("p", iter([{"a": 1}, {"b": 2}]))) == [("p", {"a": 1}), ("p", {"b": 2})]


# --------------------------------------------------------------------------- PYOUTHelper


def test_agg_size() -> None:
    h = PYOUTHelper()
    assert h.agg_size([]) == ""
    h.items_summary({"size": 3000})
    assert h.agg_size([1000]) == ["1.0 kB", ">+2.0 kB"]
    h.it.finished = True
    assert h.agg_size([1000]) == ["1.0 kB", "+2.0 kB"]
    assert h.agg_size([1000, 2000]) == ["3.0 kB"]
    h.items_summary.has_unknown_sizes = True
    assert h.agg_size([1000, 2000]) == ["3.0 kB", "+0 Bytes+?"]
    # more shown than enumerated: the remainder line is dropped
    assert h.agg_size([5000]) == ["5.0 kB"]


def test_agg_done_percentages() -> None:
    h = PYOUTHelper()
    assert h.agg_done([]) == ["0 Bytes", "<0.00%"]
    h.it.finished = True
    assert h.agg_done([]) == ["0 Bytes", "100.00%"]
    h = PYOUTHelper()
    h.items_summary({"size": 4})
    h.items_summary.t0 = None
    assert h.agg_done([1]) == ["1 Byte", "<25.00%"]
    h.items_summary.has_unknown_sizes = True
    assert h.agg_done([1]) == ["1 Byte", "<?25.00%"]
    h.it.finished = True
    assert h.agg_files() == "1"
    assert h.agg_done([4]) == ["4 Bytes", "?100.00%"]


def test_pyouthelper_time_remaining_1339(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ETA counts down and disappears at 100% (dandi-cli issue #1339, spec row 40)."""
    now = [1_000_000.0]
    monkeypatch.setattr(progress.time, "time", lambda: now[0])
    h = PYOUTHelper()
    h.items_summary({"path": "a", "size": 100})
    t0 = h.items_summary.t0
    assert t0 == now[0]
    assert h.agg_files() == "1+"

    def at(elapsed: float, done: int) -> list[str]:
        now[0] = t0 + elapsed
        return h.agg_done([done])

    # half done after 5 hours: as long again to go
    assert at(5 * 3600, 50) == ["50 Bytes", "<50.00%", "ETA: 5 hours<"]
    assert at(5 * 60, 50) == ["50 Bytes", "<50.00%", "ETA: 5 minutes<"]
    for remaining in range(10, 1, -1):
        assert at(remaining, 50)[-1] == f"ETA: {remaining} seconds<"
    assert at(1, 50)[-1] == "ETA: a second<"
    assert at(10, 100) == ["100 Bytes", "<100.00%"]
    h.it.finished = True
    assert at(10, 50) == ["50 Bytes", "50.00%", "ETA: 10 seconds"]
    h.items_summary.has_unknown_sizes = True
    assert at(10, 50) == ["50 Bytes", "?50.00%", "ETA: 10 seconds+?"]


# --------------------------------------------------------------------------- formatting

# Outputs of humanize 4.17 (naturalsize(v), naturaldelta(v)) for these inputs.
SIZES = [
    (0, "0 Bytes"),
    (1, "1 Byte"),
    (-1, "-1 Byte"),
    (42, "42 Bytes"),
    (999, "999 Bytes"),
    (999.9, "999 Bytes"),
    (1000, "1.0 kB"),
    (1049.99, "1.0 kB"),
    (1234567, "1.2 MB"),
    (-1500, "-1.5 kB"),
    (999949, "999.9 kB"),
    (999950, "1.0 MB"),
    (10**24, "1.0 YB"),
    (10**27, "1.0 RB"),
    (10**30, "1.0 QB"),
    (10**33, "1000.0 QB"),
]

DELTAS = [
    (0, "a moment"),
    (0.99, "a moment"),
    (0.9999999, "a second"),
    (1, "a second"),
    (1.5, "a second"),
    (2, "2 seconds"),
    (59.9, "59 seconds"),
    (59.9999999, "a minute"),
    (60, "a minute"),
    (89, "a minute"),
    (90, "2 minutes"),
    (150, "2 minutes"),
    (150.6, "2 minutes"),
    (151, "3 minutes"),
    (3569, "59 minutes"),
    (3570, "an hour"),
    (5399, "an hour"),
    (5400, "2 hours"),
    (5 * 3600, "5 hours"),
    (84599, "23 hours"),
    (84600, "a day"),
    (172400, "a day"),
    (172800, "2 days"),
    (15 * 86400, "15 days"),
    (16 * 86400, "a month"),
    (46 * 86400, "2 months"),
    (350 * 86400, "11 months"),
    (351 * 86400, "a year"),
    (365 * 86400, "a year"),
    (366 * 86400, "1 year, 1 day"),
    (380 * 86400, "1 year, 15 days"),
    (381 * 86400, "1 year, 1 month"),
    (700 * 86400, "1 year, 11 months"),
    (716 * 86400, "2 years"),
    (912 * 86400, "2 years"),
    (913 * 86400, "3 years"),
    (365183 * 86400, "1,001 years"),
    (1e12, "31,710 years"),
    (-5, "5 seconds"),
    (-3600, "an hour"),
]


@pytest.mark.parametrize(("value", "text"), SIZES)
def test_naturalsize(value: float, text: str) -> None:
    assert naturalsize(value) == text


@pytest.mark.parametrize(("value", "text"), DELTAS)
def test_naturaldelta(value: float, text: str) -> None:
    assert naturaldelta(value) == text


def test_naturaldelta_huge_does_not_overflow() -> None:
    assert naturaldelta(1e15).endswith(" years")


def test_time_module_is_patchable() -> None:
    """The ETA reads ``time.time`` through the module, so tests can freeze it."""
    assert progress.time is time
