"""The course's JupyterHub set-up, as functions of a traitlets config, so that the workshop recipe
and the tests build the same hub.

`configure(c, settings)` is everything the course needs whatever the authenticator and spawner:
the exchange as a managed service with a data folder private to the hub's user, the groups
`learners` and `instructors`, the role that lets both use the exchange, the scopes of a learner
server's token, and learner servers that start with the course copied into the learner's home
and open at lesson 00. `workshop(c, settings)` adds what one machine needs for real: PAM (each
learner logs in with their own system account and password) and `LocalProcessSpawner` (each
learner's server runs as that account, so learners cannot read each other's files or the
exchange's). The tests swap a test authenticator and a local spawner in after `configure`.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = [
    "EXCHANGE_ROLE",
    "EXCHANGE_SERVICE",
    "FIRST_LESSON_URL",
    "HubSettings",
    "configure",
    "exchange_service",
    "workshop",
]

EXCHANGE_SERVICE = "exchange"
EXCHANGE_ROLE = "mmcourse-exchange-user"
FIRST_LESSON_URL = "/lab/tree/notebooks/00_welcome.ipynb"


@dataclass(frozen=True)
class HubSettings:
    """One hub's choices; saved as JSON in its state folder by `mmcourse hub`."""

    state_dir: str
    ip: str = "127.0.0.1"  # where the hub's public proxy listens (0.0.0.0: the whole network)
    port: int = 8000
    hub_port: int = 8081  # the hub's own API, loopback only
    proxy_api_port: int = 8001
    exchange_port: int = 10101
    instructors: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()
    instructor_group: str = "instructors"
    learner_group: str = "learners"
    max_bytes: int = 10_000_000
    python: str = field(default_factory=lambda: sys.executable)

    @property
    def exchange_url(self) -> str:
        """How a learner's server reaches the exchange: through the hub's proxy, as on
        Kubernetes (`http://proxy-public/services/exchange/`)."""
        return f"http://127.0.0.1:{self.port}/services/{EXCHANGE_SERVICE}/"

    @property
    def exchange_dir(self) -> Path:
        return Path(self.state_dir) / "exchange"

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> HubSettings:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        raw["instructors"], raw["learners"] = tuple(raw["instructors"]), tuple(raw["learners"])
        return cls(**raw)


def exchange_service(settings: HubSettings) -> dict:
    """The exchange as a JupyterHub managed service (the hub starts it, as its own user)."""
    return {
        "name": EXCHANGE_SERVICE,
        "url": f"http://127.0.0.1:{settings.exchange_port}",
        "command": [settings.python, "-m", "mmcourse.exchange.service"],
        "environment": {
            "MMCOURSE_EXCHANGE_DIR": str(settings.exchange_dir),
            "MMCOURSE_INSTRUCTOR_GROUP": settings.instructor_group,
            "MMCOURSE_LEARNER_GROUP": settings.learner_group,
            "MMCOURSE_EXCHANGE_MAX_BYTES": str(settings.max_bytes),
        },
        "display": True,  # listed on the hub's home page: learners see their hand-ins there
        "oauth_no_confirm": True,  # the course's own service: no "authorize?" page
    }


def configure(c, settings: HubSettings) -> None:
    """Everything the course needs from a hub (not the authenticator or the spawner)."""
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    # the hand-ins: readable by the hub's user (and the service it runs) only
    settings.exchange_dir.mkdir(exist_ok=True, mode=0o700)
    os.chmod(settings.exchange_dir, 0o700)

    c.JupyterHub.bind_url = f"http://{settings.ip}:{settings.port}"
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{settings.hub_port}"
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
    c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")

    c.JupyterHub.services = [exchange_service(settings)]
    c.JupyterHub.load_groups = {
        settings.instructor_group: {"users": list(settings.instructors)},
        settings.learner_group: {"users": list(settings.learners)},
    }
    c.JupyterHub.load_roles = [
        {
            "name": EXCHANGE_ROLE,
            "description": "hand in and fetch feedback through the course's exchange",
            "scopes": [f"access:services!service={EXCHANGE_SERVICE}"],
            "groups": [settings.instructor_group, settings.learner_group],
        }
    ]
    # the token of a learner's server ($JUPYTERHUB_API_TOKEN) may call the exchange as that
    # learner (the default server token may not); it gets these only if the learner holds them
    c.Spawner.server_token_scopes = [
        "users:activity!user",
        "access:servers!server",
        f"access:services!service={EXCHANGE_SERVICE}",
    ]
    c.Spawner.cmd = [settings.python, "-m", "mmcourse.hub.learner_server"]
    c.Spawner.default_url = FIRST_LESSON_URL
    c.Spawner.environment = {"MMCOURSE_EXCHANGE_URL": settings.exchange_url}
    c.Spawner.start_timeout = 120  # 30 learners' servers starting at once on a small machine
    c.Spawner.http_timeout = 120
    users = set(settings.instructors) | set(settings.learners)
    if users:
        c.Authenticator.allowed_users = users
    c.Authenticator.admin_users = set(settings.instructors)


def workshop(c, settings: HubSettings) -> None:
    """The one-machine workshop: the course set-up, system accounts with PAM, one process per
    learner running as that learner."""
    configure(c, settings)
    c.JupyterHub.authenticator_class = "pam"
    c.PAMAuthenticator.open_sessions = False  # no login sessions (systemd-logind) per server
    c.JupyterHub.spawner_class = "localprocess"
