"""The run's figures, targets and report files: ``bench/results/<timestamp>.json`` and ``.md``.

Every figure carries the parameters that produced it (``events``, ``members``, ``partitions``,
``batch_size``, ``concurrency``; ``None`` where one does not apply, plus figure-specific ones), what
bounds it on this machine (from the CPU shares measured during it), and the baseline figures of the
same run it is compared with (ratios). Targets are judged here, each with its measured ratio.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

PARAM_KEYS = ("events", "members", "partitions", "batch_size", "concurrency")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
# The read API's maximum in the reference run (2026-11-27, before issue 11; BENCHMARKS.md "Before and
# after (issue 11)"): 2,582 requests/s on one core, with neither uvloop nor httptools.
REFERENCE_API_PER_CORE = 2_582


def _params(**kw) -> dict:
    return {**{k: None for k in PARAM_KEYS}, **kw}


def _cores(shares: dict | None) -> str:
    if not shares:
        return "n/a"
    return ", ".join(f"{k} {v:.2f}" for k, v in sorted(shares.items(), key=lambda kv: -kv[1]))


def _bound(shares: dict | None, main: str, cores: int, what: str) -> str:
    """Which resource bounds a figure, judged from CPU shares (1.0 = one core busy)."""
    if not shares:
        return what
    total = sum(shares.values())
    busiest, top = max(shares.items(), key=lambda kv: kv[1])
    if shares.get(main, 0) >= 0.75:  # a Python process whose threads fight for the GIL rarely shows 1.0
        verdict = (f"CPU of the {main} process ({shares[main]:.2f} cores; one Python interpreter runs one "
                   "thread at a time)")
    elif total >= 0.85 * cores:
        verdict = f"the machine's {cores} cores (all processes together: {total:.2f} cores)"
    elif top >= 0.85:
        verdict = f"CPU of {busiest} ({top:.2f} cores)"
    else:
        verdict = f"waiting, not CPU (no process saturated; busiest {busiest} at {top:.2f} cores)"
    return f"{what}; bound: {verdict}. CPU cores used: {_cores(shares)}"


class SplitShape(NamedTuple):
    what: str  # the split phase's two processes, in words
    loops: str  # which micro-batches share an event loop


# The two shapes the split phase measures (`ledger bench --split-roles`), by their roles.
SPLIT_SHAPES = {
    ("decider", "projector"): SplitShape("the decider and the projector in a process each",
                                         "each on an event loop of its own"),
    ("all", "all"): SplitShape("two workers, each deciding and projecting its share of the input partitions",
                               "each worker's on its own event loop, for its half of the input partitions"),
}


def _split(roles) -> SplitShape:
    return SPLIT_SHAPES.get(tuple(roles), SPLIT_SHAPES[("decider", "projector")])


def split_shape(roles) -> str:
    """What the split phase's processes are, in words."""
    return _split(roles).what


def busiest_worker(shares: dict | None, roles) -> str:
    """The worker process whose CPU share judges the split's bound: the decider when the roles are split,
    else the busier of the two workers (their CPU keys are ``all1``, ``all2``)."""
    if "decider" in roles or not shares:
        return "decider"
    return max((k for k in shares if k.startswith("all")), key=shares.get, default="decider")


def _ratio(a, b) -> float | None:
    if a is None or b is None or not b:
        return None
    return a / b


def build(results: dict) -> dict:
    """Figures and targets from the raw results of the phases."""
    cfg = results["config"]
    cores = results["machine"]["cores"]
    P = cfg["partitions"]
    figures: list[dict] = []
    targets: list[dict] = []

    def fig(fid, what, value, unit, params, bound, compared=None, extra=None):
        figures.append({"id": fid, "what": what, "value": value, "unit": unit, "params": params, "bound": bound,
                        "compared_to": compared or [], **({"detail": extra} if extra else {})})

    ce = results.get("ceilings", {})
    e2e = results.get("e2e", {}).get("throughput")
    lat = results.get("e2e", {}).get("latency")
    naive = results.get("naive")
    replay = results.get("replay")
    whatif = results.get("whatif")
    api = results.get("api")
    mem = results.get("memory")
    tls = results.get("tls")
    split = results.get("split")
    e2e_rate = e2e["rate"] if e2e else None

    def vs_e2e(value, unit_note=""):
        return [{"figure": "e2e.throughput", "ratio": _ratio(e2e_rate, value),
                 "meaning": f"end-to-end throughput / this ceiling{unit_note}"}] if e2e_rate and value else []

    # --- ceilings ---
    if k := ce.get("kafka_consume"):
        fig("ceiling.kafka_consume", "confluent-kafka consume rate of the events topic (fresh consumer assigned to "
            "all partitions, from the assignment to the last message)",
            k["rate"], "messages/s",
            _params(events=k["messages"], members=cfg["members"], partitions=P, batch_size=10_000,
                    bytes=k["bytes"], seconds=k["seconds"], setup_s=k.get("setup_s")),
            _bound(k["cpu_share"], "client", cores, "one consumer in the bench process, librdkafka fetching"),
            vs_e2e(k["rate"]))
    for key, fid, what in (("cassandra_plain", "ceiling.cassandra_write", "Cassandra plain INSERT rate"),
                           ("cassandra_lwt", "ceiling.cassandra_lwt", "Cassandra conditional INSERT ... IF NOT EXISTS (LWT) rate")):
        if c := ce.get(key):
            fig(fid, f"{what} (cassandra-driver execute_concurrent_with_args, member_events rows)", c["rate"],
                "statements/s",
                _params(events=c["statements"], members=c["statements"], partitions=None, batch_size=1,
                        concurrency=c["concurrency"], payload_bytes=c["payload_bytes"], seconds=c["seconds"],
                        failed=c["failed"]),
                _bound(c["cpu_share"], "client", cores, "one cassandra-driver client process against a single "
                       "Cassandra node (1 GiB heap) sharing the 2 cores"),
                vs_e2e(c["rate"]))
    if r := ce.get("redis"):
        for kind, fid, what in (("hset", "ceiling.redis_hset", "Redis pipelined HSET of view-sized values"),
                                ("fenced_script", "ceiling.redis_fenced", "Redis pipelined EVALSHA of the projector's fenced-write script")):
            x = r[kind]
            fig(fid, what, x["rate"], "writes/s",
                _params(events=x["writes"], batch_size=x["pipeline"], concurrency=1, value_bytes=x["value_bytes"],
                        seconds=x["seconds"]),
                _bound(x["cpu_share"], "client", cores, "redis-py (hiredis) pipelines of "
                       f"{x['pipeline']} from one process; Redis is single-threaded"),
                vs_e2e(x["rate"]))

    # --- end to end ---
    if e2e:
        params = _params(events=e2e["events"], members=e2e["members"], partitions=P, batch_size=cfg["batch_size"],
                         concurrency=1, cache_size=cfg["cache_size"], events_counted=e2e["events_counted"],
                         members_with_views=e2e["members_with_views"], seconds=e2e["seconds"],
                         batch_wait_ms=cfg["batch_wait_ms"], worker_processes=1, role="all")
        compared = []
        lwt = ce.get("cassandra_lwt")
        if lwt:
            compared.append({"figure": "ceiling.cassandra_lwt", "ratio": _ratio(e2e_rate, lwt["rate"]),
                             "meaning": "end to end / conditional-write ceiling"})
        if naive:
            compared.append({"figure": "baseline.naive", "ratio": _ratio(e2e_rate, naive["rate"]),
                             "meaning": "end to end / naive agent"})
        prof = e2e.get("profile")
        hot = ""
        if prof and prof.get("self"):
            hot = " Profile (self time, GIL held): " + "; ".join(f"{n} {p}%" for n, _, p in prof["self"][:5])
            if prof.get("layers"):
                busiest = sorted(prof["layers"], key=lambda row: -row[1])[:5]
                held = f", the GIL held {prof['gil_held']:.0%} of the time" if prof.get("gil_held") else ""
                hot += f". By layer{held}: " + "; ".join(f"{n} {p}%" for n, _, p in busiest)
        fig("e2e.throughput", "sustained throughput, decider + projector in one worker, first decider batch to "
            "the last Redis view complete", e2e_rate, "events/s", params,
            _bound(e2e["cpu_share"], "worker", cores, "one `ledger worker --role all` process") + "." + hot,
            compared, {"decider_rate": e2e["decider_rate"], "views_lag_after_decider_s": e2e["views_lag_after_decider_s"],
                       "views_check": e2e["views_check"], "outcomes": e2e["outcomes"]})
    if e2e and (st := e2e.get("statements")):
        kinds = "; ".join(f"{k} {v['per_event']:.3f}" for k, v in st["by_kind"].items())
        fig("e2e.statements_per_event", "Cassandra statements the end-to-end worker sent per input event "
            "(decider and projector, counted by its session; a batch is one statement)", st["per_event"],
            "statements/event",
            _params(events=st["events"], members=e2e["members"], partitions=P, batch_size=cfg["batch_size"],
                    concurrency=1, statements=st["statements"]),
            f"by kind, per input event: {kinds}")
    if lat:
        params = _params(events=lat["background_events_published"], members=cfg["latency_members"], partitions=P,
                         batch_size=cfg["batch_size"], concurrency=1, rate=lat["rate_target"],
                         probes=lat["probes"], probes_per_s=lat["probes_per_s"], seconds=lat["seconds"],
                         batch_wait_ms=cfg["batch_wait_ms"], poll_interval_ms=lat["poll_interval_ms"])
        bound = _bound(lat["cpu_share"], "worker", cores,
                       f"two micro-batch waits (decider and projector, up to {cfg['batch_wait_ms']} ms each), "
                       "the acks=all ledger publish, Cassandra LWT round trips, and the 2 ms view poll")
        for q in ("p50", "p99"):
            fig(f"e2e.latency_{q}", f"publish-to-view latency {q} at half the sustained rate", lat[f"{q}_ms"], "ms",
                params, bound, [{"figure": "e2e.throughput", "ratio": _ratio(lat["rate_target"], e2e_rate),
                                 "meaning": "background rate / sustained throughput"}],
                {"decider_part_ms": lat.get(f"decider_{q}_ms"), "backlog_after": lat["backlog_after"],
                 "probes_unseen": lat["probes_unseen"], "background_rate_measured": lat["background_rate_measured"]})
    if split:
        roles = "`" + "` and `".join(f"--role {r}" for r in split["roles"]) + "`"
        shape = split_shape(split["roles"])
        main = busiest_worker(split["cpu_share"], split["roles"])
        fig("split.throughput", f"sustained throughput with {shape} ({roles}), "
            "the same workload, first decider batch to the last Redis view complete", split["rate"], "events/s",
            _params(events=split["events"], members=split["members"], partitions=P, batch_size=cfg["batch_size"],
                    concurrency=1, cache_size=cfg["cache_size"], events_counted=split["events_counted"],
                    seconds=split["seconds"], worker_processes=len(split["roles"])),
            _bound(split["cpu_share"], main, cores, f"two `ledger worker` processes ({roles}) sharing the "
                   "machine with Kafka, Cassandra and Redis"),
            [{"figure": "e2e.throughput", "ratio": _ratio(split["rate"], e2e_rate),
              "meaning": "two processes / one worker"}] if e2e_rate else [],
            {"decider_rate": split["decider_rate"], "views_lag_after_decider_s": split["views_lag_after_decider_s"],
             "views_check": split["views_check"]})
        if slat := split.get("latency"):
            for q in ("p50", "p99"):
                fig(f"split.latency_{q}", f"publish-to-view latency {q} at half the two processes' sustained rate",
                    slat[f"{q}_ms"], "ms",
                    _params(events=slat["background_events_published"], members=cfg["latency_members"], partitions=P,
                            batch_size=cfg["batch_size"], concurrency=1, rate=slat["rate_target"],
                            probes=slat["probes"], seconds=slat["seconds"], worker_processes=len(split["roles"])),
                    _bound(slat["cpu_share"], main, cores, "the decider's and the projector's micro-batches, "
                           + _split(split["roles"]).loops),
                    [{"figure": "split.throughput", "ratio": _ratio(slat["rate_target"], split["rate"]),
                      "meaning": "background rate / sustained throughput"}],
                    {"decider_part_ms": slat.get(f"decider_{q}_ms"), "backlog_after": slat["backlog_after"]})
    if tls:
        sec = tls["secured"]
        fig("e2e.throughput_secured", "the end-to-end run repeated on the secure profile: Kafka SASL_SSL + "
            "SCRAM-SHA-512 with ACLs, Cassandra password auth and client TLS, Redis TLS with an ACL user",
            tls["secured_rate"], "events/s",
            _params(events=sec["events"], members=sec["members"], partitions=P, batch_size=cfg["batch_size"],
                    concurrency=1),
            _bound(sec["cpu_share"], "worker", cores, "one `ledger worker --role all` process, encrypting and "
                   "decrypting every Kafka, Cassandra and Redis exchange"),
            [{"figure": "e2e.throughput", "ratio": _ratio(e2e_rate, tls["secured_rate"]),
              "meaning": "plaintext / secured end-to-end throughput: the cost of TLS and authentication"}],
            {"views_check": sec["views_check"]})
    if naive:
        fig("baseline.naive", "naive Faust agent, one event at a time, awaiting every read and write", naive["rate"],
            "events/s",
            _params(events=naive["events_processed"], members=cfg["members"], partitions=P, batch_size=1,
                    concurrency=1, events_published=naive["events_published"], seconds=naive["seconds"]),
            _bound(naive["cpu_share"], "naive", cores, "the sum of one event's sequential round trips "
                   "(2 reads, 1 LWT, 1 acks=all produce with linger.ms 5, Redis, 1-2 Cassandra writes)"),
            [{"figure": "e2e.throughput", "ratio": _ratio(e2e_rate, naive["rate"]), "meaning": "end to end / naive"}])
    if replay:
        fig("replay.throughput", "replay service: rebuild of every projection from the ledger (read, fold, write)",
            replay["rate"], "ledger entries/s",
            _params(events=replay["events_read"], members=replay["members"], partitions=P, batch_size=10_000,
                    concurrency=replay["concurrency"], seconds=replay["rebuild_seconds"],
                    read_seconds=replay["read_seconds"], verify_seconds=replay["verify_seconds"],
                    views_equal_oracle=(replay.get("views_check") or {}).get("ok"),
                    verified_against_store=replay["verified_ok"]),
            _bound(replay.get("cpu_share_whole_run"), "replay", cores, "one process: Kafka read and Avro decode and "
                   "fold in Python, then Redis pipelines and Cassandra writes"),
            [{"figure": "e2e.throughput", "ratio": _ratio(replay["rate"], e2e_rate),
              "meaning": "replay / live end to end"}])
    if whatif:
        cand, empty = whatif["candidate"], whatif["empty"]
        fig("whatif.throughput", "what-if service: every member's stored decisions read from the event store "
            "(streamed, paged) and decided again under a candidate policy",
            whatif["rate"], "events/s",
            _params(events=cand["events_redecided"], members=cand["members"], partitions=None, batch_size=500,
                    concurrency=whatif["concurrency"], seconds=cand["seconds"], flips=cand["flips"],
                    members_affected=cand["members_affected"], empty_policy_rate=empty["events_per_second"],
                    empty_policy_flips=empty["flips"]),
            _bound(whatif.get("cpu_share_whole_run"), "whatif", cores, "one process: Cassandra page reads "
                   "and Avro decode, then the domain's decide (and a fold once outcomes part) in Python"),
            [c for c in [
                {"figure": "replay.throughput", "ratio": _ratio(whatif["rate"], replay["rate"]),
                 "meaning": "what-if / replay"} if replay else None,
                {"figure": "e2e.throughput", "ratio": _ratio(whatif["rate"], e2e_rate),
                 "meaning": "what-if / live end to end"} if e2e_rate else None] if c],
            {"empty_policy_ok": whatif.get("ok"), "transitions": cand["transitions"][:10]})
    if api:
        mx = api["max"]
        fig("api.max", "read API maximum requests/s", mx["rate"], "requests/s",
            _params(events=mx.get("requests"), members=api["paths"], concurrency=mx.get("connections"),
                    seconds=mx.get("seconds"), generator=mx.get("generator"), threads=mx.get("threads"),
                    p50_ms=mx.get("p50_ms"), p99_ms=mx.get("p99_ms"), non_2xx=mx.get("non_2xx"),
                    mix=api["mix"], uvloop=api["uvicorn"]["uvloop"], httptools=api["uvicorn"]["httptools"],
                    workers=api["uvicorn"].get("workers", 1), per_core=mx.get("per_core")),
            _bound(mx.get("cpu_share"), "server", cores,
                   f"`ledger api` (uvicorn, {api['uvicorn'].get('workers', 1)} worker process(es))"),
            [c for c in [
                {"figure": "api.wrk_trivial", "ratio": _ratio((api.get("trivial_wrk") or {}).get("rate"), mx["rate"]),
                 "meaning": "the same wrk against a trivial server / against the API (headroom of the generator)"}
                if api.get("trivial_wrk") else None] if c])
        if tw := api.get("trivial_wrk"):
            fig("api.wrk_trivial", "wrk against a trivial HTTP server (load generator capacity)", tw["rate"],
                "requests/s", _params(concurrency=tw["connections"], seconds=tw["seconds"], threads=tw["threads"]),
                _bound(tw.get("cpu_share"), "server", cores, "the trivial server (one Python process)"))
        gc = api["generator_capacity"]
        fig("api.generator_capacity", "asyncio load generator, closed loop against a trivial server", gc["rate"],
            "requests/s", _params(concurrency=gc["connections"], seconds=gc["seconds"], requests=gc["requests"]),
            "one Python process for the generator and one for the trivial server",
            [{"figure": "api.fixed_p99", "ratio": _ratio(gc["rate"], cfg["api_rate"]),
              "meaning": "generator capacity / the fixed rate it has to hold"}])
        gf = api["generator_floor"]
        fx = api["fixed"]
        fparams = _params(events=fx["requests"], members=api["paths"], concurrency=fx["max_in_flight"],
                          rate=fx["rate_target"], rate_achieved=fx["rate_achieved"], seconds=fx["seconds"],
                          errors=fx["errors"], statuses=fx["statuses"], connections_opened=fx["connections_opened"],
                          generator=fx["generator"], mix=api["mix"])
        for q in ("p50", "p99"):
            fig(f"api.fixed_{q}", f"read API latency {q} at a fixed {fx['rate_target']:,.0f} requests/s (open loop)",
                fx[f"{q}_ms"], "ms", fparams,
                _bound(fx.get("cpu_share"), "server", cores, "one uvicorn process: request parsing, auth, one "
                       "Redis HGET, JSON decode of the view, the view function, JSON encode"),
                [{"figure": f"api.generator_floor_{q}", "ratio": _ratio(fx[f"{q}_ms"], gf[f"{q}_ms"]),
                  "meaning": "API latency / the generator's own latency against a trivial server"}])
            fig(f"api.generator_floor_{q}", f"generator latency {q} at the same rate against a trivial server",
                gf[f"{q}_ms"], "ms", _params(events=gf["requests"], concurrency=gf["max_in_flight"],
                                             rate=gf["rate_target"], seconds=gf["seconds"]),
                "the generator's own scheduling and the loopback")
    if mem:
        for p in (mem["small"], mem["large"]):
            fig(f"memory.worker_hwm_{p['label']}", f"peak RSS (VmHWM) of a worker, {p['members']:,} members",
                p["vm_hwm_mib"], "MiB",
                _params(events=p["events"], members=p["members"], partitions=p["partitions"],
                        batch_size=p["batch_size"], concurrency=1, cache_size=p["cache_size"],
                        members_touched=p["members_touched"], cache_full=p["cache_full"]),
                f"the two member caches (decider and projector, {p['cache_size']:,} states each) plus the "
                "interpreter, Faust, aiokafka and driver buffers",
                [{"figure": f"memory.worker_hwm_{mem['small']['label']}",
                  "ratio": _ratio(p["vm_hwm_bytes"], mem["small"]["vm_hwm_bytes"]),
                  "meaning": "peak RSS / peak RSS of the smaller run"}] if p is mem["large"] else [],
                {"throughput": p["throughput"]})

    # --- targets ---
    lwt = ce.get("cassandra_lwt")
    if e2e and lwt:
        r = _ratio(e2e_rate, lwt["rate"])
        targets.append({"id": "e2e_vs_lwt", "target": "end to end >= 1.0x the conditional-write ceiling",
                        "measured": f"{e2e_rate:,.0f} events/s vs {lwt['rate']:,.0f} statements/s", "ratio": r,
                        "threshold": 1.0, "met": r is not None and r >= 1.0})
    if e2e and (st := e2e.get("statements")):
        r = _ratio(st["per_event"], 1.2)
        targets.append({"id": "statements_per_event", "target": "Cassandra statements per input event <= 1.2",
                        "measured": f"{st['per_event']:.3f} ({st['statements']:,} statements for "
                                    f"{st['events']:,} events)", "ratio": r, "threshold": 1.0,
                        "met": r is not None and r <= 1.0})
    if lat:
        r = _ratio(lat["p99_ms"], 250.0)
        targets.append({"id": "latency_p99", "target": "publish-to-view p99 <= 250 ms at half the sustained rate",
                        "measured": f"p99 {lat['p99_ms']:,.0f} ms at {lat['rate_target']:,.0f} events/s", "ratio": r,
                        "threshold": 1.0, "met": r is not None and r <= 1.0})
    if split and e2e:
        r = _ratio(split["rate"], e2e_rate)
        targets.append({"id": "two_processes", "target": f"2 worker processes ({split_shape(split['roles'])}) >= "
                        "1.6x one worker, when the machine has cores to spare (this one has "
                        f"{cores}, shared with the stack)",
                        "measured": f"{split['rate']:,.0f} vs {e2e_rate:,.0f} events/s", "ratio": r,
                        "threshold": 1.6, "met": r is not None and r >= 1.6})
    if tls and e2e:
        r = _ratio(e2e_rate, tls["secured_rate"])
        targets.append({"id": "tls_cost", "target": "the cost of TLS and authentication, measured (plaintext / "
                        "secured end-to-end throughput; no threshold)",
                        "measured": f"{e2e_rate:,.0f} vs {tls['secured_rate']:,.0f} events/s", "ratio": r,
                        "threshold": None, "met": r is not None})
    if e2e and naive:
        r = _ratio(e2e_rate, naive["rate"])
        targets.append({"id": "e2e_vs_naive", "target": "end to end >= 10x the naive agent",
                        "measured": f"{e2e_rate:,.0f} vs {naive['rate']:,.1f} events/s", "ratio": r,
                        "threshold": 10.0, "met": r is not None and r >= 10})
    if replay and e2e:
        r = _ratio(replay["rate"], e2e_rate)
        targets.append({"id": "replay_vs_live", "target": "replay >= 5x the live end-to-end rate",
                        "measured": f"{replay['rate']:,.0f} vs {e2e_rate:,.0f} events/s", "ratio": r,
                        "threshold": 5.0, "met": r is not None and r >= 5 and bool(replay.get("ok"))})
    if api:
        fx = api["fixed"]
        r = _ratio(fx["p99_ms"], 2.0)
        held = fx["rate_achieved"] >= 0.98 * fx["rate_target"] and not fx["errors"]
        targets.append({"id": "api_p99", "target": f"read API p99 <= 2 ms at {fx['rate_target']:,.0f} req/s",
                        "measured": f"p99 {fx['p99_ms']} ms at {fx['rate_achieved']:,.0f} req/s "
                                    f"({fx['errors']} errors)", "ratio": r, "threshold": 1.0,
                        "met": r is not None and r <= 1.0 and held})
    if api and (per_core := api["max"].get("per_core")):
        r = _ratio(per_core, REFERENCE_API_PER_CORE)
        targets.append({"id": "api_max_per_core", "target": "read API maximum >= 2x the reference's, in requests/s "
                        "per core the server used",
                        "measured": f"{per_core:,.0f} vs {REFERENCE_API_PER_CORE:,} req/s per core (the reference "
                                    "run of 2026-11-27, BENCHMARKS.md)", "ratio": r, "threshold": 2.0,
                        "met": r is not None and r >= 2.0})
    if mem:
        v = mem["verdict"]
        targets.append({"id": "memory_bounded", "target": "worker memory bounded by its cache size, not by members",
                        "measured": f"{mem['large']['vm_hwm_mib']} MiB with {mem['large']['members']:,} members vs "
                                    f"{mem['small']['vm_hwm_mib']} MiB with {mem['small']['members']:,} "
                                    f"(cache {mem['small']['cache_size']:,}; members touched "
                                    f"{mem['large']['members_touched']:,} vs {mem['small']['members_touched']:,})",
                        "ratio": v["hwm_ratio"], "threshold": v["bound_ratio"], "met": v["bounded"]})
    return {"figures": figures, "targets": targets}


# --- files ------------------------------------------------------------------------------------


def _fmt(value, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "ms":
        return f"{value:,.2f}"
    if unit == "MiB":
        return f"{value:,.1f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _ratio_text(r: float) -> str:
    return f"{r:.3f}" if r < 0.1 else f"{r:.2f}"


def _fmt_params(params: dict) -> str:
    shown = []
    for k, v in params.items():
        if v is None or isinstance(v, (dict, list)):
            continue
        if isinstance(v, float):
            v = f"{v:,.1f}"
        elif isinstance(v, int) and not isinstance(v, bool):
            v = f"{v:,}"
        shown.append(f"{k}={v}")
    return ", ".join(shown)


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"### Bench run {report['run_id']} ({report['started_at']})",
        "",
        f"Command: `{report['command']}` — wall time {report['wall_seconds']:.0f} s. "
        f"Machine: {m['cores']} cores ({m['cpu_model'] or 'unknown CPU'}), {m['memory_gib']} GiB memory, "
        f"Linux {m['kernel']}, Python {m['python']}; load average at start {m['load_average_at_start']}. "
        f"Stack: Kafka, Cassandra and Redis on this machine ({report.get('stack_note', '')}).",
        "",
        "| figure | value | unit | parameters | compared with (same run) |",
        "| --- | ---: | --- | --- | --- |",
    ]
    for f in report["figures"]:
        comp = "; ".join(f"{c['meaning']}: **{_ratio_text(c['ratio'])}**" for c in f["compared_to"]
                         if c.get("ratio") is not None)
        lines.append(f"| `{f['id']}` {f['what']} | **{_fmt(f['value'], f['unit'])}** | {f['unit']} | "
                     f"{_fmt_params(f['params'])} | {comp} |")
    lines += ["", "| target | measured | ratio | threshold | met |", "| --- | --- | ---: | ---: | --- |"]
    for t in report["targets"]:
        ratio = "n/a" if t["ratio"] is None else f"{t['ratio']:.2f}"
        lines.append(f"| {t['target']} | {t['measured']} | {ratio} | {'—' if t['threshold'] is None else t['threshold']} | "
                     f"{'**met**' if t['met'] else '**not met**'} |")
    lines += ["", "What bounds each figure (CPU cores used by each process during it, 1.0 = one core busy):", ""]
    for f in report["figures"]:
        lines.append(f"- `{f['id']}`: {f['bound']}")
    if report.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def write(report: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = report["started_at"].replace(":", "").replace("-", "")
    json_path = out_dir / f"{stem}.json"
    md_path = out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md_path.write_text(markdown(report))
    return json_path, md_path


def update_benchmarks_md(path: Path, md: str) -> bool:
    """Replace the generated section of BENCHMARKS.md (between the bench markers) with ``md``."""
    if not path.exists():
        return False
    text = path.read_text()
    if BEGIN not in text or END not in text:
        return False
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{BEGIN}\n{md}{END}{tail}")
    return True
