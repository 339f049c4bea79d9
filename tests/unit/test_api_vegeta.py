"""`python -m tools.bench.api_vegeta`: the targets it hands vegeta and the figures it reads back."""
from __future__ import annotations

from tools.bench.api_vegeta import main, summary, targets


def test_each_target_is_one_authorized_get_followed_by_a_blank_line():
    text = targets(8080, ["/v1/members/m1", "/v1/members/m2/licenses"], "tok")
    blocks = text.split("\n\n")
    assert blocks[-1] == "" and len(blocks) == 3
    assert blocks[0].splitlines() == ["GET http://127.0.0.1:8080/v1/members/m1", "Authorization: Bearer tok",
                                      "Accept: application/json"]


def test_the_report_becomes_milliseconds_and_counts_every_status_but_200_as_an_error():
    report = {"latencies": {"total": 9_000_000_000, "mean": 700_000, "50th": 650_000, "90th": 1_100_000,
                            "95th": 1_400_000, "99th": 2_918_000, "max": 15_700_000, "min": 200_000},
              "requests": 30_000, "rate": 1000.0333, "success": 0.9999, "status_codes": {"200": 29_997, "503": 2, "0": 1}}
    assert summary(report) == {"p50_ms": 0.65, "p90_ms": 1.1, "p99_ms": 2.918, "max_ms": 15.7, "requests": 30_000,
                               "rate": 1000.0, "errors": 3}


def test_without_vegeta_it_says_how_to_install_it_in_one_line(monkeypatch, capsys):
    monkeypatch.delenv("VEGETA", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "go install github.com/tsenart/vegeta/v12@" in err
