"""Redis from Debian's redis-server, AOF persistence on."""
from __future__ import annotations

import os
import shutil
import subprocess

from tools.stack.maven import InstallError
from tools.stack.service import DEPLOY_LOCAL, LocalService


class RedisServer(LocalService):
    name = "redis"
    port = 6379

    @property
    def config_file(self):
        return self.stack_dir / "conf" / "redis" / "redis.conf"

    def install(self) -> list[str]:
        if shutil.which("redis-server"):
            return []
        if os.geteuid() != 0:
            raise InstallError("redis-server is missing: run `sudo apt-get install -y redis-server`")
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
            result = subprocess.run(cmd, capture_output=True, text=True,
                                    env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            if result.returncode != 0:
                raise InstallError(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
        # Debian starts a system redis on install; ours runs from the repo, so stop that one.
        subprocess.run(["service", "redis-server", "stop"], capture_output=True)
        return ["redis-server (apt)"]

    def prepare(self) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        template = (DEPLOY_LOCAL / "redis" / "redis.conf").read_text()
        self.config_file.write_text(template.replace("{dir}", str(self.data_dir)))

    def argv(self) -> list[str]:
        return [shutil.which("redis-server") or "redis-server", str(self.config_file)]

    def check(self) -> str:
        import redis

        client = redis.Redis(host=self.host, port=self.port, socket_timeout=2, socket_connect_timeout=2)
        try:
            if not client.ping():
                raise RuntimeError("PING did not answer PONG")
            return f"Redis {client.info('server')['redis_version']}"
        finally:
            client.close()
