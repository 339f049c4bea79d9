"""The secure profile's Kafka: SASL_SSL + SCRAM-SHA-512 on 9192, the controller over mutual TLS on
9193, the StandardAuthorizer with the role ACLs of deploy/security/kafka-acls.txt.

The SCRAM users are written into the metadata log when the storage is formatted
(``--add-scram``). Their passwords reach the formatting JVM through a java @argfile (0600, removed
right after), so no command line visible in ``ps`` holds one."""
from __future__ import annotations

import base64
import subprocess
import uuid

from tools.stack import credentials, secure_profile, security_policy
from tools.stack.kafka_server import HEAP, KafkaServer
from tools.stack.maven import InstallError
from tools.stack.service import DEPLOY_LOCAL
from tools.stack.tls import write_secret

ADMIN_TIMEOUT_S = 10.0
SCRAM_ITERATIONS = 8192  # Kafka accepts 4096 to 16384


class SecureKafka(KafkaServer):
    port = secure_profile.KAFKA_PORT
    controller_port = secure_profile.KAFKA_CONTROLLER_PORT

    def config_text(self) -> str:
        tls = secure_profile.tls_files(self.stack_dir)
        text = (DEPLOY_LOCAL / "kafka" / "secure-server.properties").read_text()
        for key, value in {"port": self.port, "controller_port": self.controller_port, "data_dir": self.data_dir,
                           "keystore": tls.keystore, "keystore_password": tls.keystore_password(), "ca": tls.ca,
                           "admin_password": credentials.password(self.stack_dir, "admin")}.items():
            text = text.replace("{" + key + "}", str(value))
        return text.rstrip("\n")

    def prepare(self) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        write_secret(self.config_file, self.config_text())
        if (self.data_dir / "meta.properties").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        argfile = self.config_file.parent / "format.args"
        scram = [f'SCRAM-SHA-512=[name={p},password={credentials.password(self.stack_dir, p)}]'
                 for p in credentials.KAFKA_PRINCIPALS]
        java = self._java("kafka.tools.StorageTool", "format", "--standalone", f"--cluster-id={cluster_id}",
                          "-c", str(self.config_file), *(a for s in scram for a in ("--add-scram", s)))
        # java [options] @argfile: everything after "java" comes from the file, one argument a line.
        write_secret(argfile, "\n".join(_quote(a) for a in java[1:]))
        try:
            result = subprocess.run([java[0], f"@{argfile}"], capture_output=True, text=True, timeout=120)
        finally:
            argfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise InstallError(f"kafka storage format failed:\n{_redact(result.stdout + result.stderr, self)}")

    def argv(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config_file), heap=HEAP)

    def _admin(self):
        from confluent_kafka.admin import AdminClient

        return AdminClient(secure_profile.kafka_config(self.stack_dir, "admin"))

    def check(self) -> str:
        metadata = self._admin().list_topics(timeout=3)
        if not metadata.brokers:
            raise RuntimeError("no brokers in metadata")
        return f"{len(metadata.brokers)} broker(s), {len(metadata.topics)} topic(s), SASL_SSL as admin"

    def provision(self, settings, echo=print) -> None:
        """Set the roles' SCRAM credentials to their password files, and create the role ACLs
        (creating one that exists changes nothing). The admin's credentials stay as formatted: the
        running broker logs in with them."""
        from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

        admin = self._admin()  # held until the futures resolve: a collected client cancels them
        roles = [p for p in credentials.KAFKA_PRINCIPALS if p != "admin"]
        upserts = [UserScramCredentialUpsertion(p, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
                                                credentials.password(self.stack_dir, p).encode()) for p in roles]
        for future in admin.alter_user_scram_credentials(upserts, request_timeout=ADMIN_TIMEOUT_S).values():
            future.result(timeout=ADMIN_TIMEOUT_S)
        rules = security_policy.kafka_acls(security_policy.values_from_settings(settings))
        futures = admin.create_acls([security_policy.acl_binding(r) for r in rules], request_timeout=ADMIN_TIMEOUT_S)
        for future in futures.values():
            future.result(timeout=ADMIN_TIMEOUT_S)
        echo(f"{self.name:<9} SCRAM users {', '.join(roles)} set; {len(rules)} ACLs applied for "
             f"{', '.join(sorted({r.principal for r in rules}))}")


def _quote(arg: str) -> str:
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"' if any(c in arg for c in ' "#\'\\') else arg


def _redact(text: str, server: SecureKafka) -> str:
    for principal in credentials.PRINCIPALS:
        text = text.replace(credentials.password(server.stack_dir, principal), "***")
    return text
