"""How every Kafka client of ours reaches the cluster: the brokers, TLS and the SASL login.

One value, built once from the settings by the composition root, turned into each client library's
own configuration here (librdkafka's properties for confluent-kafka; an ``ssl.SSLContext`` for the
aiokafka clients of the Faust worker). The password is a ``SecretStr`` until the moment a client
is configured, so the connection can be logged or shown in an error without it.
"""
from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})


@dataclass(frozen=True)
class KafkaConnection:
    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if self.sasl and not (self.username and self.password):
            raise ValueError(f"Kafka security protocol {self.security_protocol} needs "
                             "LEDGER_KAFKA_SASL_USERNAME and a password (LEDGER_KAFKA_SASL_PASSWORD[_FILE])")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a Kafka client certificate needs both LEDGER_KAFKA_SSL_CERT_FILE and "
                             "LEDGER_KAFKA_SSL_KEY_FILE")

    @property
    def tls(self) -> bool:
        return self.security_protocol in TLS_PROTOCOLS

    @property
    def sasl(self) -> bool:
        return self.security_protocol in SASL_PROTOCOLS

    def librdkafka(self) -> dict[str, object]:
        """confluent-kafka's properties for this connection (merge the client's own into them)."""
        conf: dict[str, object] = {"bootstrap.servers": self.bootstrap, "security.protocol": self.security_protocol}
        if self.sasl:
            assert self.password is not None
            conf.update({"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.username,
                         "sasl.password": self.password.get_secret_value()})
        if self.tls:
            if self.ca_file is not None:
                conf["ssl.ca.location"] = str(self.ca_file)
            if self.cert_file is not None:
                conf["ssl.certificate.location"] = str(self.cert_file)
                conf["ssl.key.location"] = str(self.key_file)
        return conf

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of a Python (aiokafka) client; None without TLS. Hostnames are checked."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    def describe(self) -> str:
        """Where and how, for messages: never the password."""
        who = f" as {self.username}" if self.sasl else ""
        return f"{self.bootstrap} ({self.security_protocol}{who})"
