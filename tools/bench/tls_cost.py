"""What TLS and authentication cost: the end-to-end run repeated on the secure profile.

The bench's main pipeline runs on the plaintext local stack; this phase publishes the same workload to
the secure profile (Kafka SASL_SSL + SCRAM-SHA-512 with ACLs, Cassandra with password auth and client
TLS, Redis over TLS with an ACL user), times a worker there to the last view the same way, and
reports the plaintext rate over the secured one. Both stacks run side by side, each idle while the
other is measured. The bench's clients and its one worker (both roles, as in the plaintext run)
connect as the profile's admin principal.
"""
from __future__ import annotations

from pathlib import Path

SECURE_PROFILE = "secure"


def unavailable(base) -> str | None:
    """Why the phase cannot compare (None: it can)."""
    from tools.stack import manager

    if manager.profile_of(base.stack_dir) == SECURE_PROFILE:
        return "the bench already runs on the secure profile: start it on the local one to compare"
    if secure_settings(base) is None:
        return "the secure profile is not running (make stack-secure)"
    return None


def secure_settings(base):
    """The settings of the running secure profile (its admin principal), or None when it is not up."""
    from app.config import Settings
    from tools.stack import manager, secure_profile

    stack_dir = manager.stack_dir_of(base.stack_dir, SECURE_PROFILE)
    if not all(health.healthy for health in manager.status(stack_dir)):
        return None
    env = secure_profile.client_env(stack_dir, "admin")
    values = {k.removeprefix("LEDGER_").lower(): v for k, v in env.items() if k.startswith("LEDGER_")}
    return Settings(**values)


def run(base_settings, plain_rate: float, workload, cfg, run_id: str, work_dir: Path, echo=print) -> dict:
    from app.bootstrap import kafka_connection
    from tools.bench import end_to_end
    from tools.bench.env import BenchEnv
    from tools.stack import secure_profile

    settings = secure_settings(base_settings)
    if settings is None:
        raise RuntimeError("the secure profile is not running (`ledger stack up --profile secure`)")
    settings = settings.model_copy(update={"batch_size": cfg.batch_size, "batch_wait_ms": cfg.batch_wait_ms,
                                           "member_cache_size": cfg.cache_size})
    env = BenchEnv(settings, run_id, cfg.redis_db, work_dir / "tls", echo=echo)
    try:
        env.flush_redis()
        logins = secure_profile.login_env(settings.stack_dir)  # the pipeline names its own Redis database
        pipeline = env.pipeline("tls", cfg.batch_size, cfg.cache_size, cfg.partitions,
                                {**logins, "LEDGER_BATCH_WAIT_MS": str(cfg.batch_wait_ms)})
        publish = end_to_end.publish_workload(workload, kafka_connection(settings), pipeline.events_topic, echo)
        out, worker = end_to_end.run_throughput(env, pipeline, workload, timeout_s=cfg.e2e_timeout_s, echo=echo)
        worker.stop(30)
    finally:
        env.close()
    secured_rate = out["rate"]
    echo(f"  end to end with TLS and auth: {secured_rate:,.0f} events/s; without: {plain_rate:,.0f} events/s "
         f"(plaintext / secured = {plain_rate / secured_rate:.2f})")
    return {"secured": {k: v for k, v in out.items() if k != "profile"}, "publish_secured": publish,
            "plain_rate": plain_rate, "secured_rate": secured_rate, "ratio_plain_over_secured": plain_rate / secured_rate}
