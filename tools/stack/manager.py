"""`ledger stack up|down|status|logs|reset` for the local Kafka, Cassandra and Redis.

Three profiles: ``local`` (one node of each, in ``.stack``, plaintext), ``cluster`` (3 Kafka, 3
Cassandra, a Redis Cluster of 6, in ``.stack-cluster``; see `tools.stack.cluster_nodes`) and
``secure`` (one node of each with TLS, authentication and per-role authorization, in
``.stack-secure``; see `tools.stack.secure_profile`). Each has ports of its own: all can run side by
side."""
from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from app.config import REPO_ROOT
from tools.stack import cluster_nodes, credentials, tls
from tools.stack.cassandra_server import CassandraServer
from tools.stack.kafka_server import KafkaServer
from tools.stack.process import port_open
from tools.stack.redis_server import RedisServer
from tools.stack.secure_cassandra import SecureCassandra
from tools.stack.secure_kafka import SecureKafka
from tools.stack.secure_redis import SecureRedis
from tools.stack.service import LocalService

READY_TIMEOUT_S = {"redis": 30.0, "kafka": 120.0, "cassandra": 240.0}
PROFILES = ("local", "cluster", "secure")


class StackError(RuntimeError):
    pass


@dataclass
class Health:
    name: str
    pid: int | None
    port: int
    healthy: bool
    detail: str
    host: str = "127.0.0.1"
    rss_mb: float | None = None  # resident memory of the process (and its children)


def stack_dir_of(base: Path, profile: str) -> Path:
    """The folder of a profile: ``base`` (LEDGER_STACK_DIR, .stack) for local, ``base``-cluster for
    cluster, ``base``-secure for secure. A ``base`` that already names a profile's folder (the
    LEDGER_STACK_DIR of `ledger stack env`) stands for its local folder."""
    if profile not in PROFILES:
        raise StackError(f"unknown profile {profile!r}: choose {', '.join(PROFILES)}")
    for other in PROFILES[1:]:
        base = base.with_name(base.name.removesuffix(f"-{other}"))
    return base if profile == "local" else base.with_name(f"{base.name}-{profile}")


def profile_of(stack_dir: Path) -> str:
    for profile in PROFILES[1:]:
        if stack_dir.name.endswith(f"-{profile}"):
            return profile
    return "local"


def services(stack_dir: Path) -> list[LocalService]:
    profile = profile_of(stack_dir)
    if profile == "cluster":
        redis_nodes, kafka_nodes, cassandra_nodes = cluster_nodes.cluster_nodes(stack_dir)
        return [*redis_nodes, *kafka_nodes, *cassandra_nodes]
    if profile == "secure":
        return [SecureRedis(stack_dir), SecureKafka(stack_dir), SecureCassandra(stack_dir)]
    return [RedisServer(stack_dir), KafkaServer(stack_dir), CassandraServer(stack_dir)]


def _kind(service: LocalService) -> str:
    return service.name.split("-")[0]


def _phases(stack_dir: Path, chosen: list[LocalService]) -> list[list[LocalService]]:
    """Groups started together, each waited for before the next: on the local profile one group; on
    the cluster profile the Redis nodes, then the Kafka nodes (a quorum needs two of them up, so
    they start together), then each Cassandra node alone (a node joins the ring only after the one
    before it, and two JVMs starting at once on 2 cores slow each other down)."""
    if profile_of(stack_dir) != "cluster":
        return [chosen]
    return ([[s for s in chosen if _kind(s) == "redis"], [s for s in chosen if _kind(s) == "kafka"]]
            + [[s] for s in chosen if _kind(s) == "cassandra"])


def _check(service: LocalService) -> tuple[bool, str]:
    try:
        return True, service.check()
    except Exception as exc:  # any failure to answer means "not healthy", with its reason
        return False, f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


def up(stack_dir: Path, echo=print, only: str | None = None, settings=None) -> dict[str, float]:
    """Start whatever is not running and wait until each one really answers; idempotent.
    ``only``: one service by name (kafka, cassandra, redis; on the cluster profile a node: kafka-2,
    cassandra-1, redis-17003). Returns the seconds each started service took to answer, and
    ``total`` (with the Redis Cluster's formation on the cluster profile, the provisioning of
    users, ACLs and roles on the secure profile: ``settings`` name the topics, groups and keyspace)."""
    t0 = time.monotonic()
    all_services = [service_named(stack_dir, only)] if only else services(stack_dir)
    if profile_of(stack_dir) == "secure":
        _secure_files(stack_dir, echo)
    for service in all_services:
        installed = service.install()
        if installed:
            echo(f"installed {', '.join(installed)}")
        service.prepare()
    ready: dict[str, float] = {}
    for phase in _phases(stack_dir, all_services):
        started: dict[str, float] = {}
        for service in phase:
            if service.process.pid() is not None or port_open(service.host, service.port):
                ok, detail = _check(service)
                if ok:
                    echo(f"{service.name:<9} already running: {detail}")
                    continue
                if service.process.pid() is None:
                    raise StackError(f"port {service.host}:{service.port} is taken by a process that is not our "
                                     f"{service.name}: {detail}")
            else:
                service.process.start(service.argv(), cwd=REPO_ROOT)
            started[service.name] = time.monotonic()
        for service in phase:
            if service.name not in started:
                continue
            ready[service.name] = _wait_ready(service, started[service.name])
            echo(f"{service.name:<9} ready in {ready[service.name]:.1f}s: {_check(service)[1]}")
    redis_nodes = [s for s in all_services if isinstance(s, cluster_nodes.RedisNode)]
    if redis_nodes and not only:
        ready["redis-cluster"] = cluster_nodes.form_redis_cluster(redis_nodes, echo)
        echo(f"redis     cluster_state:ok on every node after {ready['redis-cluster']:.1f}s")
    if profile_of(stack_dir) == "secure":
        provision(stack_dir, settings, echo, only)
    ready["total"] = time.monotonic() - t0
    return ready


def _secure_files(stack_dir: Path, echo) -> None:
    """The certificates and the principals' passwords, made once (never printed)."""
    _, made = tls.ensure(stack_dir / "tls")
    if made:
        echo(f"made a CA and a server certificate in {stack_dir / 'tls'}")
    principals = credentials.ensure_passwords(stack_dir)
    if principals:
        echo(f"made passwords for {', '.join(principals)} in {credentials.secrets_dir(stack_dir)} (0600)")


def provision(stack_dir: Path, settings=None, echo=print, only: str | None = None) -> None:
    """Apply deploy/security/ to the running secure services (idempotent): Redis ACL users, Kafka
    ACLs, Cassandra's admin, roles and grants (the grants once the keyspace exists)."""
    if profile_of(stack_dir) != "secure":
        raise StackError("provisioning is for --profile secure")
    if settings is None:
        from app.config import Settings

        settings = Settings()
    for service in [service_named(stack_dir, only)] if only else services(stack_dir):
        if service.process.pid() is None:
            raise StackError(f"{service.name} is not running: `ledger stack up --profile secure` first")
        service.provision(settings, echo)  # type: ignore[attr-defined]


def _wait_ready(service: LocalService, t0: float) -> float:
    deadline = t0 + READY_TIMEOUT_S[_kind(service)]
    detail = ""
    while time.monotonic() < deadline:
        if service.process.pid() is None:
            raise StackError(f"{service.name} exited during start-up; last lines of its log:\n{_tail(service)}")
        if port_open(service.host, service.port):
            ok, detail = _check(service)
            if ok:
                return time.monotonic() - t0
        time.sleep(0.5)
    raise StackError(
        f"{service.name} did not answer within {READY_TIMEOUT_S[_kind(service)]:.0f}s ({detail}); "
        f"last lines of its log:\n{_tail(service)}"
    )


def _tail(service: LocalService, lines: int = 30) -> str:
    chunks = []
    for log in service.log_files():
        if log.exists():
            text = "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
            chunks.append(f"--- {log}\n{text}")
    return "\n".join(chunks) or "(no log yet)"


def down(stack_dir: Path, echo=print, only: str | None = None) -> None:
    """Stop (SIGTERM, then SIGKILL after 60 s) every service, or ``only`` one."""
    chosen = [service_named(stack_dir, only)] if only else list(reversed(services(stack_dir)))
    for service in chosen:
        stopped = service.process.stop()
        echo(f"{service.name:<9} {'stopped' if stopped else 'not running'}")


def service_named(stack_dir: Path, name: str) -> LocalService:
    for service in services(stack_dir):
        if service.name == name:
            return service
    raise StackError(f"unknown service {name!r}: choose {', '.join(s.name for s in services(stack_dir))}")


def signal_service(stack_dir: Path, name: str, how: str, echo=print) -> None:
    """For fault tests and drills: ``kill`` (SIGKILL: a crash), ``freeze`` (SIGSTOP: a process that
    hangs with its sockets open) or ``thaw`` (SIGCONT)."""
    service = service_named(stack_dir, name)
    pid = service.process.pid()
    if pid is None:
        raise StackError(f"{name} is not running")
    if how == "kill":
        service.process.kill()
    else:
        os.kill(pid, signal.SIGSTOP if how == "freeze" else signal.SIGCONT)
    echo(f"{name:<9} {how} (pid {pid})")


def status(stack_dir: Path) -> list[Health]:
    result = []
    for service in services(stack_dir):
        pid = service.process.pid()
        ok, detail = _check(service) if port_open(service.host, service.port) else (False, "port closed")
        result.append(Health(service.name, pid, service.port, ok, detail, service.host,
                             rss_mb(pid) if pid is not None else None))
    return result


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` in MiB (from /proc; None where there is no /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def logs(stack_dir: Path, name: str | None, lines: int) -> str:
    chosen = [s for s in services(stack_dir) if name in (None, s.name)]
    if not chosen:
        raise StackError(f"unknown service {name!r}: choose {', '.join(s.name for s in services(stack_dir))}")
    return "\n".join(_tail(s, lines) for s in chosen)


def reset(stack_dir: Path, echo=print) -> None:
    """Stop everything and wipe the data (jars and logs stay)."""
    down(stack_dir, echo)
    shutil.rmtree(stack_dir / "data", ignore_errors=True)
    echo(f"wiped {stack_dir / 'data'}")
