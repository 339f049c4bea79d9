"""Replay: the replay service (`ledger replay`'s engine) over the ledger the end-to-end run produced.

It runs in a process of its own (``python -m tools.bench.replay_bench --out FILE`` with the pipeline's
``LEDGER_*`` variables), so that nothing of the bench process (the workload, the oracle) weighs on
it: prepare a fresh namespace, rebuild it from the ledger (read, decode, fold, fill gaps from the
event store, write Redis and Cassandra), (optionally) verify it against the event store. Readers are not
switched (``--no-switch``): the live views stay what the API bench reads.

The figure is the rebuild's ledger entries per second (what `ledger replay` prints as events/s);
the rebuilt views are then checked against the domain oracle of the end-to-end run (every member
of the workload, digest by digest); ``--replay-verify`` adds the service's own verification against
the event store (one read per member: minutes for 100k members on 2 cores), timed separately.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path


async def _replay(settings, concurrency: int, verify: bool) -> dict:
    from app.bootstrap import Stores
    from app.entrypoints import heap

    stores = Stores.open(settings)
    replay = stores.replay(concurrency=concurrency)
    heap.settle()  # as `ledger replay` does
    try:
        began = time.monotonic()
        run = await replay.prepare()
        await replay.rebuild(run)
        report = None
        verify_s = None
        if verify:
            verify_began = time.monotonic()
            report = await replay.verify(run)
            verify_s = round(time.monotonic() - verify_began, 3)
        return {
            "namespace": run.new_ns,
            "events_read": run.events_read,
            "applied": run.applied,
            "duplicates": run.duplicates,
            "undecodable": run.undecodable,
            "members": run.members,
            "gaps_filled": run.gaps_filled,
            "read_seconds": round(run.read_seconds, 3),
            "rebuild_seconds": round(run.rebuild_seconds, 3),
            "rate": run.events_per_second,
            "verify_seconds": verify_s,
            "verified_members": report.checked if report else None,
            "verified_ok": report.ok if report else None,
            "verify_differing": len(report.differing) if report else None,
            "elapsed_s": round(time.monotonic() - began, 3),
            "concurrency": concurrency,
            "cpu_seconds": round(sum(os.times()[:2]), 3),
        }
    finally:
        replay.close()
        await stores.aclose()


def main(argv: list[str] | None = None) -> int:
    from app.config import Settings

    parser = argparse.ArgumentParser(description="time the replay service over a pipeline's ledger")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--verify", action="store_true", help="also verify against the event store (timed apart)")
    args = parser.parse_args(argv)
    result = asyncio.run(_replay(Settings(), args.concurrency, args.verify))
    args.out.write_text(json.dumps(result))
    return 0


def run(env, pipeline, expected: dict | None = None, *, concurrency: int = 8, verify: bool = False,
        timeout_s: float = 900, echo=print) -> dict:
    """Time the replay of ``pipeline``'s ledger; its views are then checked against the oracle's
    ``expected`` states (the service's own verification against the event store with ``verify``)."""
    from tools.bench.end_to_end import Views, check_views
    from tools.bench.env import BenchError, CpuMeter

    out = env.work_dir / f"replay-{pipeline.label}.json"
    out.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "tools.bench.replay_bench", "--out", str(out), "--concurrency", str(concurrency)]
    proc = env.spawn(f"replay-{pipeline.label}", argv + (["--verify"] if verify else []), pipeline.env())
    meter = CpuMeter({"replay": proc.pid, **env.stack}).start()
    try:
        proc.popen.wait(timeout_s)
    except Exception:
        proc.stop(5)
        raise BenchError(f"the replay did not finish within {timeout_s:.0f} s:\n{proc.tail()}") from None
    shares = meter.stop()
    if proc.popen.returncode != 0 or not out.exists():
        raise BenchError(f"the replay failed (exit {proc.popen.returncode}):\n{proc.tail()}")
    result = json.loads(out.read_text())
    # the child's own CPU time (it has exited: /proc no longer has it) over its whole run
    shares["replay"] = round(result["cpu_seconds"] / max(meter.wall, 1e-9), 3)
    result["cpu_share_whole_run"] = shares
    if expected is not None:
        client = env.redis()
        try:
            result["views_check"] = check_views(Views(client, result["namespace"]), expected)
        finally:
            client.close()
    ok = bool(result.get("views_check", {}).get("ok", True)) and (result["verified_ok"] if verify else True)
    result["ok"] = ok
    checked = (f"verified {result['verified_members']:,} members against the event store in "
               f"{result['verify_seconds']:.1f} s" if verify else
               f"{result.get('views_check', {}).get('members', 0):,} rebuilt views equal to the oracle's")
    echo(f"  replay: {result['events_read']:,} ledger entries rebuilt in {result['rebuild_seconds']:.1f} s "
         f"({result['rate']:,.0f} events/s); {checked}: {'ok' if ok else 'DIFFER'}")
    return result


if __name__ == "__main__":
    raise SystemExit(main())
