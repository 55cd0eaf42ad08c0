"""`emulate report`: a journal written by `--journal-out` as one HTML page, opened in headless
Chromium (Debian's package: `make test` installs it when it can), compared with a baseline."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from emulator import Emulator
from tests.conftest import BEHAVIORS, PROTOS, emulate

CATALOG = "acme.shop.v1.Catalog"
ORDERS = "acme.shop.v1.Orders"
CHARTS = ("drift", "calls-by-status", "latency", "faults-over-time")
FAULTS = [
    {
        "name": "flaky-catalog",
        "match": {"method": f"{CATALOG}/GetProduct"},
        "when": {"probability": 0.3},
        "abort": {"code": "UNAVAILABLE", "message": "catalog down"},
    },
    {
        "name": "slow-orders",
        "match": {"method": f"{ORDERS}/*"},
        "when": {"probability": 0.5},
        "delay": {"uniform": ["5ms", "20ms"]},
    },
]


def _journal(path: Path, faults: list[dict[str, Any]]) -> Path:
    """Calls of three kinds to a real emulator writing `journal.out`, seeded, so the faults
    fall on the same calls in every run."""
    with Emulator(
        protos=PROTOS, behaviors=BEHAVIORS, seed=3, faults=faults, journal={"out": str(path)}
    ) as emu:
        catalog, orders = emu.stub(CATALOG), emu.stub(ORDERS)
        order = {"customer_id": "c1", "line_items": [{"product_id": "p1", "quantity": 1}]}
        for i in range(40):
            with contextlib.suppress(grpc.RpcError):
                catalog.GetProduct({"product_id": f"p{i}"})
            with contextlib.suppress(grpc.RpcError):
                orders.CreateOrder(order if i % 8 else {})  # every 8th: refused
            with contextlib.suppress(grpc.RpcError):
                list(catalog.ListProducts({}))
    return path


@pytest.fixture(scope="module")
def journals(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a journal with faults, a baseline journal of the same calls without them)."""
    folder = tmp_path_factory.mktemp("journals")
    return _journal(folder / "run.jsonl", FAULTS), _journal(folder / "baseline.jsonl", [])


def report(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return emulate("report", *map(str, args))


# -- headless Chromium ------------------------------------------------------------------------


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `make test` installs it (scripts/browser)")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; or make test)")
    return found


def browse(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on `page` with console messages logged to stderr; no network."""
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",  # root (CI) has no user namespace sandbox
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--enable-logging=stderr",
        "--v=0",
        # Any request off the machine fails: a page that needed the network would show it.
        "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        *args,
        page.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done


def console_messages(stderr: str) -> list[str]:
    """The page's console messages (errors, warnings, logs) that Chromium logged."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_the_console_check_sees_a_page_with_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>console.error('x'); missing();</script></body></html>")
    found = console_messages(browse(broken, tmp_path, "--dump-dom").stderr)
    assert any("Uncaught ReferenceError: missing is not defined" in m for m in found), found


def test_the_page_renders_its_charts_in_chromium(
    journals: tuple[Path, Path], tmp_path: Path
) -> None:
    run, baseline = journals
    page = tmp_path / "report.html"
    done = report(run, "-o", page, "--baseline", baseline)
    assert done.returncode == 0, done.stderr
    html = page.read_text(encoding="utf-8")
    # Self-contained: nothing is loaded from anywhere.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html, re.IGNORECASE)
    assert "<script" not in html and "<link" not in html

    dom = browse(page, tmp_path, "--dump-dom")
    assert console_messages(dom.stderr) == []
    for name in CHARTS:
        chart = re.search(rf'<svg class="chart" data-chart="{name}".*?</svg>', dom.stdout, re.S)
        assert chart is not None, f"no {name} chart in the page"
        assert chart.group(0).count("<path") > 10, f"the {name} chart drew nothing"
    for method in (f"{CATALOG}/GetProduct", f"{ORDERS}/CreateOrder", f"{CATALOG}/ListProducts"):
        assert f"<code>{method}</code>" in dom.stdout
    assert 'id="failed-table"' in dom.stdout and "catalog down" in dom.stdout
    assert "an order needs at least one line item" in dom.stdout
    assert 'id="slowest-table"' in dom.stdout

    shot = tmp_path / "report.png"
    taken = browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1200,2400")
    assert console_messages(taken.stderr) == []
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1200, 2400)
        data = image.convert("RGB").resize((300, 600)).tobytes()
        pixels = [(data[i], data[i + 1], data[i + 2]) for i in range(0, len(data), 3)]
        colours = set(pixels)
        ink = sum(1 for p in pixels if sum(p) < 720) / len(pixels)
        # Not blank: text, tables and charts cover a good part of the page, in many colours,
        # among them the green of OK bars and the blue of the latency boxes.
        assert ink > 0.05 and len(colours) > 50
        assert any(_near(p, (0x3A, 0x9D, 0x5D)) for p in pixels), "no OK bars on the screen"
        assert any(_near(p, (0x3B, 0x6F, 0xB6)) for p in pixels), "no latency boxes"


def _near(pixel: tuple[int, int, int], colour: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 12 for a, b in zip(pixel, colour, strict=True))


# -- drift --------------------------------------------------------------------------------------

START = datetime.datetime(2026, 1, 5, 9, 0, tzinfo=datetime.UTC)


def _calls(path: Path, method: str, seconds: list[float], codes: list[str] | None = None) -> Path:
    """A journal of `method` calls taking `seconds` each, as --journal-out writes them (only
    the fields a report reads; the rest are optional)."""
    with path.open("a", encoding="utf-8") as out:
        for i, duration in enumerate(seconds):
            line = {
                "index": i + 1,
                "method": method,
                "code": codes[i] if codes else "OK",
                "startedAt": (START + datetime.timedelta(seconds=i)).isoformat(),
                "durationSeconds": duration,
                "faults": [],
            }
            out.write(json.dumps(line) + "\n")
    return path


GET = f"{CATALOG}/GetProduct"
CREATE = f"{ORDERS}/CreateOrder"


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    path = _calls(tmp_path / "baseline.jsonl", GET, [0.010] * 20)
    return _calls(path, CREATE, [0.050] * 20)


def test_within_the_thresholds_nothing_drifts(baseline: Path, tmp_path: Path) -> None:
    run = _calls(tmp_path / "run.jsonl", GET, [0.012] * 20)  # +20%: within 50%
    _calls(run, CREATE, [0.045] * 20)  # -10%
    done = report(run, "-o", tmp_path / "r.html", "--baseline", baseline, "--fail-on-drift")
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.splitlines()[-1] == f"no drift: 2 methods within the thresholds of {baseline}"
    )
    page = (tmp_path / "r.html").read_text()
    assert 'class="drift"' not in page and page.count('<td class="verdict">ok</td>') == 2


def test_slower_and_faster_both_drift(baseline: Path, tmp_path: Path) -> None:
    run = _calls(tmp_path / "run.jsonl", GET, [0.030] * 20)  # 3x the baseline
    _calls(run, CREATE, [0.010] * 20)  # 80% faster: the emulator answers too fast
    done = report(run, "-o", tmp_path / "r.html", "--baseline", baseline)
    assert done.returncode == 0, done.stderr  # reported, but no --fail-on-drift
    assert done.stdout.splitlines()[1:] == [
        f"drift: {GET}: p50 30ms vs 10ms: 3x slower; p99 30ms vs 10ms: 3x slower",
        f"drift: {CREATE}: p50 10ms vs 50ms: 80% faster; p99 10ms vs 50ms: 80% faster",
    ]
    page = (tmp_path / "r.html").read_text()
    assert page.count('<tr class="drift">') == 2
    assert "drift: p50 30ms vs 10ms: 3x slower" in page
    failing = report(run, "-o", tmp_path / "r.html", "--baseline", baseline, "--fail-on-drift")
    assert failing.returncode == 1 and failing.stdout == done.stdout


def test_a_higher_error_rate_drifts_and_the_threshold_is_the_flags(
    baseline: Path, tmp_path: Path
) -> None:
    codes = ["UNAVAILABLE"] * 4 + ["OK"] * 16  # 20% against the baseline's 0%
    run = _calls(tmp_path / "run.jsonl", GET, [0.010] * 20, codes)
    _calls(run, CREATE, [0.070] * 20)  # +40%
    args = ["-o", tmp_path / "r.html", "--baseline", baseline, "--fail-on-drift"]
    done = report(run, *args)
    assert done.returncode == 1
    assert done.stdout.splitlines()[1:] == [f"drift: {GET}: error rate 20% vs 0%"]
    strict = report(run, *args, "--threshold", "30%", "--error-threshold", "25")
    assert strict.returncode == 1
    assert strict.stdout.splitlines()[1:] == [
        f"drift: {CREATE}: p50 70ms vs 50ms: 40% slower; p99 70ms vs 50ms: 40% slower"
    ]


def test_methods_in_one_journal_only_are_listed_not_flagged(baseline: Path, tmp_path: Path) -> None:
    run = _calls(tmp_path / "run.jsonl", GET, [0.010] * 5)
    _calls(run, f"{ORDERS}/Ping", [0.001] * 5)
    done = report(run, "-o", tmp_path / "r.html", "--baseline", baseline, "--fail-on-drift")
    assert done.returncode == 0, done.stdout
    page = (tmp_path / "r.html").read_text()
    assert "only in the baseline" in page and "not in the baseline" in page


# -- the command --------------------------------------------------------------------------------


def test_emulate_help_lists_report() -> None:
    done = emulate("--help")
    assert "emulate report   a --journal-out journal as one HTML page" in done.stdout


def test_an_empty_journal_is_a_page_that_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    done = report(empty, "-o", tmp_path / "r.html")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{tmp_path / 'r.html'}: 0 calls, 0 methods, 0 failed\n"
    assert "The journal has no calls." in (tmp_path / "r.html").read_text()


GOOD = (
    '{"method": "a.B/C", "code": "OK", "startedAt": "2026-01-05T09:00:00Z", "durationSeconds": 0.1}'
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{GOOD}\n{{not json\n", "2: not JSON (Expecting property name enclosed in double quotes"),
        (f"{GOOD}\n\n[1, 2]\n", "3: not a call record (a JSON object), but a list"),
        ('{"method": "a.B/C", "code": "OK"}\n', "1: not a call record: no startedAt, "),
        (GOOD.replace("0.1", '"fast"') + "\n", "1: durationSeconds must be a number of seconds"),
        (GOOD.replace('"OK"', "7") + "\n", "1: code must be a non-empty string, not a number"),
        (GOOD.replace("2026-01-05T09:00:00Z", "monday") + "\n", "1: startedAt 'monday' is not"),
    ],
    ids=["not-json", "not-an-object", "missing-fields", "duration", "code", "time"],
)
def test_bad_input_is_one_line_naming_the_file_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(text)
    for args in ([bad], [_calls(tmp_path / "ok.jsonl", GET, [0.01]), "--baseline", bad]):
        done = report(*args, "-o", tmp_path / "r.html")
        assert done.returncode == 2
        [line] = done.stderr.splitlines()
        assert line.startswith(f"emulate report: error: {bad}:{message}"), line
    assert not (tmp_path / "r.html").exists()


def test_a_missing_journal_is_one_line(tmp_path: Path) -> None:
    done = report(tmp_path / "nope.jsonl", "-o", tmp_path / "r.html")
    assert done.returncode == 2
    assert done.stderr == f"emulate report: error: {tmp_path / 'nope.jsonl'}: no such file\n"


def test_fail_on_drift_needs_a_baseline(tmp_path: Path) -> None:
    done = report(_calls(tmp_path / "ok.jsonl", GET, [0.01]), "--fail-on-drift")
    assert done.returncode == 2 and "--fail-on-drift needs --baseline" in done.stderr


def test_the_same_journal_makes_the_same_page(journals: tuple[Path, Path], tmp_path: Path) -> None:
    run, baseline = journals
    pages = []
    for seed in ("1", "2"):  # string hashing differs between processes: orders must not
        page = tmp_path / f"report-{seed}.html"
        command = ["report", str(run), "-o", str(page), "--baseline", str(baseline)]
        subprocess.run(
            [sys.executable, "-m", "emulator", *command],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            check=True,
            timeout=120,
        )
        pages.append(page.read_bytes())
    assert pages[0] == pages[1]


def test_text_from_the_calls_is_escaped_and_never_mathtext(tmp_path: Path) -> None:
    hostile = {
        "method": "x.Y/<script>alert(1)</script>",
        "code": "UNAVAILABLE",
        "startedAt": "2026-01-05T09:00:00Z",
        "durationSeconds": 0.01,
        "faults": ["costs $5 a $call"],  # `$...$` would be mathtext to matplotlib
        "details": "<img src=x onerror=alert(1)>",
    }
    journal = tmp_path / "hostile.jsonl"
    journal.write_text(json.dumps(hostile) + "\n")
    done = report(journal, "-o", tmp_path / "r.html")
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "r.html").read_text()
    assert "<script" not in page and "<img" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert page.count("costs $5 a $call") >= 2  # the chart's legend and the table
