"""A real JupyterHub on loopback, for tests: the course's own hub configuration
(`mmcourse.hub.config.configure`, the one the workshop recipe uses) with the test authenticator
(`dummy`: any password) and the local spawner (`simple`: every server runs as this user, homes in
a temporary folder) swapped in, as JupyterHub's own tests do. Never use those two outside tests.

    with running_hub(tmp_path) as hub:
        hub.add_user("alice", groups=["learners"])
        token = hub.token("alice")                 # a hub API token of alice's
        hub.exchange_call("GET", "api/whoami", token).json()  # {"user": "alice", ...}
        server = hub.start_server("alice")         # alice's server, started by the hub
        server.home, server.env                    # its home and its real environment
        hub.run_as_server(server, "submit", "ex00")  # `mmcourse submit ex00` in its terminal

Ports are free random ones on 127.0.0.1; every file is under the folder given; stopping the hub
stops the proxy, the exchange and every server it started, and the harness makes sure of it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from conftest import free_port, need_system

from mmcourse.hub.config import EXCHANGE_SERVICE, HubSettings
from mmcourse.hub.launch import CONFIG_FILE

__all__ = ["Hub", "LearnerServer", "configurable_http_proxy", "require_hub_tools", "running_hub"]

TEST_CONFIG = """
import os

from mmcourse.hub.config import HubSettings, configure

c = get_config()  # noqa
configure(c, HubSettings.load({settings!r}))
# test-only: any password logs in, and every server runs as this user with its home in {homes!r}
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {homes!r} + "/{{username}}"
# as in tests/conftest.py: no update checks or news; as root (a container), JupyterLab needs leave
c.Spawner.args = [
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    *(["--allow-root"] if os.geteuid() == 0 else []),
]
# the harness's own API-only service, in the hub's admin role: creates users, groups, tokens
c.JupyterHub.services.append({{"name": "harness", "api_token": {admin_token!r}}})
c.JupyterHub.load_roles.append({{"name": "admin", "services": ["harness"]}})
c.JupyterHub.log_level = "INFO"
"""


@pytest.fixture
def configurable_http_proxy() -> str:
    """JupyterHub's proxy (npm's configurable-http-proxy); skipped when absent unless CI."""
    return require_hub_tools()


def require_hub_tools() -> str:
    """Skip (fail under MMCOURSE_REQUIRE_SYSTEM=1) without the proxy or jupyterhub; usable in a
    fixture of any scope. Returns the proxy's path."""
    path = shutil.which("configurable-http-proxy")
    need_system(
        "configurable-http-proxy (JupyterHub's proxy)",
        path is not None,
        "npm install -g configurable-http-proxy@5.3.0",
    )
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        need_system("the hub extra", False, "pip install -c constraints.txt -e '.[hub]'")
    return path


@dataclass
class LearnerServer:
    user: str
    pid: int
    home: Path
    env: dict  # the server process's real environment (what its kernels and terminals get)


@dataclass
class Hub:
    url: str  # the public address (the proxy), e.g. http://127.0.0.1:PORT
    admin_token: str
    settings: HubSettings
    homes: Path
    log: Path
    servers: list[LearnerServer] = field(default_factory=list)

    @property
    def exchange_url(self) -> str:
        return f"{self.url}/services/{EXCHANGE_SERVICE}/"

    def api(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        """The hub's REST API (path under /hub/api/), as the harness's admin service by default."""
        token = token or self.admin_token
        headers = {"Authorization": f"token {token}"} if token else {}
        return requests.request(
            method, f"{self.url}/hub/api/{path.lstrip('/')}", headers=headers, timeout=60, **kwargs
        )

    def _ok(self, response: requests.Response) -> requests.Response:
        if response.status_code >= 400:
            raise AssertionError(
                f"hub API {response.request.method} {response.url}: "
                f"{response.status_code} {response.text[:500]}"
            )
        return response

    def add_user(self, name: str, groups: tuple[str, ...] | list[str] = ()) -> None:
        self._ok(self.api("POST", f"users/{name}"))
        for group in groups:
            self.add_to_group(group, [name])

    def add_to_group(self, group: str, names: list[str]) -> None:
        self._ok(self.api("POST", f"groups/{group}/users", json={"users": names}))

    def token(self, user: str, scopes: list[str] | None = None) -> str:
        """A new API token of `user` (default: all of the user's permissions)."""
        body = {"note": "test"} if scopes is None else {"note": "test", "scopes": scopes}
        return self._ok(self.api("POST", f"users/{user}/tokens", json=body)).json()["token"]

    def start_server(self, user: str, seconds: float = 180) -> LearnerServer:
        """Have the hub start `user`'s server and wait until it is ready."""
        started = self.api("POST", f"users/{user}/server")
        if started.status_code not in (201, 202, 400):  # 400: already running
            self._ok(started)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            model = self._ok(self.api("GET", f"users/{user}")).json()
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                pid = int(server["state"]["pid"])
                env = _environment(pid)
                found = LearnerServer(user, pid, Path(env["HOME"]), env)
                self.servers.append(found)
                return found
            time.sleep(0.5)
        raise AssertionError(f"{user}'s server was not ready within {seconds} s; see {self.log}")

    def exchange_call(
        self, method: str, path: str, token: str | None = None, **kwargs
    ) -> requests.Response:
        """One request to the exchange through the hub's proxy (no token: unauthenticated)."""
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"token {token}"
        return requests.request(
            method,
            self.exchange_url + path.lstrip("/"),
            headers=headers,
            timeout=60,
            allow_redirects=False,
            **kwargs,
        )

    def run_as_server(self, server: LearnerServer, *argv: str) -> subprocess.CompletedProcess:
        """`mmcourse ARGV` as a terminal of that server runs it: its environment, its home."""
        return subprocess.run(
            [sys.executable, "-m", "mmcourse", *argv],
            env=server.env,
            cwd=server.home,
            capture_output=True,
            text=True,
            timeout=120,
        )


def _environment(pid: int) -> dict:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def _wait(check, seconds: float, what: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"JupyterHub exited ({process.returncode}) before {what}:\n"
                + log.read_text(errors="replace")[-3000:]
            )
        with contextlib.suppress(requests.RequestException):
            if check():
                return
        time.sleep(0.3)
    raise AssertionError(
        f"{what} within {seconds} s; hub log:\n" + log.read_text(errors="replace")[-3000:]
    )


@contextlib.contextmanager
def running_hub(
    tmp: Path,
    max_bytes: int = 10_000_000,
    recipe: bool = False,
    instructors: tuple[str, ...] = (),
    learners: tuple[str, ...] = (),
) -> Iterator[Hub]:
    """Start JupyterHub (with its proxy and the exchange) under `tmp`; stop it all after.

    `recipe=True` runs the workshop's own config file (mmcourse/hub/jupyterhub_config.py: PAM,
    system accounts) instead of the test one; it has no admin service (hub.admin_token is "")."""
    tmp = Path(tmp)
    homes = tmp / "homes"
    homes.mkdir(parents=True, exist_ok=True)
    settings = HubSettings(
        state_dir=str(tmp / "hub-state"),
        port=free_port(),
        hub_port=free_port(),
        proxy_api_port=free_port(),
        exchange_port=free_port(),
        max_bytes=max_bytes,
        instructors=instructors,
        learners=learners,
    )
    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
    settings_file = tmp / "hub-settings.json"
    settings.save(settings_file)
    admin_token = "" if recipe else secrets.token_hex(16)
    config = CONFIG_FILE if recipe else tmp / "jupyterhub_config.py"
    if not recipe:
        config.write_text(
            TEST_CONFIG.format(
                settings=str(settings_file), homes=str(homes), admin_token=admin_token
            )
        )
    log = tmp / "hub.log"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MMCOURSE_HUB_SETTINGS": str(settings_file),
    }
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)],
            cwd=settings.state_dir,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    hub = Hub(f"http://127.0.0.1:{settings.port}", admin_token, settings, homes, log)
    try:
        _wait(lambda: hub.api("GET", "").status_code == 200, 90, "the hub answered", process, log)
        _wait(
            lambda: hub.exchange_call("GET", "api/whoami").status_code == 401,
            60,
            "the exchange answered through the proxy",
            process,
            log,
        )
        yield hub
    finally:
        _stop(process, hub, Path(settings.state_dir))


def _stop(process: subprocess.Popen, hub: Hub, state: Path) -> None:
    """Stop the hub (it stops its servers, services and proxy); then make sure nothing is left."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    leftovers = [server.pid for server in hub.servers]
    proxy_pid = state / "proxy.pid"
    if proxy_pid.exists():
        with contextlib.suppress(ValueError):
            leftovers.append(int(proxy_pid.read_text().strip()))
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
