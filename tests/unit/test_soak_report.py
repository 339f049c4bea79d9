"""The soak's criteria and verdict (tools/bench/soak_report.py), on made-up minutes, and the options
`ledger bench --soak` refuses. The soak itself runs in tests/integration/test_bench_soak.py."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from app.entrypoints import cli
from tools.bench import soak_report
from tools.bench.soak import CounterDelta, LogScan

RATE = 100.0
NO_ERRORS = {"restarts": 0, "failed_batches": 0, "publish_failures": 0, "tracebacks": 0}


def minute(k: int, rss: float = 200.0, lag: int = 50, **errors) -> dict:
    return {"minute": k, "rss_mib": rss, "lag_messages": lag, "errors": {**NO_ERRORS, **errors}}


def report(minutes: list[dict], views_ok: bool = True, drain_errors: dict | None = None) -> dict:
    return {"minutes": minutes, "rate": {"value": RATE}, "errors": {},
            "drain": {"errors": {**NO_ERRORS, **(drain_errors or {})}},
            "dead_letters": {"total": 7, "expected": 7},
            "views_check": {"ok": views_ok, "members": 10, "missing": 0, "differ": 0 if views_ok else 1,
                            "probe_members": 4, "probe_views_wrong": 0, "drained": True}}


def latencies(n: int, ms: float = 100.0, last_ms: float | None = None) -> dict[int, list[float]]:
    return {k: [ms if last_ms is None or k <= n - 5 else last_ms] * 100 for k in range(1, n + 1)}


def criteria(v: dict) -> dict[str, dict]:
    return {c["id"]: c for c in v["criteria"]}


def test_a_steady_20_minute_soak_holds_with_every_criterion_and_its_figures():
    v = soak_report.verdict(report([minute(k) for k in range(1, 21)]), latencies(20))
    assert v["verdict"] == soak_report.HELD and v["not_evaluated"] == []
    c = criteria(v)
    assert all(x["evaluated"] and x["met"] for x in c.values())
    assert c["rss"]["figures"]["baseline_minutes"] == [6, 7, 8, 9, 10]
    assert c["rss"]["figures"]["last_minutes"] == [16, 17, 18, 19, 20]
    assert c["rss"]["figures"]["ratio"] == 1.0 and c["p99"]["figures"]["last_probes"] == 500
    assert c["lag"]["figures"]["bound"] == RATE * 60 and c["lag"]["figures"]["end_lag"] == 50


def test_rss_more_than_10_percent_above_minutes_6_to_10_is_not_held():
    minutes = [minute(k, rss=200.0 if k <= 15 else 225.0) for k in range(1, 21)]
    c = criteria(soak_report.verdict(report(minutes), latencies(20)))
    assert not c["rss"]["met"] and c["rss"]["figures"]["ratio"] == pytest.approx(1.125)
    minutes = [minute(k, rss=200.0 if k <= 15 else 219.0) for k in range(1, 21)]
    assert criteria(soak_report.verdict(report(minutes), latencies(20)))["rss"]["met"]


def test_a_fall_of_rss_or_p99_is_not_a_failure():
    minutes = [minute(k, rss=200.0 if k <= 15 else 150.0) for k in range(1, 21)]
    v = soak_report.verdict(report(minutes), latencies(20, 100.0, last_ms=50.0))
    assert v["verdict"] == soak_report.HELD


def test_p99_is_the_median_minute_of_each_window_judged_against_minutes_6_to_10():
    v = soak_report.verdict(report([minute(k) for k in range(1, 21)]), latencies(20, 100.0, last_ms=120.0))
    p99 = criteria(v)["p99"]
    assert not p99["met"] and p99["figures"]["baseline"] == 100.0 and p99["figures"]["last"] == 120.0
    assert p99["figures"]["baseline_minutes_p99"] == [100.0] * 5
    assert v["verdict"] == soak_report.NOT_HELD


def test_one_stalled_minute_in_the_baseline_does_not_excuse_a_slower_end():
    """Soak run 5: minute 10's stall (p99 9.8 s) made the pooled baseline 8.4 s, and a last window
    whose typical minute was slower than minutes 6-9 passed with ratio 0.55."""
    lat = latencies(20, 100.0, last_ms=130.0)
    lat[10] = [5_000.0] * 100
    p99 = criteria(soak_report.verdict(report([minute(k) for k in range(1, 21)]), lat))["p99"]
    assert p99["figures"]["baseline"] == 100.0 and p99["figures"]["last"] == 130.0 and not p99["met"]
    assert p99["figures"]["baseline_pooled"] == 5_000.0


def test_one_stalled_minute_at_the_end_does_not_fail_a_steady_soak():
    lat = latencies(20, 100.0)
    lat[18] = [5_000.0] * 100
    p99 = criteria(soak_report.verdict(report([minute(k) for k in range(1, 21)]), lat))["p99"]
    assert p99["met"] and p99["figures"]["last_pooled"] == 5_000.0


@pytest.mark.parametrize("lags, met", [
    ([10, 20, 30, 40, 50, 40], True),        # 4 minutes of growth
    ([10, 20, 30, 40, 50, 60], False),       # 5
    ([10, 20, 30, None, 50, 60, 70], True),  # a minute without a figure breaks the run
    ([10, 20, 10, 20, 6_000], False),        # the end at one minute of input
])
def test_lag_is_bounded_by_its_end_and_by_never_growing_5_minutes_running(lags, met):
    minutes = [minute(k, lag=lag) for k, lag in enumerate(lags, 1)]
    assert criteria(soak_report.verdict(report(minutes), latencies(len(lags))))["lag"]["met"] is met


def test_an_error_in_any_minute_or_in_the_drain_fails_and_dead_letters_do_not():
    minutes = [minute(k) for k in range(1, 21)]
    minutes[12]["errors"]["tracebacks"] = 1
    c = criteria(soak_report.verdict(report(minutes), latencies(20)))
    assert not c["errors"]["met"] and c["errors"]["figures"]["tracebacks"] == 1
    v = soak_report.verdict(report([minute(k) for k in range(1, 21)], drain_errors={"restarts": 1}), latencies(20))
    assert v["verdict"] == soak_report.NOT_HELD and criteria(v)["errors"]["figures"]["restarts"] == 1
    assert criteria(v)["errors"]["figures"]["dead_letters"] == 7


def test_views_that_differ_fail_the_soak():
    v = soak_report.verdict(report([minute(k) for k in range(1, 21)], views_ok=False), latencies(20))
    assert v["verdict"] == soak_report.NOT_HELD and not criteria(v)["views"]["met"]


def test_a_soak_under_15_minutes_is_inconclusive_and_says_what_it_could_not_judge():
    v = soak_report.verdict(report([minute(k) for k in range(1, 15)]), latencies(14))
    assert v["verdict"] == soak_report.INCONCLUSIVE and v["not_evaluated"] == ["rss", "p99"]
    assert "15 minutes" in v["note"] and "needs >= 15 minutes" in criteria(v)["rss"]["text"]
    assert all(criteria(v)[c]["met"] for c in ("lag", "errors", "views"))
    minutes = [minute(k) for k in range(1, 3)]
    minutes[1]["errors"]["failed_batches"] = 2
    assert soak_report.verdict(report(minutes), latencies(2))["verdict"] == soak_report.NOT_HELD


def test_a_run_that_failed_before_its_minutes_still_gets_a_report():
    r = {"run_id": "s1", "started_at": "2026-01-01T00:00:00Z", "command": "ledger bench --soak 30", "config": {
        "batch_size": 500, "batch_wait_ms": 50, "cache_size": 50_000, "partitions": 12},
        "machine": {"cores": 2, "cpu_model": "", "memory_gib": 1.0, "python": "3.11", "load_average_at_start": [0]},
        "errors": {"soak": "BenchError: no"}, "notes": [], "wall_seconds": 3.0}
    r["verdict"] = soak_report.verdict(r, {})
    assert r["verdict"]["verdict"] == soak_report.NOT_HELD
    assert "the run failed" in soak_report.markdown(r)


def test_the_printed_row_shows_every_figure():
    row = {**minute(3, lag=12), "input_rate": 99.5, "worker_cpu": 0.5, "probes": 600, "probes_pending": 0,
           "p50_ms": 40.0, "p99_ms": 250.5, "dead_letters": 4, "errors_total": 0, "load_average": 1.2,
           "steal": 0.347, "busy": {"decider": 0.8, "projector": 0.496},
           "loads": {"decider_hit": 0.25, "projector_hit": None, "decider_loads": 30, "rows_per_load": 3.5},
           "lag_by_stage": {"decider": 5, "projector": 7, "clocks": 0}}
    assert soak_report.table_row(row) == \
        "3 | 99.5 | 200.0 | 0.50 | 80%/50% | 25%/n/a | 3.5 | 12 (5/7/0) | 600 | 40.0 | 250.5 | 4 | 0 (0/0/0/0) | 1.2 | 35%"
    assert len(soak_report.table_header().split(" | ")) == len(soak_report.table_row(row).split(" | "))


def test_a_minutes_cache_hits_and_rows_per_load_come_from_the_counters_growth():
    from tools.bench.soak import minute_loads

    loads = minute_loads({"decider_cache_hit": 30, "decider_cache_miss": 90, "projector_cache_hit": 0,
                          "projector_cache_miss": 0, "decider_rows_folded": 405})
    assert loads == {"decider_hit": 0.25, "projector_hit": None, "decider_loads": 90, "rows_per_load": 4.5}


def test_the_p99_criterion_shows_the_cpu_the_hypervisor_took_in_each_window():
    minutes = [{**minute(k), "steal": 0.01 if k <= 10 else 0.02} for k in range(1, 21)]
    v = soak_report.verdict(report(minutes), latencies(20, last_ms=150.0))
    p99 = criteria(v)["p99"]
    assert p99["evaluated"] and not p99["met"]
    assert (p99["figures"]["baseline_steal"], p99["figures"]["last_steal"]) == (0.01, 0.02)
    assert p99["text"].endswith("CPU stolen by the hypervisor 2% vs 1%")
    assert "stolen" not in criteria(soak_report.verdict(report([minute(k) for k in range(1, 21)]), latencies(20)))[
        "p99"]["text"]


def test_p99_is_not_judged_when_the_hypervisor_took_more_cpu_in_one_window_than_in_the_other():
    """Soak run 8: steal 11% in minutes 6-10 and 3% at the end; its p99 'held' at 0.458, and a steal
    in the other window would fail a steady pipeline the same way."""
    minutes = [{**minute(k), "steal": 0.11 if k <= 10 else 0.03} for k in range(1, 21)]
    v = soak_report.verdict(report(minutes), latencies(20, 3_000.0, last_ms=1_400.0))
    p99 = criteria(v)["p99"]
    assert not p99["evaluated"] and p99["met"] is None
    assert "11%" in p99["text"] and "3%" in p99["text"]
    assert v["verdict"] == soak_report.INCONCLUSIVE and "hypervisor" in v["note"]


def test_steal_is_the_share_of_the_machines_cpu_time_between_two_readings():
    from tools.bench.env import cpu_times, steal_share

    assert steal_share((1000, 100), (3000, 800)) == 0.35
    assert steal_share(None, (3000, 800)) is None and steal_share((3000, 800), (3000, 800)) is None
    total, stolen = cpu_times()
    assert total > 0 and 0 <= stolen <= total


def test_a_counter_that_restarts_with_its_process_counts_from_zero():
    c = CounterDelta()
    assert [c.delta(v) for v in (0, 3, 5, 2)] == [0, 3, 2, 2]


def test_tracebacks_are_counted_once_even_when_a_line_is_split_between_looks(tmp_path):
    log = tmp_path / "worker.log"
    scan = LogScan()
    log.write_bytes(b"ok\nTraceback (most rec")
    assert scan.new_tracebacks([log]) == 0
    with open(log, "ab") as f:
        f.write(b"ent call last):\n  File x\nValueError\n")
    assert scan.new_tracebacks([log]) == 1
    assert scan.new_tracebacks([log, tmp_path / "missing.log"]) == 0
    assert scan.excerpts and "ValueError" in scan.excerpts[0]


@pytest.mark.parametrize("argv, message", [
    (["bench", "--soak-rate", "50"], "--soak-rate applies to --soak only"),
    (["bench", "--soak", "0"], "--soak must be at least 1 minute"),
    (["bench", "--soak", "5", "--soak-rate", "0"], "--soak-rate must be > 0"),
    (["bench", "--soak", "5", "--quick"], "--soak does not take --quick"),
    (["bench", "--soak", "5", "--events", "10"], "--soak does not take --events"),
    (["bench", "--soak-warmup-events", "9"], "--soak-warmup-events applies to --soak only"),
    (["bench", "--soak", "5", "--soak-warmup-events", "-1"], "--soak-warmup-events must be at least 0"),
    (["bench", "--soak", "5", "--soak-warmup-events", "0"], "give --soak-rate"),
])
def test_the_soak_refuses_options_that_do_not_apply(capsys, argv, message):
    assert cli.main(argv) == 1
    assert message in capsys.readouterr().err


def warm_up(rate: float) -> dict:
    return {"items": 100_000, "messages": 100_000, "measured_messages": 50_000, "rate": rate}


def test_the_measured_input_is_70_percent_of_the_warm_ups_second_half_and_fits_the_stream():
    from tools.bench.runner import BenchConfig
    from tools.bench.soak import Soak

    results: dict = {}
    soak = Soak(SimpleNamespace(work_dir=Path("unused")), BenchConfig(soak_minutes=30), None, results, echo=lambda _: None)
    soak.set_rate(warm_up(400.0))
    assert results["rate"]["value"] == pytest.approx(280.0) and results["rate"]["source"] == "measured"
    assert "70% of the sustained rate 400 events/s" in results["rate"]["text"]
    assert "warm-up's second half (50,000 messages)" in results["rate"]["text"]
    assert results["rate"]["sustained"] == 400.0 and results["warmup"]["rate"] == 400.0
    # the minutes' items follow the warm-up's in a stream sized before the rate was known
    assert soak.warmup_events + soak.input_events <= soak.stream_events


def test_a_measured_rate_above_what_the_stream_was_sized_for_is_clamped_and_said():
    from tools.bench.runner import BenchConfig
    from tools.bench.soak import RATE_CAP, Soak

    results: dict = {}
    soak = Soak(SimpleNamespace(work_dir=Path("unused")), BenchConfig(soak_minutes=30), None, results, echo=lambda _: None)
    soak.set_rate(warm_up(10 * RATE_CAP))
    assert results["rate"]["value"] == RATE_CAP and "clamped" in results["rate"]["text"]
    assert soak.warmup_events + soak.input_events <= soak.stream_events


def test_an_explicit_rate_sizes_the_stream_and_needs_no_warm_up():
    from tools.bench.runner import BenchConfig
    from tools.bench.soak import Soak

    results: dict = {}
    soak = Soak(SimpleNamespace(work_dir=Path("unused")), BenchConfig(soak_minutes=2, soak_rate=100.0, soak_warmup_events=0), None, results,
                echo=lambda _: None)
    soak.set_rate(None)
    assert results["rate"] == {"value": 100.0, "source": "explicit", "share_of_sustained": None, "sustained": None,
                               "text": "explicit: --soak-rate 100"}
    assert soak.input_events <= soak.stream_events == 12_000


def test_the_report_says_what_the_warm_up_did_or_that_there_was_none():
    warm = {**warm_up(464.5), "halves": [{"messages": 50_000, "decided_s": 150.0, "drained_s": 185.0},
                                          {"messages": 50_000, "decided_s": 204.0, "drained_s": 215.2}]}
    text = soak_report.warmup_text(warm)
    assert "first 100,000 items" in text and "half 2: 50,000 messages decided in 204 s" in text
    assert "drained in 215 s" in text and "464.5 events/s" in text
    assert "empty keyspace" in soak_report.warmup_text(None)
