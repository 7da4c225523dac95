"""Run untrusted learner code in a separate, limited process, and move plain data in and out without
pickle.

The grader (issue: graded submissions) builds on this; nothing here judges an answer. Two parts:

- **plain data across a process boundary**: `encode(value) -> bytes` and `decode(bytes)` for str,
  int, float, bool, None, lists, dicts with str keys and numeric NumPy arrays. The bytes are an
  `.npz` archive read with `allow_pickle=False`; its JSON skeleton is one uint8 array. Depth, size
  and the archive's unpacked size are bounded before anything is loaded, so a hostile child cannot
  make the parent run code or exhaust memory.
- **`run(job, limits)`**: `python -I -m mmcourse.grading.sandbox_child` inside a bubblewrap sandbox:
  a read-only view of the interpreter, its site-packages and the `mmcourse` package only (not the
  course's `solutions/`, not other submissions), an empty private /tmp and work dir, no network, its
  own PID namespace, a clean environment, and rlimits on CPU time, memory, processes, open files and
  file size; the parent enforces wall time and caps the output it keeps. The job goes in on stdin;
  the result comes back on an inherited pipe. Without bubblewrap, `run` refuses unless
  `unsafe=True`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MAX_DEPTH",
    "PACKAGE_DIR",
    "SKELETON",
    "Limits",
    "Run",
    "SandboxError",
    "bubblewrap",
    "decode",
    "encode",
    "run",
]

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the whole mmcourse package, read-only
SKELETON = "__json__"
MAX_DEPTH = 32


class SandboxError(RuntimeError):
    """The sandbox cannot run here (no bubblewrap) or was given something it cannot carry."""


# --- plain data
# -------------------------------------------------------------------------------------------


def encode(value: Any, max_bytes: int = 200_000_000) -> bytes:
    """Plain data -> bytes (an .npz: the JSON skeleton plus one entry per array). Raises TypeError
    otherwise."""
    arrays: dict[str, np.ndarray] = {}

    def walk(v: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise TypeError(f"nested deeper than {MAX_DEPTH} levels")
        if v is None or type(v) in (bool, int, float, str):
            return v
        if type(v) is np.ndarray:
            if v.dtype.kind not in "biuf":
                raise TypeError(f"arrays must hold numbers or booleans, not {v.dtype}")
            name = f"a{len(arrays)}"
            arrays[name] = np.ascontiguousarray(v)
            return {"$array": name}
        if type(v) in (list, tuple):
            return [walk(x, depth + 1) for x in v]
        if type(v) is dict:
            if not all(type(k) is str for k in v):
                raise TypeError("dict keys must be str")
            return {"$dict": {k: walk(x, depth + 1) for k, x in v.items()}}
        raise TypeError(
            f"{type(v).__name__} is not plain data (str, numbers, bool, None, lists, dicts, arrays)"
        )

    skeleton = json.dumps(walk(value, 0)).encode()
    buffer = io.BytesIO()
    np.savez(buffer, **{SKELETON: np.frombuffer(skeleton, dtype=np.uint8)}, **arrays)
    data = buffer.getvalue()
    if len(data) > max_bytes:
        raise TypeError(f"{len(data)} bytes of data, more than the limit of {max_bytes}")
    return data


def decode(data: bytes, max_bytes: int = 200_000_000) -> Any:
    """bytes from `encode` -> plain data. Raises ValueError on anything else (never unpickles, never
    over-allocates)."""
    if len(data) > max_bytes:
        raise ValueError(f"{len(data)} bytes, more than the limit of {max_bytes}")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
        if unpacked > max_bytes:
            raise ValueError(
                f"the archive unpacks to {unpacked} bytes, more than the limit of {max_bytes}"
            )
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            files = {name: npz[name] for name in npz.files}
        skeleton = json.loads(files.pop(SKELETON).tobytes())
    except ValueError as error:
        # numpy's own words suggest loading it "unsafely": that never happens here
        if "pickle" in str(error):
            raise ValueError("the data holds pickled objects, which are never loaded") from None
        raise
    except Exception as error:  # a malformed archive of any kind is one clear error
        raise ValueError(f"not an encoded result ({type(error).__name__}: {error})") from None

    def walk(v: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        if v is None or type(v) in (bool, int, float, str):
            return v
        if type(v) is list:
            return [walk(x, depth + 1) for x in v]
        if type(v) is dict and set(v) == {"$array"} and v["$array"] in files:
            array = files[v["$array"]]
            if array.dtype.kind not in "biuf":
                raise ValueError(f"an array of {array.dtype}")
            return array
        if type(v) is dict and set(v) == {"$dict"} and type(v["$dict"]) is dict:
            return {k: walk(x, depth + 1) for k, x in v["$dict"].items()}
        raise ValueError(f"unexpected element {str(v)[:80]!r}")

    return walk(skeleton, 0)


# --- the sandbox
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """What one sandboxed run may use. Generous by default: correct but slow model code must not
    time out."""

    wall_seconds: float = 120.0
    cpu_seconds: int = 240
    memory_mb: int = 4096  # address space; torch alone maps about 1 GB
    processes: int = 64  # more than the user already runs
    open_files: int = 256
    file_mb: int = 64  # largest file the child may write (its /tmp is private and thrown away)
    output_bytes: int = 200_000  # stdout + stderr kept for feedback; more ends the run
    result_bytes: int = 100_000_000
    threads: int = 1


@dataclass(frozen=True)
class Run:
    """How a sandboxed run ended. `status`: "ok", "timeout", "crashed", "output limit" or "bad
    result"."""

    status: str
    result: Any = None
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    reason: str = ""
    sandboxed: bool = True


def bubblewrap() -> str | None:
    """The `bwrap` executable, if it is installed and can create namespaces here."""
    path = shutil.which("bwrap")
    if not path:
        return None
    done = subprocess.run(
        [path, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
        capture_output=True,
        timeout=30,
    )
    return path if done.returncode == 0 else None


def _read_only_paths() -> list[str]:
    """What the child may see: the system's /usr (and /etc for the loader), the interpreter,
    site-packages, mmcourse."""
    import site
    import sysconfig

    paths = {
        "/usr",
        "/etc",
        sys.prefix,
        sys.base_prefix,
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["platlib"],
        str(PACKAGE_DIR),
        *site.getsitepackages(),
    }
    real = {str(Path(p).resolve()) for p in paths} | paths
    return sorted(p for p in real if Path(p).exists())


def _command(python: str, bwrap: str | None, limits: Limits) -> list[str]:
    child = [python, "-I", "-m", "mmcourse.grading.sandbox_child"]
    if bwrap is None:
        return child
    command = [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--cap-drop",
        "ALL",
    ]
    # the private /tmp first: mounts apply in order, and a course cloned under /tmp must stay
    # visible on top of it
    command += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for path in _read_only_paths():
        command += ["--ro-bind", path, path]
    for link in ("lib", "lib64", "bin", "sbin"):  # merged /usr (Debian): /lib -> usr/lib, ...
        if Path("/", link).is_symlink():
            command += ["--symlink", os.readlink(Path("/", link)), f"/{link}"]
    command += ["--dir", "/work", "--chdir", "/work"]
    environment = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/work",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": str(limits.threads),
        "MMCOURSE_DEVICE": "cpu",
        "PYTHONHASHSEED": "0",
    }
    for key, value in environment.items():
        command += ["--setenv", key, value]
    return [*command, "--", *child]


def _limit(limits: Limits):
    import resource

    def apply() -> None:
        user_processes = sum(1 for p in Path("/proc").iterdir() if p.name.isdigit())
        for kind, value in (
            (resource.RLIMIT_CPU, limits.cpu_seconds),
            (resource.RLIMIT_AS, limits.memory_mb << 20),
            (resource.RLIMIT_NOFILE, limits.open_files),
            (resource.RLIMIT_FSIZE, limits.file_mb << 20),
            (resource.RLIMIT_NPROC, user_processes + limits.processes),
            (resource.RLIMIT_CORE, 0),
        ):
            resource.setrlimit(kind, (value, value))

    return apply


def run(
    job: Any, limits: Limits = Limits(), unsafe: bool = False, python: str | None = None
) -> Run:
    """Run `mmcourse.grading.sandbox_child` on `job` (plain data) in the sandbox; the child's result
    comes back decoded."""
    bwrap = bubblewrap()
    if bwrap is None and not unsafe:
        raise SandboxError(
            "bubblewrap (bwrap) is not available, so learner code cannot be isolated. Install it "
            "(Debian/Ubuntu: apt-get install bubblewrap) or pass unsafe=True (--unsafe) knowingly."
        )
    result_read, result_write = os.pipe()
    payload = encode({"job": job, "result_fd": result_write, "threads": limits.threads})
    start = time.perf_counter()
    process = subprocess.Popen(
        _command(python or sys.executable, bwrap, limits),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(result_write,),
        preexec_fn=_limit(limits),
        start_new_session=True,
        env=None
        if bwrap
        else {
            "PATH": os.environ.get("PATH", ""),
            "OMP_NUM_THREADS": str(limits.threads),
            "HF_HUB_OFFLINE": "1",
            "MPLBACKEND": "Agg",
            "MMCOURSE_DEVICE": "cpu",
        },
    )
    os.close(result_write)
    kept = {"stdout": bytearray(), "stderr": bytearray(), "result": bytearray()}
    flooded = threading.Event()

    def drain(stream, key: str, cap: int) -> None:
        total = 0
        # whatever has arrived, without waiting for a full block
        read = getattr(stream, "read1", stream.read)
        while chunk := read(65536):
            total += len(chunk)
            room = cap - len(kept[key])
            if room > 0:
                kept[key] += chunk[:room]
            if total > cap:
                flooded.set()
                _kill(process)
                break

    result_stream = os.fdopen(result_read, "rb", buffering=0)
    readers = [
        threading.Thread(
            target=drain, args=(process.stdout, "stdout", limits.output_bytes), daemon=True
        ),
        threading.Thread(
            target=drain, args=(process.stderr, "stderr", limits.output_bytes), daemon=True
        ),
        threading.Thread(
            target=drain, args=(result_stream, "result", limits.result_bytes), daemon=True
        ),
    ]
    for reader in readers:
        reader.start()
    try:
        process.stdin.write(payload)
        process.stdin.close()
    except BrokenPipeError:  # the child died before reading its job: its status says why
        pass
    timed_out = False
    try:
        process.wait(timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill(process)
        process.wait()
    for reader in readers:
        reader.join(timeout=5)
    result_stream.close()
    seconds = time.perf_counter() - start
    texts = {k: bytes(kept[k]).decode("utf-8", "replace") for k in ("stdout", "stderr")}
    common = dict(
        returncode=process.returncode, seconds=seconds, sandboxed=bwrap is not None, **texts
    )
    if timed_out:
        return Run("timeout", reason=f"still running after {limits.wall_seconds:.0f} s", **common)
    if flooded.is_set():
        return Run(
            "output limit",
            reason=f"wrote more than {limits.output_bytes} bytes of output",
            **common,
        )
    if not kept["result"]:
        last = texts["stderr"].strip().splitlines()[-1:]  # e.g. the exception that ended it
        return Run(
            "crashed",
            reason=_death(process.returncode) + (f" ({last[0][:200]})" if last else ""),
            **common,
        )
    try:
        result = decode(bytes(kept["result"]), limits.result_bytes)
    except ValueError as error:
        return Run("bad result", reason=str(error), **common)
    return Run("ok", result=result, **common)


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        # the whole session: bwrap and everything in its PID namespace
        os.killpg(process.pid, signal.SIGKILL)


def _death(returncode: int | None) -> str:
    # a signal: negative from Popen, or 128 + signal when bubblewrap's init reports its child's
    # death
    number = -returncode if returncode is not None and returncode < 0 else (returncode or 0) - 128
    if 0 < number < 65 and number in {s.value for s in signal.Signals}:
        name = signal.Signals(number).name
        why = {
            "SIGSEGV": "a segmentation fault",
            "SIGKILL": "killed (memory or CPU limit)",
            "SIGXCPU": "CPU time limit",
        }
        return (
            f"the process ended by {name} ({why.get(name, 'a signal')}) before it returned its "
            "result"
        )
    return f"the process exited with status {returncode} before it returned its result"
