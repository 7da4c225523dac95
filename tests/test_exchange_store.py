"""The exchange's storage without a hub: immutable history, exact bytes, limits, deadlines,
collection and feedback versions."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from mmcourse.exchange.instructor import folder_for
from mmcourse.exchange.store import StoreError, SubmissionStore, parse_deadline

NOON = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)


def notebook(text: str = "x = 1") -> bytes:
    cell = {
        "cell_type": "code",
        "source": text,
        "metadata": {},
        "outputs": [],
        "execution_count": None,
    }
    return json.dumps(
        {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [cell]}
    ).encode()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock():
    return Clock(NOON - timedelta(hours=1))


@pytest.fixture
def store(tmp_path, clock):
    found = SubmissionStore(tmp_path / "exchange", {"ex00", "ex03"}, max_bytes=2000, clock=clock)
    yield found
    found.close()


def test_the_exact_bytes_come_back_with_their_sha256(store):
    data = notebook("print('héllo')") + b"\n  "  # trailing bytes are kept as they are
    receipt = store.submit("alice", "ex03", data)
    assert receipt.sha256 == hashlib.sha256(data).hexdigest()
    assert receipt.size == len(data) and receipt.user == "alice" and not receipt.late
    assert store.content(store.receipt(receipt.id)) == data
    assert (store.root / "blobs" / receipt.sha256).read_bytes() == data


def test_history_is_immutable_even_through_sql(store):
    first = store.submit("alice", "ex03", notebook("a = 1"))
    second = store.submit("alice", "ex03", notebook("a = 2"))
    assert [r.id for r in store.submissions(user="alice")] == [first.id, second.id]
    store.set_deadline("ex03", "2026-12-03T12:00Z", by="carol")
    store.release_feedback("ex03", "alice", b"{}", by="carol")
    for statement in (
        "UPDATE submissions SET user = 'bob'",
        "DELETE FROM submissions",
        "UPDATE deadlines SET deadline = NULL",
        "DELETE FROM feedback",
    ):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            store.db.execute(statement)
    assert len(store.submissions()) == 2 and store.deadline("ex03") is not None
    assert store.feedback("ex03", "alice") is not None


def test_a_second_store_on_the_folder_sees_the_same_history(tmp_path, store):
    receipt = store.submit("alice", "ex00", notebook())
    again = SubmissionStore(store.root, {"ex00", "ex03"})
    assert again.receipt(receipt.id) == receipt
    assert (store.root.stat().st_mode & 0o777) == 0o700  # private to the service's user
    again.close()


def test_each_learner_lists_only_what_they_ask_for(store):
    store.submit("alice", "ex00", notebook())
    store.submit("bob", "ex00", notebook("b = 1"))
    store.submit("alice", "ex03", notebook())
    assert {r.user for r in store.submissions(user="alice")} == {"alice"}
    assert [r.exercise for r in store.submissions(user="alice", exercise="ex03")] == ["ex03"]
    assert len(store.submissions(exercise="ex00")) == 2


def test_size_limit(store):
    big = notebook("x" * 3000)
    with pytest.raises(StoreError, match="limit is 2000") as refused:
        store.submit("alice", "ex03", big)
    assert refused.value.status == 413
    assert store.submissions() == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "nbformat 4"),
        (json.dumps({"nbformat": 3, "cells": []}).encode(), "nbformat 4"),
        (json.dumps({"nbformat": 4, "cells": "no"}).encode(), "no list of cells"),
    ],
)
def test_what_is_not_a_notebook_is_refused_clearly(store, data, reason):
    with pytest.raises(StoreError, match=reason) as refused:
        store.submit("alice", "ex03", data)
    assert refused.value.status == 400


@pytest.mark.parametrize(
    ("exercise", "status"), [("ex99", 404), ("../etc", 400), ("ex3", 400), ("", 400), ("EX03", 400)]
)
def test_bad_exercise_names(store, exercise, status):
    with pytest.raises(StoreError) as refused:
        store.submit("alice", exercise, notebook())
    assert refused.value.status == status


def test_a_deadline_marks_late_work_and_collect_takes_the_latest_on_time(store, clock):
    store.set_deadline("ex03", "2026-12-03T12:00Z", by="carol")
    assert store.deadline("ex03") == "2026-12-03T12:00:00.000000+00:00"
    early = store.submit("alice", "ex03", notebook("a = 1"))
    clock.now = NOON - timedelta(minutes=1)
    on_time = store.submit("alice", "ex03", notebook("a = 2"))
    store.submit("bob", "ex03", notebook("b = 1"))
    clock.now = NOON + timedelta(seconds=1)
    late = store.submit("alice", "ex03", notebook("a = 3"))
    only_late = store.submit("dave", "ex03", notebook("d = 1"))
    assert not early.late and not on_time.late and late.late and only_late.late
    assert late.deadline == store.deadline("ex03")
    collected, late_only = store.latest_on_time("ex03")
    assert [(r.user, r.id) for r in collected] == [("alice", on_time.id), ("bob", collected[1].id)]
    assert [r.user for r in late_only] == ["dave"]
    # extending the deadline counts work received before the new one as on time
    store.set_deadline("ex03", "2026-12-03T13:00+00:00", by="carol")
    collected, late_only = store.latest_on_time("ex03")
    assert {r.user: r.id for r in collected}["alice"] == late.id and late_only == []
    store.set_deadline("ex03", None, by="carol")
    assert store.deadline("ex03") is None


@pytest.mark.parametrize("text", ["tomorrow", "2026-12-03T12:00", "2026-13-03T12:00Z", "12"])
def test_bad_deadlines_are_refused_with_an_example(text):
    with pytest.raises(StoreError, match="2026-12-03T12:00Z") as refused:
        parse_deadline(text)
    assert refused.value.status == 400


def test_feedback_versions_and_only_for_who_handed_in(store):
    store.submit("alice", "ex03", notebook())
    assert store.feedback("ex03", "alice") is None
    first = store.release_feedback("ex03", "alice", b'{"total": 1}', by="carol")
    second = store.release_feedback("ex03", "alice", b'{"total": 2}', by="carol")
    assert (first.version, second.version) == (1, 2)
    latest = store.feedback("ex03", "alice")
    assert latest.content == b'{"total": 2}' and latest.released_by == "carol"
    assert store.feedback("ex03", "bob") is None
    with pytest.raises(StoreError, match="handed in nothing") as refused:
        store.release_feedback("ex03", "bob", b"{}", by="carol")
    assert refused.value.status == 404


def test_damaged_bytes_on_disk_are_detected(store):
    receipt = store.submit("alice", "ex03", notebook())
    (store.root / "blobs" / receipt.sha256).write_bytes(notebook("tampered"))
    with pytest.raises(StoreError, match="damaged"):
        store.content(receipt)


def test_collected_folders_are_the_hub_names_and_never_collide():
    assert folder_for("alice") == "alice" and folder_for("a.b-c_d") == "a.b-c_d"
    odd = [folder_for(name) for name in ("a@b.org", "a_b.org", "a b", "../x", "-x", "_x")]
    assert len(set(odd)) == len(odd)
    assert all("/" not in name and not name.startswith((".", "-", "_")) for name in odd)
