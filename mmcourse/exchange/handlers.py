"""The exchange's request handlers: one per route, each authenticated by the hub first.

`ExchangeHandler.prepare` asks the hub who is calling (a learner's token or a browser's OAuth
cookie), refuses anyone the hub does not give access to the service, and tells instructors (the
hub group) from learners; every error becomes a JSON `{"error": "..."}` with a 4xx status, never
a traceback page. The routes and who may call each: `mmcourse.exchange.service.make_app`.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from typing import TYPE_CHECKING

from jupyterhub.services.auth import HubOAuthenticated, UserNotAllowed
from tornado import httputil, web

from .store import StoreError, SubmissionStore

if TYPE_CHECKING:
    from .service import ExchangeSettings

__all__ = [
    "CollectHandler",
    "DeadlineHandler",
    "ExchangeHandler",
    "FeedbackHandler",
    "NotFoundHandler",
    "PageHandler",
    "ReleaseFeedbackHandler",
    "SubmissionHandler",
    "SubmissionListHandler",
    "WhoAmIHandler",
]

log = logging.getLogger("mmcourse.exchange")


class ExchangeHandler(HubOAuthenticated, web.RequestHandler):
    """Authenticates in `prepare`, answers JSON, and turns every error into a JSON 4xx."""

    browser_page = False  # True: an unauthenticated caller is sent to log in, not given a 401

    def initialize(self, store: SubmissionStore, settings: ExchangeSettings) -> None:
        self.store, self.exchange = store, settings

    async def prepare(self) -> None:
        model = await self.hub_auth.get_user(self, sync=False)
        if model is None:
            if self.browser_page and self.request.method == "GET":
                self.redirect(self.get_login_url())
                return
            raise StoreError(
                401,
                "not logged in to the hub: send 'Authorization: token <hub API token>' (on your "
                "hub server it is $JUPYTERHUB_API_TOKEN) or log in at the hub first",
            )
        try:
            model = self.check_hub_user(model)
        except UserNotAllowed:
            raise StoreError(
                403,
                f"{model.get('name')!r} may not use the exchange (no access:services!service= "
                "scope); ask the instructor to add you to the course's hub group",
            ) from None
        if model.get("kind", "user") != "user":
            raise StoreError(403, "only hub users use the exchange, not services")
        groups = set(model.get("groups") or ())
        self.instructor = self.exchange.instructor_group in groups
        learners = self.exchange.learner_group
        if not self.instructor and learners and learners not in groups:
            raise StoreError(
                403,
                f"{model['name']!r} is not in the hub group {learners!r}; ask the instructor to "
                "add you",
            )
        self.current_user = model

    @property
    def user(self) -> str:
        return self.current_user["name"]

    def require_instructor(self, what: str) -> None:
        if not self.instructor:
            raise StoreError(
                403, f"only instructors (hub group {self.exchange.instructor_group!r}) {what}"
            )

    def send_json(self, value, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(value, indent=1) + "\n")

    def write_error(self, status_code: int, **kwargs) -> None:
        """Every error as JSON naming the problem; never a traceback, whatever went wrong."""
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, StoreError):
            status_code, message = error.status, str(error)
        elif isinstance(error, web.HTTPError) and error.log_message:
            message = error.log_message % error.args if error.args else error.log_message
        elif status_code >= 500:
            message = "the exchange failed on this request; the instructor can see its log"
        else:
            message = httputil.responses.get(status_code, "error")
        self.set_status(status_code)
        self.clear_header("Content-Type")
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": message}) + "\n")

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, StoreError) and value.status < 500:
            log.info("%s %s -> %d: %s", self.request.method, self.request.path, value.status, value)
        else:
            super().log_exception(typ, value, tb)

    def check_exercise(self, exercise: str) -> str:
        return self.store.check_exercise(exercise)


class WhoAmIHandler(ExchangeHandler):
    def get(self) -> None:
        self.send_json({"user": self.user, "instructor": self.instructor})


@web.stream_request_body
class SubmissionHandler(ExchangeHandler):
    """POST api/submissions/{exercise}: hand in (body = the notebook's bytes).
    GET api/submissions/{id}: the exact bytes of one hand-in (its owner or an instructor)."""

    async def prepare(self) -> None:
        """Authenticate before the body arrives, but answer only once it is read: a reply sent
        while the client is still sending is lost behind a proxy (it sees a reset, not the
        401/413). A refused request's bytes are read and dropped, never kept."""
        self.chunks: list[bytes] = []
        self.received = 0
        self.refused: StoreError | None = None
        hard_limit = self.store.max_bytes * 4 + 1_000_000
        self.request.connection.set_max_body_size(hard_limit)
        length = int(self.request.headers.get("Content-Length") or 0)
        if length > hard_limit:
            raise StoreError(413, f"{length} bytes is far over the {self.store.max_bytes} limit")
        try:
            await super().prepare()
        except StoreError as error:
            self.refused = error

    def data_received(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.refused is None and self.received <= self.store.max_bytes:
            self.chunks.append(chunk)

    def post(self, exercise: str) -> None:
        if self.refused is not None:
            raise self.refused
        self.check_exercise(exercise)
        if self.received > self.store.max_bytes:
            raise StoreError(
                413,
                f"the hand-in is {self.received} bytes; the limit is {self.store.max_bytes}. "
                "Clear the notebook's outputs, save, and submit again",
            )
        receipt = self.store.submit(self.user, exercise, b"".join(self.chunks))
        log.info(
            "%s handed in %s (%d bytes, late=%s)", self.user, exercise, receipt.size, receipt.late
        )
        self.send_json(receipt.as_dict(), status=201)

    def get(self, submission_id: str) -> None:
        if self.refused is not None:
            raise self.refused
        receipt = self.store.receipt(submission_id)
        # someone else's hand-in is answered exactly like one that does not exist
        if receipt is None or (receipt.user != self.user and not self.instructor):
            raise StoreError(404, f"no hand-in {submission_id!r} of yours")
        self.set_header("Content-Type", "application/x-ipynb+json")
        self.set_header("X-Content-SHA256", receipt.sha256)
        self.finish(self.store.content(receipt))


class SubmissionListHandler(ExchangeHandler):
    """GET api/submissions[?exercise=&user=]: a learner's own receipts; an instructor's: all."""

    def get(self) -> None:
        exercise = self.get_query_argument("exercise", None)
        if exercise is not None:
            self.check_exercise(exercise)
        user = self.get_query_argument("user", None)
        if not self.instructor:
            if user not in (None, self.user):
                raise StoreError(403, "learners list only their own hand-ins")
            user = self.user
        receipts = self.store.submissions(user=user, exercise=exercise)
        self.send_json([r.as_dict() for r in receipts])


class DeadlineHandler(ExchangeHandler):
    """GET (anyone) / PUT (instructors) api/deadlines/{exercise}, body {"deadline": ISO or null}."""

    def get(self, exercise: str) -> None:
        self.check_exercise(exercise)
        self.send_json({"exercise": exercise, "deadline": self.store.deadline(exercise)})

    def put(self, exercise: str) -> None:
        self.require_instructor("set deadlines")
        self.check_exercise(exercise)
        try:
            body = json.loads(self.request.body or b"")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise StoreError(
                400, 'the body must be JSON: {"deadline": "2026-12-03T12:00Z"} (or null)'
            ) from None
        if not isinstance(body, dict) or "deadline" not in body:
            raise StoreError(400, 'the body must be {"deadline": "<ISO-8601 time>"} or null')
        if body["deadline"] is not None and not isinstance(body["deadline"], str):
            raise StoreError(400, "deadline must be a string like 2026-12-03T12:00Z, or null")
        deadline = self.store.set_deadline(exercise, body["deadline"], by=self.user)
        self.send_json({"exercise": exercise, "deadline": deadline})


class CollectHandler(ExchangeHandler):
    """GET api/collect/{exercise} (instructors): the latest on-time hand-in of every learner."""

    def get(self, exercise: str) -> None:
        self.require_instructor("collect hand-ins")
        on_time, late_only = self.store.latest_on_time(exercise)
        submissions = [
            {**r.as_dict(), "content_b64": base64.b64encode(self.store.content(r)).decode()}
            for r in on_time
        ]
        self.send_json(
            {
                "exercise": exercise,
                "deadline": self.store.deadline(exercise),
                "submissions": submissions,
                "late_only": [r.as_dict() for r in late_only],
            }
        )


class ReleaseFeedbackHandler(ExchangeHandler):
    """PUT api/feedback/{exercise}/{user} (instructors): a new version of one learner's feedback."""

    def put(self, exercise: str, user: str) -> None:
        self.require_instructor("release feedback")
        if not self.request.body:
            raise StoreError(400, "the feedback is empty; send the grader's result as the body")
        released = self.store.release_feedback(exercise, user, self.request.body, by=self.user)
        self.send_json(
            {
                "exercise": exercise,
                "user": user,
                "version": released.version,
                "released_at": released.released_at,
            },
            status=201,
        )


class FeedbackHandler(ExchangeHandler):
    """GET api/feedback/{exercise}: the caller's own latest feedback, never anyone else's."""

    def get(self, exercise: str) -> None:
        found = self.store.feedback(exercise, self.user)
        if found is None:
            raise StoreError(404, f"no feedback on {exercise} has been released to you yet")
        try:
            content = json.loads(found.content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            content = found.content.decode("utf-8", "replace")
        self.send_json(
            {
                "exercise": exercise,
                "user": found.user,
                "version": found.version,
                "released_at": found.released_at,
                "feedback": content,
            }
        )


class PageHandler(ExchangeHandler):
    """GET /services/exchange/: the caller's own hand-ins, as a page for a browser."""

    browser_page = True

    def get(self) -> None:
        rows = "".join(
            f"<tr><td>{html.escape(r.exercise)}</td><td>{html.escape(r.received_at)}</td>"
            f"<td><code>{r.sha256}</code></td><td>{r.size}</td>"
            f"<td>{'late' if r.late else 'on time'}</td></tr>"
            for r in self.store.submissions(user=self.user)
        )
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            "<!doctype html><title>mmcourse exchange</title>"
            f"<h1>Hand-ins of {html.escape(self.user)}</h1>"
            "<table><tr><th>exercise</th><th>received (UTC)</th><th>sha256</th><th>bytes</th>"
            f"<th>on time?</th></tr>{rows}</table>"
        )


class NotFoundHandler(ExchangeHandler):
    def prepare(self) -> None:
        raise StoreError(404, f"no such exchange route: {self.request.path}")
