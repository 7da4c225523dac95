"""The workshop hub recipe (course tooling): JupyterHub with the course and its exchange.

- `config`: the hub's configuration as functions (`configure`, `workshop`), shared with the tests;
- `jupyterhub_config.py`: the file `jupyterhub -f` reads (package data);
- `learner_server`: what each learner's server runs first (the course into the learner's home);
- `launch`: `mmcourse hub`, the one command that starts it on one machine.
"""

from __future__ import annotations

import importlib

__all__ = ["config", "jupyterhub_config", "launch", "learner_server"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
