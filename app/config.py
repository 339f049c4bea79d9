"""Configuration from environment variables (prefix ``LEDGER_``), with defaults for the local stack.

Read once at start-up by an entrypoint (``Settings()``) and passed down; nothing reads the
environment at import time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_API_TOKEN = "local-dev-token"
TRACING_EXPORTERS = "otlp, console, file:PATH or off"


class ConfigError(ValueError):
    """A setting that cannot be used as given (a file that cannot be read, an unknown exporter): the
    `ledger` command prints it as one line, which never holds a secret."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGER_", extra="ignore")

    environment: str = Field("local", description="selects per-environment values in topics/ and deploy/cql/")

    kafka_bootstrap: str = "127.0.0.1:9092"
    events_topic: str = "downloads.events"
    ledger_topic: str = "downloads.ledger"
    rejections_topic: str = "downloads.rejections"
    dlq_topic: str = "downloads.dlq"
    consumer_group: str = "download-ledger"
    kafka_max_message_bytes: int = Field(
        1_000_000, ge=10_000, le=1_000_000_000,
        description="the producers' message.max.bytes (librdkafka's default): outputs are sized to fit it")

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how every Kafka client connects (SASL_SSL: TLS and a SCRAM or PLAIN login)")
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: Path | None = Field(None, description="the SASL password, read from this file")
    kafka_ssl_ca_file: Path | None = Field(None, description="CA certificates (PEM) the brokers' certificates are "
                                                               "checked against (default: the system's)")
    kafka_ssl_cert_file: Path | None = Field(None, description="a client certificate (PEM), for mutual TLS")
    kafka_ssl_key_file: Path | None = Field(None, description="the client certificate's private key (PEM)")

    cassandra_hosts: str = "127.0.0.1"
    cassandra_port: int = 9042
    cassandra_keyspace: str = "download_ledger"
    cassandra_consistency: Literal["ONE", "LOCAL_ONE", "QUORUM", "LOCAL_QUORUM", "EACH_QUORUM", "ALL"] = Field(
        "LOCAL_QUORUM", description="consistency level of every read and write (with replication 3: "
                                    "LOCAL_QUORUM survives one node down per datacenter)")
    cassandra_serial_consistency: Literal["SERIAL", "LOCAL_SERIAL"] = Field(
        "LOCAL_SERIAL", description="serial consistency of the conditional writes (the appends' Paxos round)")

    cassandra_username: str | None = None
    cassandra_password: SecretStr | None = None
    cassandra_password_file: Path | None = Field(None, description="the Cassandra password, read from this file")
    cassandra_ssl: bool = Field(False, description="TLS to Cassandra (on as well when a CA file is set)")
    cassandra_ssl_ca_file: Path | None = None
    cassandra_ssl_cert_file: Path | None = Field(None, description="a client certificate (PEM), for mutual TLS")
    cassandra_ssl_key_file: Path | None = None
    cassandra_ssl_check_hostname: bool = Field(
        True, description="check that each node's certificate names the address connected to; off where nodes "
                          "are reached by addresses no certificate can name (pod IPs): the CA is still checked")
    cassandra_local_dc: str | None = Field(
        None, description="the datacenter whose nodes are queried (DCAwareRoundRobinPolicy); default: the "
                          "first contact point's")

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="one Redis (redis://host:port/db), or a Redis Cluster: redis+cluster://host:port[,host:port...] "
                    "(several seed nodes, any of which may be down at start-up)")
    redis_cluster: bool = Field(
        False, description="LEDGER_REDIS_CLUSTER=1: the redis:// URL names a node of a Redis Cluster")
    redis_username: str | None = Field(None, description="the Redis ACL user (default: the URL's, or none)")
    redis_password: SecretStr | None = None
    redis_password_file: Path | None = Field(None, description="the Redis password, read from this file")
    redis_ssl_ca_file: Path | None = Field(None, description="CA certificates (PEM) for rediss:// URLs")
    redis_ssl_cert_file: Path | None = Field(None, description="a client certificate (PEM), for mutual TLS")
    redis_ssl_key_file: Path | None = None

    batch_size: int = Field(500, ge=1, description="most messages of a micro-batch, and of one Kafka fetch")
    batch_wait_ms: int = Field(50, ge=1, description="how long a micro-batch waits to fill")
    partition_idle_s: float = Field(
        10.0, gt=0, description="a partition handed nothing for this long while its consumer delivered past its "
                                "position is checked again, then sought back (the worker's contiguity check)")
    snapshot_every: int = Field(
        100, ge=1,
        description="snapshot a member's state every N decided rows (accepted and rejected); a member keeps "
                    "its newest 3 snapshots")
    member_cache_size: int = Field(50_000, ge=1, description="most member states each cache (decider, projector) keeps")
    member_cache_mb: float = Field(
        256.0, gt=0,
        description="most memory (MiB, estimated) the member states of each cache (decider, projector) hold; "
                    "least recently used states are evicted first")
    session_timeout_s: float = Field(
        10.0, gt=0, description="the consumer group's session timeout: a worker not heard of for this long "
                                "loses its partitions (with a group instance id, also how long a restart may take "
                                "without a rebalance)")
    heartbeat_interval_s: float | None = Field(
        None, gt=0, description="consumer heartbeats (default: a fifth of the session timeout, at least 1 s)")
    rebalance_timeout_s: float | None = Field(
        None, gt=0, description="how long the group waits for every member to rejoin in a rebalance "
                                "(default: Faust's)")
    consumer_group_instance_id: str | None = Field(
        None, description="static group membership (KIP-345), e.g. the pod name: a worker restarted with the same "
                          "id within the session timeout gets its partitions back with no rebalance. Unique per "
                          "worker process; the role is appended (each role is its own group)")
    stop_timeout_s: float = Field(30.0, gt=0, description="a worker asked to stop exits within this, in any state")
    stall_timeout_s: float = Field(
        120.0, gt=0,
        description="a stage with a batch in flight (failing and retried, or hanging) for longer than this is "
                    "stalled: ledger_worker_stalled{stage} is 1 and /readyz answers 503")
    projector_ack_ttl_s: float = Field(
        10.0, gt=0,
        description="a projector acknowledges the namespace it writes for this long and renews it every quarter of "
                    "it; one silent for longer is not live (`ledger replay --drop-old` stops waiting for it)")
    max_future_skew_ms: int = Field(
        3_600_000, ge=0,
        description="an event whose occurred_at is more than this after its Kafka message timestamp is a "
                    "dead letter clock_skew; 0 turns the guard off")

    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_tokens: SecretStr | None = Field(
        None, description="comma-separated bearer tokens the API accepts, beside those of api_tokens_file; "
                          f"with neither set: {DEFAULT_API_TOKEN!r}, refused outside LEDGER_ENVIRONMENT=local")
    api_tokens_file: Path | None = Field(
        None, description="a file of bearer tokens, one a line (blank lines and # comments ignored), read at start-up")
    api_metrics_port: int | None = Field(
        None, ge=0, le=65535, description="serve the API's /metrics on this port only (the main port answers 404 "
                                          "for it); unset: /metrics on the main port")
    api_max_body_bytes: int = Field(
        65_536, ge=1, description="a request body larger than this is refused (413) before it is read")
    api_workers: int = Field(1, ge=1, description="`ledger api` server processes sharing its port")
    metrics_port: int = 9464
    lag_interval_s: float = Field(5.0, gt=0, description="how often a worker measures its group's consumer lag")
    tracing: str | None = Field(
        None, description="OpenTelemetry tracing: otlp (to OTEL_EXPORTER_OTLP_ENDPOINT, OTLP over HTTP), "
                          "console (stdout), file:PATH (one JSON span per line, appended), off; unset: otlp when "
                          "OTEL_EXPORTER_OTLP_ENDPOINT is set, else off")
    otlp_endpoint: str | None = Field(
        None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT",
        description="the OpenTelemetry collector (OTLP over HTTP, e.g. http://collector:4318); the exporter reads "
                    "it and the other OTEL_EXPORTER_OTLP_* variables itself")

    stack_dir: Path = REPO_ROOT / ".stack"
    count_statements_to: Path | None = Field(
        None, description="a worker counts its Cassandra statements by kind into this JSON file (the bench)")

    @model_validator(mode="after")
    def _read_secret_files(self) -> Settings:
        """Each ``*_password_file`` is read once, here; a password set directly wins. A file that cannot be
        read is named in the error, its content never."""
        for name in ("kafka_sasl_password", "cassandra_password", "redis_password"):
            path = getattr(self, f"{name}_file")
            if path is None or getattr(self, name) is not None:
                continue
            secret = read_secret_file(Path(path), f"LEDGER_{name.upper()}_FILE").strip()
            object.__setattr__(self, name, SecretStr(secret))
        return self

    @property
    def redis_tls(self) -> bool:
        return self.redis_url.startswith(("rediss://", "rediss+cluster://"))

    @property
    def cassandra_tls(self) -> bool:
        return self.cassandra_ssl or self.cassandra_ssl_ca_file is not None

    @property
    def cassandra_contact_points(self) -> list[str]:
        return [h.strip() for h in self.cassandra_hosts.split(",") if h.strip()]

    @property
    def redis_cluster_nodes(self) -> list[tuple[str, int]] | None:
        """The seed nodes of a Redis Cluster, or None for one Redis."""
        url = self.redis_url
        if url.startswith(("redis+cluster://", "rediss+cluster://")):
            hosts = url.split("+cluster://", 1)[1].split("/", 1)[0]
        elif self.redis_cluster:
            hosts = url.split("://", 1)[-1].split("/", 1)[0]
        else:
            return None
        nodes = []
        for h in hosts.split(","):
            host, _, port = h.strip().rpartition(":") if ":" in h else (h.strip(), "", "6379")
            nodes.append((host, int(port)))
        return nodes

    def redis_url_for(self, db: int) -> str:
        """LEDGER_REDIS_URL with database ``db`` instead of its own."""
        base, sep, tail = self.redis_url.rpartition("/")
        if sep and base.startswith("redis") and tail.isdigit():
            return f"{base}/{db}"
        return f"{self.redis_url.rstrip('/')}/{db}"

    @field_validator("tracing")
    @classmethod
    def _known_exporter(cls, value: str | None) -> str | None:
        spec = (value or "").strip()
        if spec and spec not in ("otlp", "console", "off") and not (spec.startswith("file:") and spec[5:]):
            raise ValueError(f"LEDGER_TRACING must be {TRACING_EXPORTERS}, not {spec!r}")
        return value

    @property
    def tracing_exporter(self) -> str | None:
        """otlp, console or file:PATH; None when tracing is off."""
        spec = (self.tracing or "").strip()
        if not spec:
            return "otlp" if self.otlp_endpoint else None
        return None if spec == "off" else spec

    @property
    def member_cache_bytes(self) -> int:
        return int(self.member_cache_mb * (1 << 20))

    @property
    def api_token_set(self) -> frozenset[str]:
        """The bearer tokens the API accepts: LEDGER_API_TOKENS and the lines of LEDGER_API_TOKENS_FILE (read
        now), or the local development token when neither is set. Raises ConfigError for an unreadable file."""
        if self.api_tokens is None and self.api_tokens_file is None:
            return frozenset({DEFAULT_API_TOKEN})
        tokens = set(_split_tokens(_secret_text(self.api_tokens), ","))
        if self.api_tokens_file is not None:
            tokens.update(_split_tokens(read_secret_file(self.api_tokens_file, "LEDGER_API_TOKENS_FILE"), "\n",
                                        comments=True))
        return frozenset(tokens)


def _secret_text(value: SecretStr | str | None) -> str:
    # model_copy(update=...) skips validation: a test may hand over a plain str
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value or ""


def _split_tokens(text: str, separator: str, comments: bool = False) -> list[str]:
    parts = (part.strip() for part in text.split(separator))
    return [part for part in parts if part and not (comments and part.startswith("#"))]


def read_secret_file(path: Path, variable: str) -> str:
    """The text of a file holding secrets (a password, tokens). A file that cannot be read is named in the
    error, its content never."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {variable} {path}: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{variable} {path} is not UTF-8 text") from None
