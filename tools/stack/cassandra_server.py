"""Apache Cassandra 5.0, single node, from Maven Central jars, with Cassandra's own Java 17 flags."""
from __future__ import annotations

from tools.stack.maven import ensure_jars
from tools.stack.service import DEPLOY_LOCAL, LocalService


class CassandraServer(LocalService):
    name = "cassandra"
    port = 9042

    @property
    def lib_dir(self):
        return self.stack_dir / "lib" / "cassandra"

    @property
    def config_file(self):
        return self.stack_dir / "conf" / "cassandra" / "cassandra.yaml"

    def install(self) -> list[str]:
        return ["cassandra jars"] if ensure_jars(DEPLOY_LOCAL / "cassandra" / "pom.xml", self.lib_dir) else []

    def prepare(self) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        template = (DEPLOY_LOCAL / "cassandra" / "cassandra.yaml").read_text()
        self.config_file.write_text(template.replace("{dir}", str(self.data_dir)))

    def _jvm_options(self) -> list[str]:
        lines = (DEPLOY_LOCAL / "cassandra" / "jvm17-server.options").read_text().splitlines()
        # "--add-exports X" is one line in the file but two arguments to java.
        return [arg for line in lines if line.strip().startswith("-") for arg in line.split()]

    def argv(self) -> list[str]:
        jamm = next(self.lib_dir.glob("jamm-*.jar"))
        return [
            "java", *self._jvm_options(),
            f"-javaagent:{jamm}",
            f"-Dcassandra.config=file://{self.config_file}",
            f"-Dcassandra.logdir={self.log_dir}",
            f"-Dcassandra.storagedir={self.data_dir}",
            f"-Dlogback.configurationFile={DEPLOY_LOCAL / 'cassandra' / 'logback.xml'}",
            "-cp", f"{self.lib_dir}/*",
            "org.apache.cassandra.service.CassandraDaemon",
        ]

    def check(self) -> str:
        from cassandra.cluster import Cluster

        cluster = Cluster([self.host], port=self.port, connect_timeout=2, control_connection_timeout=2)
        try:
            session = cluster.connect()
            row = session.execute("SELECT release_version FROM system.local", timeout=3).one()
            return f"Cassandra {row.release_version}"
        finally:
            cluster.shutdown()

    def log_files(self):
        return [self.process.log_file, self.log_dir / "system.log"]
