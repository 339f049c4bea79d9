"""The secure profile's Redis: TLS on 6380 only, ACL users rendered from deploy/security/redis-users.acl."""
from __future__ import annotations

from tools.stack import credentials, secure_profile, security_policy
from tools.stack.redis_server import RedisServer
from tools.stack.service import DEPLOY_LOCAL
from tools.stack.tls import write_secret


class SecureRedis(RedisServer):
    port = secure_profile.REDIS_PORT

    @property
    def acl_file(self):
        return self.stack_dir / "conf" / "redis" / "users.acl"

    def config_text(self) -> str:
        tls = secure_profile.tls_files(self.stack_dir)
        text = (DEPLOY_LOCAL / "redis" / "redis-secure.conf").read_text()
        for key, value in {"dir": self.data_dir, "cert": tls.cert, "key": tls.key, "ca": tls.ca,
                           "aclfile": self.acl_file}.items():
            text = text.replace("{" + key + "}", str(value))
        return text

    def prepare(self) -> None:
        from app.config import Settings

        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config_text())
        self.write_acl_file(Settings())

    def write_acl_file(self, settings) -> None:
        """Render the aclfile (password digests only) that the server loads at start and on ACL LOAD."""
        values = security_policy.values_from_settings(settings, credentials.passwords(self.stack_dir))
        write_secret(self.acl_file, security_policy.redis_aclfile(values).rstrip("\n"))

    def provision(self, settings, echo=print) -> None:
        """Reload the users from the aclfile (rendered again for ``settings``), so a changed policy applies."""
        self.write_acl_file(settings)
        client = secure_profile.redis_client(self.stack_dir)
        try:
            client.execute_command("ACL", "LOAD")
            echo(f"{self.name:<9} ACL users loaded: {', '.join(u.decode() if isinstance(u, bytes) else u for u in client.acl_users())}")
        finally:
            client.close()

    def check(self) -> str:
        client = secure_profile.redis_client(self.stack_dir, timeout=2)
        try:
            if not client.ping():
                raise RuntimeError("PING did not answer PONG")
            return f"Redis {client.info('server')['redis_version']}, TLS, as admin"
        finally:
            client.close()
