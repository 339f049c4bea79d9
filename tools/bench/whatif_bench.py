"""What-if: the what-if service (`ledger whatif`'s engine) over the event store the end-to-end run filled.

It runs in a process of its own (``python -m tools.bench.whatif_bench --out FILE`` with the pipeline's
``LEDGER_*`` variables), like the replay: every member of the keyspace streamed from Cassandra, each
member's history read a page at a time and decided again. Twice: with the empty policy (which must
flip nothing: a check, not only a figure), then with a candidate policy that changes plan limits of
the workload's plans, so that outcomes flip and the recorded history is folded alongside.

The figure is the candidate run's decisions re-decided per second (what `ledger whatif` prints as
events/s), compared with the replay's ledger entries per second of the same run.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

# the workload's plans (tools/simulate/workload.py PLANS): one more device on basic, one fewer on
# standard, a tighter trial month
CANDIDATE = {"plans": {"basic": {"device_limit": 2}, "standard": {"device_limit": 1},
                       "trial": {"monthly_limit": 3}}}


async def _whatif(settings, concurrency: int) -> dict:
    from app import bootstrap
    from app.adapters.policy_file import parse_policy

    out: dict = {"concurrency": concurrency, "policy": CANDIDATE}
    history = bootstrap.history(settings)
    try:
        service = bootstrap.whatif(history, concurrency=concurrency)
        for label, policy in (("empty", parse_policy({})), ("candidate", parse_policy(CANDIDATE))):
            began = time.monotonic()
            report = await service.run(policy, history.stream_member_ids(), examples=3)
            out[label] = {**report.to_dict(), "elapsed_s": round(time.monotonic() - began, 3)}
    finally:
        await history.aclose()
    out["cpu_seconds"] = round(sum(os.times()[:2]), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    from app.config import Settings

    parser = argparse.ArgumentParser(description="time the what-if service over a pipeline's event store")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    result = asyncio.run(_whatif(Settings(), args.concurrency))
    args.out.write_text(json.dumps(result))
    return 0


def run(env, pipeline, *, concurrency: int = 32, timeout_s: float = 900, echo=print) -> dict:
    """Time the what-ifs over ``pipeline``'s event store; ``ok`` when the empty policy flipped nothing."""
    from tools.bench.env import BenchError, CpuMeter

    out = env.work_dir / f"whatif-{pipeline.label}.json"
    out.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "tools.bench.whatif_bench", "--out", str(out), "--concurrency", str(concurrency)]
    proc = env.spawn(f"whatif-{pipeline.label}", argv, pipeline.env())
    meter = CpuMeter({"whatif": proc.pid, **env.stack}).start()
    try:
        proc.popen.wait(timeout_s)
    except Exception:
        proc.stop(5)
        raise BenchError(f"the what-if did not finish within {timeout_s:.0f} s:\n{proc.tail()}") from None
    shares = meter.stop()
    if proc.popen.returncode != 0 or not out.exists():
        raise BenchError(f"the what-if failed (exit {proc.popen.returncode}):\n{proc.tail()}")
    result = json.loads(out.read_text())
    shares["whatif"] = round(result["cpu_seconds"] / max(meter.wall, 1e-9), 3)
    result["cpu_share_whole_run"] = shares
    empty, candidate = result["empty"], result["candidate"]
    result["rate"] = candidate["events_per_second"]
    result["ok"] = empty["flips"] == 0 and empty["events_redecided"] == candidate["events_redecided"] > 0
    echo(f"  what-if: {candidate['events_redecided']:,} decisions of {candidate['members']:,} members re-decided "
         f"in {candidate['seconds']:.1f} s ({candidate['events_per_second']:,.0f} events/s; "
         f"{candidate['flips']:,} flips in {candidate['members_affected']:,} members); empty policy "
         f"{empty['events_per_second']:,.0f} events/s, {empty['flips']} flips: {'ok' if result['ok'] else 'FLIPPED'}")
    return result


if __name__ == "__main__":
    raise SystemExit(main())
