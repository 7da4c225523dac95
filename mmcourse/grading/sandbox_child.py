"""The child side of `mmcourse.grading.sandbox.run`: read a job on stdin, run it, write plain data
to the result pipe.

A job is {"setup": code, "answer": code, "name": the learner's object, "prepare": "module:function"
(the question's `prepare`, a function of the installed package), "stub": dotted names of library
functions to replace by a stub that raises, "cases": plain-data cases}. The child runs the setup,
stubs the references, runs the answer cell, then calls the learner's object on each case (after
`prepare`) and returns {"outputs": [{"value": ...} or
{"error":
...}]}. It judges nothing and never sees a question definition: the parent compares.
A job {"code": str} simply runs that code and returns what it leaves in `result` (used by the
tests).
"""

from __future__ import annotations

import importlib
import io
import os
import sys

__all__ = ["main"]


def _stub(dotted: str) -> None:
    """Replace the library object `dotted` (a function, a class, or a method:
    "pkg.module.Class.method").

    A function re-exported by a package (`mmcourse.vlm.visual_qa` is
    `mmcourse.vlm.decoding.visual_qa`) is replaced under both names: in the module that defines it
    and in every package above that module.
    """
    parts = dotted.split(".")
    # the longest importable module prefix, then attributes
    for split in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:split]))
            break
        except ImportError:
            continue
    else:
        return
    for name in parts[split:-1]:
        owner = getattr(owner, name)
    original = getattr(owner, parts[-1], None)

    def stub(*args, **kwargs):
        raise RuntimeError(
            f"{dotted} is the reference implementation and cannot be used in a graded answer."
        )

    setattr(owner, parts[-1], stub)
    home = getattr(original, "__module__", None) or ""
    if not home.startswith("mmcourse") or isinstance(owner, type):
        return
    prefix = home.split(".")
    # the defining module and the packages that re-export it
    for depth in range(1, len(prefix) + 1):
        module = sys.modules.get(".".join(prefix[:depth]))
        for attribute, value in list(vars(module).items()) if module is not None else []:
            if value is original:
                setattr(module, attribute, stub)


def _resolve(name: str):
    module, _, qualname = name.partition(":")
    target = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _run(job: dict) -> dict:
    if "code" in job:
        namespace: dict = {}
        exec(compile(job["code"], "<job>", "exec"), namespace)
        return {"result": namespace.get("result")}
    from mmcourse.grading.judging import to_plain

    # before the learner's code runs, so it cannot be swapped by name
    prepare = _resolve(job["prepare"])
    namespace = {"__name__": "__main__"}
    try:
        exec(compile(job["setup"], "<setup>", "exec"), namespace)
    except BaseException as error:
        return {"setup_error": f"{type(error).__name__}: {error}"[:500]}
    for dotted in job.get("stub", []):
        _stub(dotted)
    try:
        exec(compile(job["answer"], "<answer>", "exec"), namespace)
    except BaseException as error:
        return {"answer_error": f"{type(error).__name__}: {error}"[:500]}
    learner = namespace.get(job["name"])
    outputs = []
    for case in job["cases"]:
        try:
            value = to_plain(learner(**prepare(case)))
            outputs.append({"value": value})
        except BaseException as error:
            outputs.append({"error": f"{type(error).__name__}: {error}"[:500]})
    return {"outputs": outputs}


def main() -> None:
    from mmcourse.grading.sandbox import decode, encode

    payload = decode(sys.stdin.buffer.read())
    result_fd = payload["result_fd"]
    try:
        import torch

        torch.set_num_threads(payload["threads"])
    except ImportError:
        pass
    result = _run(payload["job"])
    try:
        data = encode(result)
    except (TypeError, ValueError) as error:  # ValueError: an int too long for JSON
        outputs = result.get("outputs")
        if outputs is None:
            data = encode({"encode_error": str(error)[:300]})
        else:  # one unencodable output must not lose the others
            safe = []
            for item in outputs:
                try:
                    encode(item)
                    safe.append(item)
                except (TypeError, ValueError) as reason:
                    safe.append({"unplain": str(reason)[:300]})
            data = encode({"outputs": safe})
    with io.FileIO(result_fd, "wb", closefd=True) as pipe:
        pipe.write(data)
    sys.stdout.flush()
    os._exit(0)  # no atexit handlers of learner code run after the result is written


if __name__ == "__main__":
    main()
