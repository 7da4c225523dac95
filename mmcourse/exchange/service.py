"""The exchange: a JupyterHub service that takes learners' hand-ins and gives back feedback.

JupyterHub runs it as a managed service (`python -m mmcourse.exchange.service`, see
`mmcourse.hub.config`) and authenticates every request: a browser through the hub's OAuth, a
learner's server with its hub API token (`Authorization: token $JUPYTERHUB_API_TOKEN`). Who is
calling comes from the hub and nothing else; no file or folder name is trusted. Instructors are
the members of a hub group (`instructors`), learners everyone else the hub lets in (by default the
members of `learners`). Learners and service talk only over HTTP, so the service works the same
on one machine and on Kubernetes. Every error is a JSON `{"error": "..."}` with a 4xx status,
never a traceback page. The routes and who may call each: README.md, "The exchange".
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop

from . import handlers as h
from .store import DEFAULT_MAX_BYTES, SubmissionStore, course_exercises

__all__ = ["ExchangeSettings", "main", "make_app"]

log = logging.getLogger("mmcourse.exchange")


@dataclass(frozen=True)
class ExchangeSettings:
    """What the hub recipe passes in the service's environment (MMCOURSE_EXCHANGE_*)."""

    data_dir: Path
    prefix: str = "/services/exchange/"
    instructor_group: str = "instructors"
    learner_group: str = "learners"  # "" lets in every hub user the hub gives access
    max_bytes: int = DEFAULT_MAX_BYTES

    @classmethod
    def from_environment(cls) -> ExchangeSettings:
        env = os.environ
        return cls(
            data_dir=Path(env.get("MMCOURSE_EXCHANGE_DIR", "exchange-data")),
            prefix=env.get("JUPYTERHUB_SERVICE_PREFIX", "/services/exchange/"),
            instructor_group=env.get("MMCOURSE_INSTRUCTOR_GROUP", "instructors"),
            learner_group=env.get("MMCOURSE_LEARNER_GROUP", "learners"),
            max_bytes=int(env.get("MMCOURSE_EXCHANGE_MAX_BYTES", DEFAULT_MAX_BYTES)),
        )


def make_app(store: SubmissionStore, settings: ExchangeSettings) -> web.Application:
    """The routes, under the service's prefix, and who may call each:

    GET api/whoami (anyone let in) · POST api/submissions/{exercise} (as oneself) · GET
    api/submissions (learners: their own; instructors: all, ?user=, ?exercise=) · GET
    api/submissions/{id} (its owner or an instructor) · GET/PUT api/deadlines/{exercise} (PUT:
    instructors) · GET api/collect/{exercise} (instructors) · PUT api/feedback/{exercise}/{user}
    (instructors) · GET api/feedback/{exercise} (one's own) · GET / (a page of one's own hand-ins).
    """
    prefix = settings.prefix.rstrip("/") + "/"
    args = {"store": store, "settings": settings}
    routes = [
        (prefix + "api/whoami", h.WhoAmIHandler, args),
        (prefix + r"api/submissions/([^/]+)", h.SubmissionHandler, args),
        (prefix + "api/submissions", h.SubmissionListHandler, args),
        (prefix + r"api/deadlines/([^/]+)", h.DeadlineHandler, args),
        (prefix + r"api/collect/([^/]+)", h.CollectHandler, args),
        (prefix + r"api/feedback/([^/]+)/([^/]+)", h.ReleaseFeedbackHandler, args),
        (prefix + r"api/feedback/([^/]+)", h.FeedbackHandler, args),
        (prefix + "oauth_callback", HubOAuthCallbackHandler),
        (prefix, h.PageHandler, args),
        (r".*", h.NotFoundHandler, args),
    ]
    return web.Application(routes, cookie_secret=os.urandom(32), serve_traceback=False)


def main() -> None:
    """Run as the hub's managed service: listen on $JUPYTERHUB_SERVICE_URL."""
    logging.basicConfig(level=logging.INFO, format="[exchange %(asctime)s] %(message)s")
    settings = ExchangeSettings.from_environment()
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = SubmissionStore(
        settings.data_dir,
        os.environ.get("MMCOURSE_EXCHANGE_EXERCISES", "").split(",")
        if os.environ.get("MMCOURSE_EXCHANGE_EXERCISES")
        else course_exercises(),
        max_bytes=settings.max_bytes,
    )
    # a learner moved into or out of a group is seen within a minute
    HubOAuth.instance(cache_max_age=60)
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    server = HTTPServer(
        make_app(store, settings), xheaders=True, max_body_size=settings.max_bytes * 4 + 1_000_000
    )
    server.listen(url.port, url.hostname)
    log.info("exchange on %s, data in %s", url.geturl(), settings.data_dir)
    loop = IOLoop.current()
    # the hub stops its services with SIGTERM or SIGINT: stop quietly, the index is consistent
    for stop in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_event_loop().add_signal_handler(stop, loop.stop)
    loop.start()
    store.close()
    log.info("exchange stopped")


if __name__ == "__main__":
    main()
