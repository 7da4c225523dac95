"""The classroom loop against a real JupyterHub on loopback (tests/hub_harness.py): the course's
hub configuration, its proxy, the exchange service, learners' servers started by the hub; and every
access-control case of the exchange, each asserting the exact status and who sees what."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from conftest import ROOT
from hub_harness import require_hub_tools, running_hub

pytestmark = [pytest.mark.slow, pytest.mark.system("configurable-http-proxy")]

LEARNERS = ("alice", "bob", "dave")
LIMIT = 100_000  # the hub's hand-in size limit in these tests


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """One hub for the module: instructor carol, learners alice, bob, dave; eve is a hub user in
    no course group."""
    require_hub_tools()
    with running_hub(tmp_path_factory.mktemp("hub"), max_bytes=LIMIT) as running:
        running.add_user("carol", groups=["instructors"])
        for name in LEARNERS:
            running.add_user(name, groups=["learners"])
        running.add_user("eve")
        running.tokens = {name: running.token(name) for name in ("carol", *LEARNERS, "eve")}
        yield running


def notebook(text: str) -> bytes:
    cell = {"cell_type": "code", "source": text, "metadata": {}, "outputs": []}
    cell["execution_count"] = None
    return json.dumps(
        {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [cell]}
    ).encode()


def instructor_env(hub) -> dict:
    """What the instructor's terminal has: the exchange's address and a hub token of theirs."""
    return {
        **os.environ,
        "MMCOURSE_EXCHANGE_URL": hub.exchange_url,
        "JUPYTERHUB_API_TOKEN": hub.tokens["carol"],
    }


def run_mmcourse(env: dict, cwd: Path, *argv: str):
    return subprocess.run(
        [sys.executable, "-m", "mmcourse", *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_classroom_loop_end_to_end(hub, bwrap, tmp_path):
    """Servers start with the course; alice hands in a solution, bob twice (a solution, then the
    untouched exercise), dave only after the deadline; carol collects, grades in the sandbox and
    releases; each learner fetches exactly their own feedback."""
    course_lesson = (ROOT / "notebooks" / "00_welcome.ipynb").read_bytes()
    exercise_file = "ex00_shapes_world.ipynb"
    servers = {name: hub.start_server(name) for name in LEARNERS}
    for name, server in servers.items():
        assert server.home == hub.homes / name
        assert (server.home / "notebooks" / "00_welcome.ipynb").read_bytes() == course_lesson
        assert (server.home / "workspace" / exercise_file).is_file()
        assert server.env["MMCOURSE_EXCHANGE_URL"] == hub.exchange_url
    # the server opens at lesson 00
    landing = requests.get(
        f"{hub.url}/user/alice/",
        headers={"Authorization": f"token {hub.tokens['alice']}"},
        allow_redirects=False,
        timeout=30,
    )
    assert landing.status_code in (301, 302, 303, 307)
    where = landing.headers["Location"].split("?")[0]
    assert where.endswith("/user/alice/lab/tree/notebooks/00_welcome.ipynb")
    # a restart never overwrites the learner's work
    mine = servers["alice"].home / "workspace" / exercise_file
    mine.write_bytes((ROOT / "solutions" / exercise_file).read_bytes())
    assert hub.api("DELETE", "users/alice/server").status_code in (202, 204)
    for _ in range(120):
        if not hub.api("GET", "users/alice").json()["servers"]:
            break
        time.sleep(0.5)
    servers["alice"] = hub.start_server("alice")
    assert mine.read_bytes() == (ROOT / "solutions" / exercise_file).read_bytes()

    # hand in, from each learner's server (its environment: its own hub token)
    receipts = {}

    def submit(name: str) -> dict:
        done = hub.run_as_server(servers[name], "submit", "ex00")
        assert done.returncode == 0, done.stderr
        digest = re.search(r"sha256 ([0-9a-f]{64})", done.stdout).group(1)
        data = (servers[name].home / "workspace" / exercise_file).read_bytes()
        assert digest == hashlib.sha256(data).hexdigest()
        assert f"from {name} at" in done.stdout
        receipts.setdefault(name, []).append(digest)
        return done

    submit("alice")
    bob_copy = servers["bob"].home / "workspace" / exercise_file
    stub = bob_copy.read_bytes()
    bob_copy.write_bytes((ROOT / "solutions" / exercise_file).read_bytes())
    submit("bob")
    bob_copy.write_bytes(stub)
    submit("bob")  # the second hand-in is the one that counts
    deadline = datetime.now(timezone.utc).isoformat()
    done = run_mmcourse(instructor_env(hub), tmp_path, "deadline", "ex00", deadline)
    assert done.returncode == 0, done.stderr
    dave_copy = servers["dave"].home / "workspace" / exercise_file
    dave_copy.write_bytes((ROOT / "solutions" / exercise_file).read_bytes())
    late = submit("dave")
    assert "LATE" in late.stdout

    # collect, grade with the existing sandboxed grader, release
    collected, results = tmp_path / "collected", tmp_path / "results"
    done = run_mmcourse(instructor_env(hub), tmp_path, "collect", "ex00", str(collected))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((collected / "manifest.json").read_text())
    assert {e["user"]: e["sha256"] for e in manifest["submissions"]} == {
        "alice": receipts["alice"][0],
        "bob": receipts["bob"][1],
    }
    assert [r["user"] for r in manifest["late_only"]] == ["dave"]
    assert (collected / "bob" / "ex00.ipynb").read_bytes() == stub
    done = run_mmcourse(
        instructor_env(hub),
        tmp_path,
        "grade",
        str(collected),
        "--out",
        str(results),
        "--hidden",
        "2",
    )
    assert done.returncode == 0, done.stderr
    done = run_mmcourse(
        instructor_env(hub), tmp_path, "return-feedback", "ex00", str(collected), str(results)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with open(results / "gradebook-ex00.csv", newline="") as handle:
        book = {row["user"]: row for row in csv.DictReader(handle)}
    assert set(book) == {"alice", "bob"}
    assert float(book["alice"]["total"]) == float(book["alice"]["max"]) > 0
    assert float(book["bob"]["total"]) == 0

    # each learner fetches their own feedback, and only theirs
    for name, expect_full in (("alice", True), ("bob", False)):
        done = hub.run_as_server(servers[name], "feedback", "ex00")
        assert done.returncode == 0, done.stderr
        record = json.loads((servers[name].home / "workspace" / "ex00_feedback.json").read_text())
        assert record["user"] == name and record["feedback"]["user"] == name
        assert record["feedback"]["sha256"] == receipts[name][-1]
        result = record["feedback"]["result"]
        assert (result["total"] == result["max_total"]) is expect_full
        text = (servers[name].home / "workspace" / "ex00_feedback.md").read_text()
        assert (
            text
            == f"<!-- feedback version 1, released {record['released_at']} -->\n"
            + (record["feedback"]["feedback_md"])
        )
        assert "ex00" in text
    done = hub.run_as_server(servers["dave"], "feedback", "ex00")
    assert done.returncode == 2 and "no feedback" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (servers["dave"].home / "workspace" / "ex00_feedback.json").exists()


# --- access control: each case names who calls what, and the exact answer


def submit_as(hub, name: str, text: str = "x = 1", exercise: str = "ex03", **kwargs):
    return hub.exchange_call(
        "POST", f"api/submissions/{exercise}", hub.tokens[name], data=notebook(text), **kwargs
    )


def assert_json_error(response, status: int, words: str = "") -> dict:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and "Traceback" not in response.text
    assert words.lower() in body["error"].lower()
    return body


def test_unauthenticated_and_unknown_tokens_get_401(hub):
    for method, path in [
        ("GET", "api/whoami"),
        ("POST", "api/submissions/ex03"),
        ("GET", "api/submissions"),
        ("GET", "api/collect/ex03"),
        ("GET", "api/feedback/ex03"),
    ]:
        assert_json_error(hub.exchange_call(method, path, data=b"{}"), 401, "not logged in")
        assert_json_error(hub.exchange_call(method, path, "not-a-token", data=b"{}"), 401)


def test_a_hub_user_outside_the_course_and_a_service_get_403(hub):
    # eve's token has no access:services!service=exchange (she is in neither group)
    assert_json_error(hub.exchange_call("GET", "api/whoami", hub.tokens["eve"]), 403)
    assert_json_error(submit_as(hub, "eve"), 403)
    # the harness is a service in the admin role: it may reach the exchange, but is nobody
    assert_json_error(hub.exchange_call("GET", "api/whoami", hub.admin_token), 403, "services")


def test_who_am_i_comes_from_the_hub(hub):
    assert hub.exchange_call("GET", "api/whoami", hub.tokens["alice"]).json() == {
        "user": "alice",
        "instructor": False,
    }
    assert hub.exchange_call("GET", "api/whoami", hub.tokens["carol"]).json()["instructor"]


def test_a_learner_cannot_submit_as_another(hub):
    forged = notebook("# user: bob")
    response = hub.exchange_call(
        "POST",
        "api/submissions/ex03?user=bob",
        hub.tokens["alice"],
        data=forged,
        headers={"X-Forwarded-User": "bob", "X-Remote-User": "bob"},
    )
    assert response.status_code == 201 and response.json()["user"] == "alice"
    bobs = hub.exchange_call("GET", "api/submissions", hub.tokens["bob"]).json()
    assert response.json()["id"] not in {r["id"] for r in bobs}


def test_a_learner_lists_and_reads_only_their_own(hub):
    bobs = submit_as(hub, "bob", "secret = 'bob'").json()
    alices = submit_as(hub, "alice", "mine = 1").json()
    listed = hub.exchange_call("GET", "api/submissions", hub.tokens["alice"]).json()
    assert listed and {r["user"] for r in listed} == {"alice"}
    assert alices["id"] in {r["id"] for r in listed}
    assert_json_error(
        hub.exchange_call("GET", "api/submissions?user=bob", hub.tokens["alice"]), 403, "own"
    )
    stolen = hub.exchange_call("GET", f"api/submissions/{bobs['id']}", hub.tokens["alice"])
    assert_json_error(stolen, 404)
    assert b"secret" not in stolen.content
    own = hub.exchange_call("GET", f"api/submissions/{bobs['id']}", hub.tokens["bob"])
    assert own.status_code == 200 and own.content == notebook("secret = 'bob'")
    assert own.headers["X-Content-SHA256"] == hashlib.sha256(own.content).hexdigest()
    # the instructor reads anyone's and lists everyone's
    read = hub.exchange_call("GET", f"api/submissions/{bobs['id']}", hub.tokens["carol"])
    assert read.content == own.content
    everyone = hub.exchange_call("GET", "api/submissions", hub.tokens["carol"]).json()
    assert {"alice", "bob"} <= {r["user"] for r in everyone}


def test_only_instructors_collect_set_deadlines_and_release(hub):
    submit_as(hub, "alice")
    learner = hub.tokens["alice"]
    assert_json_error(hub.exchange_call("GET", "api/collect/ex03", learner), 403, "instructors")
    assert_json_error(
        hub.exchange_call("PUT", "api/deadlines/ex03", learner, json={"deadline": None}), 403
    )
    assert_json_error(
        hub.exchange_call("PUT", "api/feedback/ex03/alice", learner, json={"total": 99}), 403
    )
    collected = hub.exchange_call("GET", "api/collect/ex03", hub.tokens["carol"])
    assert collected.status_code == 200 and "alice" in {
        s["user"] for s in collected.json()["submissions"]
    }


def test_a_learner_fetches_only_their_own_feedback(hub):
    submit_as(hub, "bob")
    submit_as(hub, "dave")
    released = hub.exchange_call(
        "PUT", "api/feedback/ex03/bob", hub.tokens["carol"], json={"for": "bob"}
    )
    assert released.status_code == 201, released.text
    assert hub.exchange_call("GET", "api/feedback/ex03", hub.tokens["bob"]).json()["feedback"] == {
        "for": "bob"
    }
    assert_json_error(hub.exchange_call("GET", "api/feedback/ex03", hub.tokens["dave"]), 404)
    # no route reads feedback by user name
    assert_json_error(hub.exchange_call("GET", "api/feedback/ex03/bob", hub.tokens["dave"]), 405)
    # feedback for someone who handed nothing in is refused, naming the problem
    assert_json_error(
        hub.exchange_call("PUT", "api/feedback/ex03/nobody", hub.tokens["carol"], json={}),
        404,
        "handed in nothing",
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    [
        ("POST", "api/submissions/ex99", notebook("x"), 404, "no exercise ex99"),
        ("POST", "api/submissions/EX03", notebook("x"), 400, "not an exercise id"),
        ("POST", "api/submissions/ex03", b"x" * (LIMIT + 1), 413, "limit"),
        ("POST", "api/submissions/ex03", b"print('hello')", 400, "not a notebook"),
        ("POST", "api/submissions/ex03", b'{"nbformat": 3}', 400, "nbformat 4"),
        ("PUT", "api/deadlines/ex03", b"{not json", 400, "must be JSON"),
        ("PUT", "api/deadlines/ex03", b'{"deadline": "tomorrow"}', 400, "ISO-8601"),
        ("PUT", "api/deadlines/ex03", b'{"deadline": "2026-12-03T12:00"}', 400, "time zone"),
        ("PUT", "api/deadlines/ex03", b'{"when": 1}', 400, "deadline"),
        ("GET", "api/nothing-here", None, 404, "no such exchange route"),
        ("DELETE", "api/submissions", None, 405, ""),
    ],
)
def test_bad_requests_get_a_clear_json_4xx(hub, method, path, body, status, words):
    response = hub.exchange_call(method, path, hub.tokens["carol"], data=body)
    assert_json_error(response, status, words)


def test_a_browser_logs_in_through_the_hub_and_sees_only_its_own_hand_ins(hub):
    """OAuth: the service page sends a browser to the hub's login and back."""
    submit_as(hub, "alice", "browser = 1")
    submit_as(hub, "bob", "browser = 2")
    browser = requests.Session()
    assert hub.exchange_call("GET", "").status_code == 302  # not logged in: to the hub's login
    login = browser.get(f"{hub.url}/hub/login", timeout=30)
    found = re.search(
        r'name="_xsrf"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="_xsrf"', login.text
    )
    xsrf = found.group(1) or found.group(2)
    logged = browser.post(
        f"{hub.url}/hub/login?next=/services/exchange/",
        data={"username": "alice", "password": "any", "_xsrf": xsrf},
        timeout=30,
    )
    assert logged.status_code == 200, logged.text[:500]
    assert logged.url.rstrip("/").endswith("/services/exchange")
    assert "Hand-ins of alice" in logged.text and "bob" not in logged.text
    # the same browser's cookie cannot hand in without the xsrf token (no cross-site posts)
    forged = browser.post(f"{hub.exchange_url}api/submissions/ex03", data=notebook("csrf"))
    assert forged.status_code in (401, 403)
