"""The sandbox that grading builds on: plain data without pickle, and hostile code that cannot
escape its limits."""

import io
import socket
import threading
import zipfile

import numpy as np
import pytest

from mmcourse.grading import question_bank, sandbox
from mmcourse.grading.sandbox import Limits

FAST = Limits(wall_seconds=20, cpu_seconds=20, memory_mb=1024, output_bytes=20_000)


def test_plain_data_round_trips():
    value = {
        "a": [1, 2.5, "x", None, True],
        "arr": np.arange(6, dtype=np.float32).reshape(2, 3),
        "nested": {"b": [[]]},
        "nan": float("nan"),
        "bools": np.array([True, False]),
    }
    back = sandbox.decode(sandbox.encode(value))
    assert back["a"] == [1, 2.5, "x", None, True] and back["nested"] == {"b": [[]]}
    assert back["arr"].dtype == np.float32 and np.array_equal(back["arr"], value["arr"])
    assert np.isnan(back["nan"]) and back["bools"].dtype == bool


@pytest.mark.parametrize(
    "bad",
    [
        np.array([object()], dtype=object),
        {1: "int key"},
        object(),
        [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
    ],
)
def test_anything_else_is_refused(bad):
    with pytest.raises(TypeError):
        sandbox.encode(bad)


def test_decode_never_unpickles_and_checks_the_unpacked_size():
    pickled = io.BytesIO()
    np.savez(
        pickled,
        __json__=np.frombuffer(b'{"$array": "a0"}', dtype=np.uint8),
        a0=np.array([object()], dtype=object),
    )
    with pytest.raises(ValueError, match="pickled objects, which are never loaded"):
        sandbox.decode(pickled.getvalue())
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a0.npy", b"\0" * 5_000_000)  # compresses to a few kB
    with pytest.raises(ValueError, match="unpacks to"):
        sandbox.decode(bomb.getvalue(), max_bytes=1_000_000)
    for garbage in (b"", b"not a zip", b"PK\x03\x04broken"):
        with pytest.raises(ValueError):
            sandbox.decode(garbage)


def test_without_bubblewrap_it_refuses_unless_unsafe(monkeypatch):
    monkeypatch.setattr(sandbox, "bubblewrap", lambda: None)
    with pytest.raises(sandbox.SandboxError, match="apt-get install bubblewrap"):
        sandbox.run({"code": "result = 1"})
    done = sandbox.run({"code": "result = 41 + 1"}, FAST, unsafe=True)
    assert done.status == "ok" and done.result == {"result": 42} and not done.sandboxed


def run(code, limits=FAST):
    return sandbox.run({"code": code}, limits)


def test_a_plain_job_runs_with_a_clean_environment_and_no_course_files(bwrap):
    done = run(
        "import os, sys\nresult = [sorted(os.environ), os.getcwd(), os.path.exists("
        + repr(str(sandbox.PACKAGE_DIR.parent / "solutions"))
        + ")]"
    )
    assert done.status == "ok" and done.sandboxed
    names, cwd, solutions_visible = done.result["result"]
    assert cwd == "/work" and not solutions_visible
    assert not [n for n in names if "TOKEN" in n or "KEY" in n or n.startswith(("GITHUB", "AWS"))]


@pytest.mark.parametrize(
    "code, status",
    [
        ("while True: pass", "timeout"),
        # MemoryError kills the job before it returns a result
        ("x = bytearray(4 << 30)", "crashed"),
        ("import sys\nsys.exit(0)", "crashed"),
        ("import os\nos._exit(0)", "crashed"),
        ("import ctypes\nctypes.string_at(0)", "crashed"),
        ("while True: print('x' * 1000)", "output limit"),
    ],
)
def test_hostile_code_ends_with_the_right_status(bwrap, code, status):
    done = run(code, Limits(wall_seconds=8, cpu_seconds=20, memory_mb=1024, output_bytes=20_000))
    assert done.status == status, done
    assert done.seconds < 15


def test_a_segfault_is_named(bwrap):
    done = run("import ctypes\nctypes.string_at(0)")
    assert "SIGSEGV" in done.reason


def test_a_fork_bomb_is_contained(bwrap):
    done = run(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        Limits(wall_seconds=5, processes=32),
    )
    assert done.status in ("timeout", "crashed")
    # the machine is not exhausted
    assert run("result = 'still fine'").result == {"result": "still fine"}


def test_no_network_and_no_writes_outside_its_own_folder(bwrap, tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(3)
    port = listener.getsockname()[1]
    arrived = []
    threading.Thread(target=lambda: arrived.append(_accept(listener)), daemon=True).start()
    target = tmp_path / "grades.csv"
    code = f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(b"stolen")
    connected = True
except OSError as error:
    connected = type(error).__name__
try:
    open({str(target)!r}, "w").write("forged")
    wrote = True
except OSError as error:
    wrote = type(error).__name__
result = [connected, wrote]
"""
    done = run(code)
    assert done.status == "ok"
    connected, wrote = done.result["result"]
    assert connected != True and wrote != True  # noqa: E712 - an error name, not True
    assert not target.exists()
    listener.close()
    assert arrived in ([], [None])


def _accept(listener):
    try:
        connection, _ = listener.accept()
        return connection.recv(100)
    except OSError:
        return None


def test_a_graded_question_runs_in_the_sandbox_with_its_reference_stubbed(bwrap):

    from test_grading import solution_cells

    question = question_bank.get("ex03_zero_shot")
    setup, answer = solution_cells("ex03_zero_shot")
    cases = [{k: v for k, v in case.items()} for case in question.visible]
    job = {
        "prepare": question.prepare_name,
        "setup": setup,
        "answer": answer,
        "name": question.name,
        "cases": cases,
        "stub": ["mmcourse.contrastive.zero_shot_predict"],
    }
    done = sandbox.run(job, FAST)
    assert done.status == "ok", done
    for case, output in zip(cases, done.result["outputs"]):
        assert question.compare(question.expected(case), output["value"]) is None
    cheat = answer.replace(
        "similarity.argmax(dim=1)",
        "__import__('mmcourse').contrastive.zero_shot_predict(image_embeddings, class_embeddings)",
    )
    done = sandbox.run({**job, "answer": cheat}, FAST)
    assert all("reference implementation" in output["error"] for output in done.result["outputs"])
