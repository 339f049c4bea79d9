"""Apache Kafka 4.x, KRaft combined mode (broker + controller), single node, from Maven Central jars."""
from __future__ import annotations

import base64
import subprocess
import uuid

from tools.stack.maven import InstallError, ensure_jars
from tools.stack.service import DEPLOY_LOCAL, LocalService

HEAP = "-Xms512m", "-Xmx512m"


class KafkaServer(LocalService):
    name = "kafka"
    port = 9092

    @property
    def lib_dir(self):
        return self.stack_dir / "lib" / "kafka"

    @property
    def config_file(self):
        return self.stack_dir / "conf" / "kafka" / "server.properties"

    def install(self) -> list[str]:
        return ["kafka jars"] if ensure_jars(DEPLOY_LOCAL / "kafka" / "pom.xml", self.lib_dir) else []

    def _java(self, main: str, *args: str, heap: tuple[str, ...] = ("-Xmx256m",)) -> list[str]:
        return [
            "java", *heap, "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.log_dir}",
            f"-Dlog4j2.configurationFile={DEPLOY_LOCAL / 'kafka' / 'log4j2.properties'}",
            "-cp", f"{self.lib_dir}/*", main, *args,
        ]

    def prepare(self) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        template = (DEPLOY_LOCAL / "kafka" / "server.properties").read_text()
        self.config_file.write_text(template.replace("{data_dir}", str(self.data_dir)))
        if (self.data_dir / "meta.properties").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        result = subprocess.run(
            # --cluster-id=ID, not "-t ID": a base64url id may start with "-", which argparse
            # would take for an option (1 format in 64 failed so).
            self._java("kafka.tools.StorageTool", "format", "--standalone", f"--cluster-id={cluster_id}",
                       "-c", str(self.config_file)),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise InstallError(f"kafka storage format failed:\n{result.stdout}{result.stderr}")

    def argv(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config_file), heap=HEAP)

    def check(self) -> str:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": f"{self.host}:{self.port}", "socket.timeout.ms": 2000})
        metadata = admin.list_topics(timeout=3)
        if not metadata.brokers:
            raise RuntimeError("no brokers in metadata")
        return f"{len(metadata.brokers)} broker(s), {len(metadata.topics)} topic(s)"

    def log_files(self):
        return [self.process.log_file, self.log_dir / "server.log"]
