"""Run untrusted learner code in a separate, limited process, and move plain data in and out without
pickle.

The grader (issue: graded submissions) builds on this; nothing here judges an answer. Two parts:

- **plain data across a process boundary**: `encode(value) -> bytes` and `decode(bytes)` for str,
  int, float, bool, None, lists, dicts with str keys and numeric NumPy arrays. The bytes are an
  `.npz` archive read with `allow_pickle=False`; its JSON skeleton is one uint8 array. Depth, size
  and the archive's unpacked size are bounded before anything is loaded, so a hostile child cannot
  make the parent run code or exhaust memory.
- **`run(job, limits)`**: `python -I -m mmcourse.grading.sandbox_child` inside a bubblewrap sandbox
  that shows the child no secret of the system and lets it fill nothing without a bound:

  - *what it sees*: a read-only view of /usr, the interpreter's prefix, its site-packages and the
    `mmcourse` package only (not the course's `solutions/`, not other submissions, no /home, no
    /root, not the grading machine's /etc: a synthetic one with a passwd naming the child and the
    loader's cache), its own /proc (its own PID namespace), a minimal /dev, no network, and an empty
    environment (bubblewrap itself is started with a bare PATH, so not even its /proc/1/environ
    holds the grader's variables);
  - *who it is*: never root. When the grader runs as root the sandbox is set up with real
    privileges and the child then drops to an unprivileged uid of its own (one per concurrent run,
    so one run's processes never count against another's limit) with `setpriv` (util-linux): no
    capabilities, no_new_privs, no supplementary groups; otherwise a user namespace maps the grading
    user to uid 65534 inside;
  - *what it may fill*: `/` and `/dev` are read-only; the only writable places are a private /tmp
    and the working dir /work, each a tmpfs of at most `Limits.disk_mb`; rlimits bound CPU time,
    address space, processes (threads included), open files and file size; the parent enforces wall
    time and caps the output and the result it keeps.

  The job goes in on stdin; the result comes back on an inherited pipe. Without bubblewrap, `run`
  refuses unless `unsafe=True`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MAX_DEPTH",
    "NOBODY",
    "PACKAGE_DIR",
    "SANDBOX_UID_BASE",
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
#: the child's uid and gid inside the sandbox when the grader is not root (a user namespace maps the
#: grading user to it; the grading user's own files stay out of the view)
NOBODY = 65534
#: when the grader is root, each concurrent run's child gets its own uid and gid from here up: not
#: root, owning no file of the system, and its processes counted apart from every other run's
SANDBOX_UID_BASE = 1_000_000_000


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
    disk_mb: int = 64  # size of each of its two writable places, /tmp and /work (tmpfs: memory)
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
    """The `bwrap` executable, if it is installed and can isolate here the way `run` will use it.

    As root, that means setting up the sandbox with real privileges and dropping to an unprivileged
    uid inside (which needs `setpriv`); otherwise, an unprivileged user namespace.
    """
    path = shutil.which("bwrap")
    if not path:
        return None
    if _as_root():
        setpriv = _setpriv()
        if setpriv is None:
            return None
        probe = [
            path,
            *_namespaces(root=True),
            "--ro-bind",
            "/",
            "/",
            "--die-with-parent",
            *_drop_to(setpriv, SANDBOX_UID_BASE),
            "true",
        ]
    else:
        probe = [path, *_namespaces(root=False), "--ro-bind", "/", "/", "--die-with-parent", "true"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    return path if done.returncode == 0 else None


def _as_root() -> bool:
    return os.geteuid() == 0


def _setpriv() -> str | None:
    """util-linux's `setpriv`, which the child runs through to drop root; under /usr, so the child
    sees it."""
    found = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
    return str(Path(found).resolve()) if found else None


def _namespaces(root: bool) -> list[str]:
    """How the sandbox is isolated. As root: new PID, network, IPC, UTS and cgroup namespaces in
    the host's user namespace, so the child can drop to a uid the host's files do not belong to
    (inside a user namespace a root grader's child would still own root's files), keeping only the
    capabilities `setpriv` needs for that. Otherwise: everything unshared, the grading user mapped
    to `NOBODY`."""
    if root:
        keep = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")
        return [
            "--unshare-pid",
            "--unshare-net",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--cap-drop",
            "ALL",
            *itertools.chain.from_iterable(("--cap-add", cap) for cap in keep),
        ]
    return [
        "--unshare-all",
        "--unshare-user",
        "--uid",
        str(NOBODY),
        "--gid",
        str(NOBODY),
        "--cap-drop",
        "ALL",
    ]


def _drop_to(setpriv: str, uid: int) -> list[str]:
    """The child's command prefix that leaves root for good before any of its own code runs."""
    return [
        setpriv,
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ]


@functools.cache
def _sized_tmpfs(bwrap: str) -> bool:
    """Whether this bubblewrap can bound a tmpfs (`--size`, bubblewrap 0.7 and later)."""
    try:
        done = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--size" in done.stdout + done.stderr


_uid_lock = threading.Lock()
_uid_slots: set[int] = set()


@contextlib.contextmanager
def _run_uid():
    """A uid for one run's child (as root): this process's block of `SANDBOX_UID_BASE`, one slot per
    run at a time, so runs in parallel (`--workers`) never share a uid and so a process limit."""
    with _uid_lock:
        slot = next(i for i in itertools.count() if i not in _uid_slots)
        _uid_slots.add(slot)
    try:
        yield SANDBOX_UID_BASE + (os.getpid() % 1_000_000) * 1000 + slot % 1000
    finally:
        with _uid_lock:
            _uid_slots.discard(slot)


def _read_only_paths() -> list[str]:
    """What the child may see of the host: the system's /usr, the interpreter, site-packages,
    mmcourse (never /etc: the child gets a synthetic one)."""
    import site
    import sysconfig

    paths = {
        "/usr",
        sys.prefix,
        sys.base_prefix,
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["platlib"],
        str(PACKAGE_DIR),
        *site.getsitepackages(),
    }
    real = {str(Path(p).resolve()) for p in paths} | paths
    return sorted(p for p in real if Path(p).exists() and p != "/")


def _ancestors(paths: Sequence[str], exclude: Sequence[str] = ()) -> list[str]:
    """The folders above `paths` that are neither shown themselves nor inside a shown path, top
    first."""

    def inside(folder: str) -> bool:
        return any(folder == p or folder.startswith(p.rstrip("/") + "/") for p in paths)

    above = {
        str(parent)
        for path in paths
        for parent in Path(path).parents
        if str(parent) != "/" and str(parent) not in exclude and not inside(str(parent))
    }
    return sorted(above, key=lambda folder: (folder.count("/"), folder))


#: Files of the host's /etc the child gets (public, and what the loader and Python read); the rest
#: of its /etc is written for it (`_etc_files`).
ETC_FROM_HOST = ("ld.so.cache", "localtime")


def _etc_files(uid: int) -> dict[str, str]:
    """The child's synthetic /etc: who it is, and a loopback-only hosts file."""
    return {
        "passwd": f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
        f"learner:x:{uid}:{uid}:learner:/work:/usr/sbin/nologin\n",
        "group": f"root:x:0:\nlearner:x:{uid}:\n",
        "hosts": "127.0.0.1 localhost\n::1 localhost\n",
        "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
    }


def _command(
    python: str,
    bwrap: str | None,
    limits: Limits,
    uid: int | None = None,
    etc_fds: dict[str, int] | None = None,
    read_only: Sequence[str] = (),
) -> list[str]:
    """The child's command line. `uid`: the run's own uid when the grader is root (None: a user
    namespace); `etc_fds`: file name -> a readable descriptor holding the synthetic /etc file;
    `read_only`: more host paths to show read-only."""
    child = [python, "-I", "-m", "mmcourse.grading.sandbox_child"]
    if bwrap is None:
        return child
    command = [
        bwrap,
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        *_namespaces(root=uid is not None),
    ]
    sized = _sized_tmpfs(bwrap)

    def private(dest: str) -> list[str]:
        # writable by the child, at most disk_mb: a tmpfs is memory, and unbounded it is half of it
        bound = ["--size", str(limits.disk_mb << 20), "--perms", "1777"] if sized else []
        return [*bound, "--tmpfs", dest]

    # the private /tmp and /work first: mounts apply in order, and a course cloned under /tmp or
    # /work must stay visible on top of them
    command += ["--proc", "/proc", "--dev", "/dev", *private("/tmp"), *private("/work")]
    shown = [*_read_only_paths(), *read_only]
    # the folders above what is shown, made traversable (bubblewrap would make them 0700, which an
    # unprivileged child cannot pass): only the folders themselves, nothing in them
    for folder in _ancestors(shown, exclude=("/tmp", "/work")):
        command += ["--perms", "0755", "--dir", folder]
    for path in shown:
        command += ["--ro-bind", path, path]
    command += ["--perms", "0755", "--dir", "/etc"]
    for name in ETC_FROM_HOST:
        if Path("/etc", name).is_file():
            command += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    for name, fd in (etc_fds or {}).items():
        command += ["--perms", "0644", "--file", str(fd), f"/etc/{name}"]
    for link in ("lib", "lib64", "bin", "sbin"):  # merged /usr (Debian): /lib -> usr/lib, ...
        if Path("/", link).is_symlink():
            command += ["--symlink", os.readlink(Path("/", link)), f"/{link}"]
    command += ["--chdir", "/work", "--remount-ro", "/", "--remount-ro", "/dev"]
    if not sized:  # an old bubblewrap cannot bound them: then nothing is writable at all
        command += ["--remount-ro", "/tmp", "--remount-ro", "/work"]
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
    if uid is not None:
        child = [*_drop_to(_setpriv() or "setpriv", uid), *child]
    return [*command, "--", *child]


def _limit(limits: Limits, own_uid: bool):
    """The rlimits, set before bubblewrap starts and inherited by everything in the sandbox. With a
    uid of its own (`own_uid`) the child's processes and threads are counted alone; otherwise
    RLIMIT_NPROC counts all of the grading user's processes, so the bound starts from those."""
    import resource

    def apply() -> None:
        processes = limits.processes
        if not own_uid:
            processes += sum(1 for p in Path("/proc").iterdir() if p.name.isdigit())
        for kind, value in (
            (resource.RLIMIT_CPU, limits.cpu_seconds),
            (resource.RLIMIT_AS, limits.memory_mb << 20),
            (resource.RLIMIT_NOFILE, limits.open_files),
            (resource.RLIMIT_FSIZE, limits.file_mb << 20),
            (resource.RLIMIT_NPROC, processes),
            (resource.RLIMIT_CORE, 0),
        ):
            resource.setrlimit(kind, (value, value))

    return apply


def _etc_descriptors(uid: int) -> dict[str, int]:
    """Each synthetic /etc file as the read end of a pipe that already holds it (bubblewrap copies
    it in); a few hundred bytes, far below a pipe's buffer."""
    fds = {}
    for name, text in _etc_files(uid).items():
        read, write = os.pipe()
        os.write(write, text.encode())
        os.close(write)
        fds[name] = read
    return fds


def run(
    job: Any,
    limits: Limits = Limits(),
    unsafe: bool = False,
    python: str | None = None,
    *,
    read_only: Sequence[str | os.PathLike] = (),
) -> Run:
    """Run `mmcourse.grading.sandbox_child` on `job` (plain data) in the sandbox; the child's result
    comes back decoded. `read_only`: more host paths the child may read (its own files only, as the
    unprivileged user it is)."""
    bwrap = bubblewrap()
    if bwrap is None and not unsafe:
        raise SandboxError(
            "bubblewrap (bwrap) is not available or cannot isolate here, so learner code cannot be "
            "isolated. Install it (Debian/Ubuntu: apt-get install bubblewrap; as root the sandbox "
            "also needs setpriv, from util-linux) or pass unsafe=True (--unsafe) knowingly."
        )
    if bwrap is not None and _as_root():
        with _run_uid() as uid:
            return _run(job, limits, python, bwrap, uid, read_only)
    return _run(job, limits, python, bwrap, None, read_only)


def _run(
    job: Any,
    limits: Limits,
    python: str | None,
    bwrap: str | None,
    uid: int | None,
    read_only: Sequence[str | os.PathLike],
) -> Run:
    result_read, result_write = os.pipe()
    payload = encode({"job": job, "result_fd": result_write, "threads": limits.threads})
    etc_fds = _etc_descriptors(NOBODY if uid is None else uid) if bwrap else {}
    start = time.perf_counter()
    try:
        process = subprocess.Popen(
            _command(
                python or sys.executable,
                bwrap,
                limits,
                uid,
                etc_fds,
                [str(Path(p).resolve()) for p in read_only],
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(result_write, *etc_fds.values()),
            preexec_fn=_limit(limits, own_uid=uid is not None),
            start_new_session=True,
            # bubblewrap's own environment is readable in the sandbox as /proc/1/environ: bare
            env={"PATH": "/usr/bin:/bin"}
            if bwrap
            else {
                "PATH": os.environ.get("PATH", ""),
                "OMP_NUM_THREADS": str(limits.threads),
                "HF_HUB_OFFLINE": "1",
                "MPLBACKEND": "Agg",
                "MMCOURSE_DEVICE": "cpu",
            },
        )
    except BaseException:
        os.close(result_read)
        raise
    finally:
        os.close(result_write)
        for fd in etc_fds.values():
            os.close(fd)
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
