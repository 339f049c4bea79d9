"""The secure profile's Cassandra: PasswordAuthenticator, CassandraAuthorizer and CassandraRoleManager,
client TLS required (PKCS12 keystore), native port 9142 and storage/JMX ports of its own.

At the first start the only login is the default ``cassandra`` superuser: provisioning creates the
``admin`` superuser with its generated password, then, logged in as admin, takes away the default
role's login; the component roles and their grants come from deploy/security/cassandra-roles.cql
once the keyspace exists (after `ledger migrate`)."""
from __future__ import annotations

from tools.stack import credentials, secure_profile, security_policy
from tools.stack.cassandra_server import CassandraServer
from tools.stack.maven import InstallError
from tools.stack.service import DEPLOY_LOCAL
from tools.stack.tls import write_secret

DEFAULT_LOGIN = ("cassandra", "cassandra")
TIMEOUT_S = 10.0

SECURE_YAML = """
role_manager: CassandraRoleManager
client_encryption_options:
  enabled: true
  optional: false
  keystore: {keystore}
  keystore_password: {keystore_password}
  store_type: PKCS12
  require_client_auth: false
"""


class SecureCassandra(CassandraServer):
    port = secure_profile.CASSANDRA_PORT

    def prepare(self) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        write_secret(self.config_file, self.config_text())

    def config_text(self) -> str:
        text = (DEPLOY_LOCAL / "cassandra" / "cassandra.yaml").read_text().replace("{dir}", str(self.data_dir))
        storage = secure_profile.CASSANDRA_STORAGE_PORT
        for old, new in {
            "cluster_name: download-ledger-local": "cluster_name: download-ledger-secure",
            '- seeds: "127.0.0.1:7000"': f'- seeds: "127.0.0.1:{storage}"',
            "storage_port: 7000": f"storage_port: {storage}",
            "native_transport_port: 9042": f"native_transport_port: {self.port}",
            "authenticator: AllowAllAuthenticator": "authenticator: PasswordAuthenticator",
            "authorizer: AllowAllAuthorizer": "authorizer: CassandraAuthorizer",
        }.items():
            if old not in text:
                raise InstallError(f"deploy/local/cassandra/cassandra.yaml has no line {old!r} to adapt for the "
                                   "secure profile")
            text = text.replace(old, new)
        tls = secure_profile.tls_files(self.stack_dir)
        text += SECURE_YAML.format(keystore=tls.keystore, keystore_password=tls.keystore_password())
        return text.rstrip("\n")

    def _jvm_options(self) -> list[str]:
        keep = [a for a in super()._jvm_options() if not a.startswith("-Dcassandra.jmx.local.port")]
        # The default superuser is set up at once, not 10 s after start-up, so provisioning can log in.
        return [*keep, f"-Dcassandra.jmx.local.port={secure_profile.CASSANDRA_JMX_PORT}",
                "-Dcassandra.superuser_setup_delay_ms=0"]

    def _admin_ready(self) -> bool:
        return (self.data_dir / "admin-provisioned").exists()

    def _session(self, login: tuple[str, str] | None = None):
        user, password = login or ("admin", credentials.password(self.stack_dir, "admin"))
        cluster = secure_profile.cassandra_cluster(self.stack_dir, user, password=password, timeout=2)
        return cluster, cluster.connect()

    def check(self) -> str:
        login = None if self._admin_ready() else DEFAULT_LOGIN
        cluster, session = self._session(login)
        try:
            row = session.execute("SELECT release_version FROM system.local", timeout=3).one()
            who = "admin" if login is None else "the default superuser (not provisioned yet)"
            return f"Cassandra {row.release_version}, TLS, as {who}"
        finally:
            cluster.shutdown()

    def provision(self, settings, echo=print) -> None:
        if not self._admin_ready():
            self._create_admin()
            echo(f"{self.name:<9} superuser admin created; the default cassandra login is disabled")
        cluster, session = self._session()
        try:
            keyspace = settings.cassandra_keyspace
            values = security_policy.values_from_settings(settings, credentials.passwords(self.stack_dir))
            statements = security_policy.cassandra_statements(values)
            if session.cluster.metadata.keyspaces.get(keyspace) is None:
                statements = [s for s in statements if not s.upper().startswith("GRANT ")]
                echo(f"{self.name:<9} keyspace {keyspace} not there yet: its grants are applied by "
                     "`ledger stack provision --profile secure` after `ledger migrate`")
            for statement in statements:
                _execute(session, statement, self)
            echo(f"{self.name:<9} roles and grants applied ({len(statements)} statements)")
        finally:
            cluster.shutdown()

    def _create_admin(self) -> None:
        password = credentials.password(self.stack_dir, "admin")
        cluster, session = self._session(DEFAULT_LOGIN)
        try:
            _execute(session, "CREATE ROLE IF NOT EXISTS admin WITH SUPERUSER = true AND LOGIN = true "
                              f"AND PASSWORD = '{password}'", self)
        finally:
            cluster.shutdown()
        cluster, session = self._session()
        try:
            _execute(session, "ALTER ROLE cassandra WITH SUPERUSER = false AND LOGIN = false", self)
        finally:
            cluster.shutdown()
        (self.data_dir / "admin-provisioned").touch()


def _execute(session, statement: str, server: SecureCassandra) -> None:
    try:
        session.execute(statement, timeout=TIMEOUT_S)
    except Exception as exc:  # the statement holds a password: report the error, never the statement
        text = f"{type(exc).__name__}: {exc}"
        for principal in credentials.PRINCIPALS:
            text = text.replace(credentials.password(server.stack_dir, principal), "***")
        raise InstallError(f"cassandra provisioning failed: {text[:300]}") from None
