"""`mmcourse doctor`: is this machine ready for the course? Versions, device, checkpoints,
notebooks.

Prints one line per check and exits non-zero with the reason and the fix when something is missing.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys
from dataclasses import dataclass

__all__ = ["OPTIONAL", "REQUIRED", "Finding", "main", "run"]

#: distribution -> the module to import; the course cannot run without these.
REQUIRED = {
    "torch": "torch",
    "transformers": "transformers",
    "tokenizers": "tokenizers",
    "safetensors": "safetensors",
    "numpy": "numpy",
    "pillow": "PIL",
    "matplotlib": "matplotlib",
    "tqdm": "tqdm",
    "ipywidgets": "ipywidgets",
    "ipyevents": "ipyevents",
    "jupyterlab": "jupyterlab",
    "ipykernel": "ipykernel",
    "nbformat": "nbformat",
    "scikit-image": "skimage",
}
OPTIONAL = {
    "pytest": "pytest",
    "nbval": "nbval",
    "hypothesis": "hypothesis",
    "playwright": "playwright",
}


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool
    detail: str


def _package(dist: str, module: str, required: bool) -> Finding:
    try:
        version = importlib.metadata.version(dist)
        importlib.import_module(module)
    except Exception as error:
        fix = "run `make lab` (or `python -m mmcourse lab`) to install the course environment"
        detail = (
            f"missing or broken ({type(error).__name__}: {error}); {fix}"
            if required
            else "not installed (tests only)"
        )
        return Finding(dist, not required, detail)
    return Finding(dist, True, version)


def _device() -> Finding:
    try:
        from ..utils import get_device

        device = get_device()
    except Exception as error:
        return Finding("device", False, f"{error}")
    return Finding("device", True, str(device))


def _checkpoints() -> list[Finding]:
    from .. import checkpoints

    names = checkpoints.shipped()
    if not names:
        return [Finding("checkpoints", True, "none shipped in this version")]
    findings = []
    for name in names:
        try:
            checkpoints.path(name)  # verifies every file against the manifest
        except checkpoints.CheckpointError as error:
            findings.append(Finding(name, False, str(error)))
        else:
            findings.append(Finding(name, True, "shipped checkpoint, all files verified"))
    return findings


def _notebooks() -> Finding:
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        from .release import course_root, read_notebook

        specs = KernelSpecManager().find_kernel_specs()
        if "python3" not in specs:
            return Finding(
                "notebooks",
                False,
                "no python3 Jupyter kernel; `pip install ipykernel` in this environment",
            )
        root = course_root()
        paths = sorted(
            [*(root / "notebooks").glob("*.ipynb"), *(root / "exercises").glob("*.ipynb")]
        )
        for path in paths:
            read_notebook(path)
    except Exception as error:
        return Finding("notebooks", False, str(error))
    return Finding("notebooks", True, f"{len(paths)} notebooks readable, python3 kernel found")


def run() -> list[Finding]:
    findings = [
        Finding(
            "python", sys.version_info >= (3, 10), f"{platform.python_version()} ({sys.executable})"
        )
    ]
    findings += [_package(d, m, True) for d, m in REQUIRED.items()]
    findings += [_package(d, m, False) for d, m in OPTIONAL.items()]
    if all(f.ok for f in findings):
        findings.append(_device())
        findings += _checkpoints()
        findings.append(_notebooks())
    return findings


def main() -> int:
    findings = run()
    width = max(len(f.name) for f in findings)
    for f in findings:
        print(f"{'ok ' if f.ok else 'BAD'}  {f.name:<{width}}  {f.detail}")
    bad = [f.name for f in findings if not f.ok]
    if bad:
        print(f"\nNot ready: {', '.join(bad)}. See 'Troubleshooting' in README.md.")
        return 1
    print("\nReady: `make lab` opens the course.")
    return 0
