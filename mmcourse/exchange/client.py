"""Talking to the exchange from a learner's server: hand in, list, fetch feedback.

On a hub, the learner's server has everything needed in its environment: the exchange's address
(`MMCOURSE_EXCHANGE_URL`, set by the hub recipe) and the server's own hub API token
(`JUPYTERHUB_API_TOKEN`, set by JupyterHub), which the exchange trades with the hub for the
learner's name. Kernels and terminals inherit both, so the same code serves the notebook cell

    from mmcourse.exchange import submit
    submit("ex03")

and the terminal's `mmcourse submit ex03`. Only the standard library is used (urllib).
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

__all__ = [
    "EXCHANGE_URL_ENV",
    "ExchangeClient",
    "ExchangeError",
    "NoHubError",
    "feedback_files",
    "fetch_feedback",
    "find_notebook",
    "hand_in",
    "receipt_text",
    "submit",
]

EXCHANGE_URL_ENV = "MMCOURSE_EXCHANGE_URL"
TOKEN_ENV = "JUPYTERHUB_API_TOKEN"

NO_HUB = (
    "There is no course hub here ($MMCOURSE_EXCHANGE_URL and $JUPYTERHUB_API_TOKEN are not set), "
    "so nothing was submitted. On the course's JupyterHub this hands in your notebook; working on "
    "your own machine, give your instructor the saved file ({path}) the way they asked."
)


class ExchangeError(RuntimeError):
    """The exchange refused a request or could not be reached; the message says why and what
    to do."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class NoHubError(ExchangeError):
    """Not on a hub: no exchange address or no hub token in the environment."""


class ExchangeClient:
    """The exchange's HTTP API (see mmcourse.exchange.service) for one hub user's token."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 60):
        self.url = (url or os.environ.get(EXCHANGE_URL_ENV) or "").rstrip("/") + "/"
        self.token = token or os.environ.get(TOKEN_ENV) or ""
        if self.url == "/" or not self.token:
            raise NoHubError(NO_HUB.format(path="your notebook"))
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        query: dict | None = None,
    ) -> tuple[bytes, dict]:
        """One call; returns (body, headers). A 4xx/5xx becomes ExchangeError with its message."""
        url = self.url + path.lstrip("/")
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        request = urllib.request.Request(url, data=body, method=method)
        request.add_header("Authorization", f"token {self.token}")
        if body is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                message = json.loads(raw)["error"]
            except (ValueError, KeyError, TypeError):
                message = raw.decode("utf-8", "replace")[:300] or error.reason
            raise ExchangeError(
                f"the exchange answered {error.code}: {message}", error.code
            ) from None
        except (urllib.error.URLError, OSError) as error:
            raise ExchangeError(
                f"cannot reach the exchange at {self.url} ({error}); is the hub running?"
            ) from None

    def call(self, method: str, path: str, value=None, **kwargs):
        body = None if value is None else json.dumps(value).encode()
        raw, _ = self.request(method, path, body, **kwargs)
        return json.loads(raw)

    # learners
    def whoami(self) -> dict:
        return self.call("GET", "api/whoami")

    def submit(self, exercise: str, data: bytes) -> dict:
        raw, _ = self.request(
            "POST", f"api/submissions/{exercise}", data, content_type="application/x-ipynb+json"
        )
        return json.loads(raw)

    def submissions(self, exercise: str | None = None, user: str | None = None) -> list[dict]:
        return self.call("GET", "api/submissions", query={"exercise": exercise, "user": user})

    def download(self, submission_id: str) -> bytes:
        return self.request("GET", f"api/submissions/{submission_id}")[0]

    def feedback(self, exercise: str) -> dict:
        return self.call("GET", f"api/feedback/{exercise}")

    def deadline(self, exercise: str) -> str | None:
        return self.call("GET", f"api/deadlines/{exercise}")["deadline"]

    # instructors
    def set_deadline(self, exercise: str, deadline: str | None) -> str | None:
        return self.call("PUT", f"api/deadlines/{exercise}", {"deadline": deadline})["deadline"]

    def collect(self, exercise: str) -> dict:
        return self.call("GET", f"api/collect/{exercise}")

    def release_feedback(self, exercise: str, user: str, feedback: dict) -> dict:
        user_part = urllib.parse.quote(user, safe="")
        return self.call("PUT", f"api/feedback/{exercise}/{user_part}", feedback)


def find_notebook(exercise: str, path: str | Path | None = None) -> Path:
    """The saved notebook to hand in: `path` if given; else the notebook this kernel runs
    (`$JPY_SESSION_NAME`, set by Jupyter) when it is that exercise; else the one copy of the
    exercise in the learner's workspace (`mmcourse start` put it there)."""
    if path is not None:
        found = Path(path).expanduser()
        if not found.is_file():
            raise ExchangeError(f"{found} is not a file; give the path of your saved notebook")
        return found
    session = os.environ.get("JPY_SESSION_NAME", "")
    if session and Path(session).name.startswith(exercise) and Path(session).is_file():
        return Path(session)
    from ..course.release import workspace_dir

    try:
        workspace = workspace_dir()
    except ValueError:
        workspace = Path.cwd() / "workspace"
    copies = sorted(workspace.glob(f"{exercise}_*.ipynb")) + sorted(
        workspace.glob(f"{exercise}.ipynb")
    )
    if len(copies) == 1:
        return copies[0]
    if not copies:
        raise ExchangeError(
            f"no {exercise}_*.ipynb in {workspace}; run `mmcourse start {exercise}` or give the "
            f"notebook's path: mmcourse submit {exercise} PATH"
        )
    names = ", ".join(p.name for p in copies)
    raise ExchangeError(f"several copies of {exercise} in {workspace} ({names}); give the path")


def hand_in(exercise: str, path: str | Path | None = None, client=None) -> dict:
    """Submit the saved notebook of `exercise`; returns the service's receipt (raises
    ExchangeError with the reason when it was not received)."""
    if not re.fullmatch(r"ex\d\d", exercise):
        raise ExchangeError(f"{exercise!r} is not an exercise id; they look like ex03")
    try:
        client = client or ExchangeClient()
    except NoHubError:
        # off a hub, that is the news; the file is named if there is one to give the instructor
        try:
            where = find_notebook(exercise, path)
        except ExchangeError:
            where = "your notebook"
        raise NoHubError(NO_HUB.format(path=where)) from None
    notebook = find_notebook(exercise, path)
    receipt = client.submit(exercise, notebook.read_bytes())
    return {**receipt, "file": str(notebook)}


def receipt_text(receipt: dict) -> str:
    late = f"LATE (the deadline was {receipt['deadline']})" if receipt["late"] else "on time"
    return (
        f"Received {receipt['exercise']} from {receipt['user']} at {receipt['received_at']} "
        f"({late}).\n  file: {receipt.get('file', '?')} (as last saved)\n"
        f"  {receipt['size']} bytes, sha256 {receipt['sha256']}\n  receipt id: {receipt['id']}"
    )


def submit(exercise: str, path: str | Path | None = None) -> None:
    """In a notebook: hand in this exercise (save it first: Ctrl-S) and print the receipt.

    Never raises for an expected problem (no hub, too large, not reachable): it says what went
    wrong and what to do. It returns nothing, so the cell shows the receipt once; `hand_in`
    returns the receipt as a dict."""
    try:
        receipt = hand_in(exercise, path)
    except ExchangeError as error:
        print(f"Not submitted: {error}")
        return
    print(receipt_text(receipt))


def feedback_files(exercise: str, workspace: Path) -> tuple[Path, Path]:
    return workspace / f"{exercise}_feedback.md", workspace / f"{exercise}_feedback.json"


def fetch_feedback(exercise: str, workspace: Path | None = None, client=None) -> tuple[Path, dict]:
    """Download the caller's own latest feedback into the workspace; returns (the .md, the
    record)."""
    from ..course.release import workspace_dir

    client = client or ExchangeClient()
    record = client.feedback(exercise)
    workspace = Path(workspace) if workspace else workspace_dir()
    workspace.mkdir(parents=True, exist_ok=True)
    text_path, json_path = feedback_files(exercise, workspace)
    content = record["feedback"]
    text = content.get("feedback_md") if isinstance(content, dict) else str(content)
    header = f"<!-- feedback version {record['version']}, released {record['released_at']} -->\n"
    text_path.write_text(header + (text or json.dumps(content, indent=1)), encoding="utf-8")
    json_path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return text_path, record
