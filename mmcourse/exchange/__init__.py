"""The exchange: hand-ins and feedback through a JupyterHub service (course tooling).

- `store`: the service's storage (immutable history, exact bytes and their sha256).
- `service` and `handlers`: the tornado app that JupyterHub runs and authenticates (no shared
  filesystem).
- `client`: what a learner's notebook or terminal calls; `instructor`: collect and hand back.

In a notebook on the course's hub::

    from mmcourse.exchange import submit
    submit("ex03")

Importing this package needs only the standard library; the service needs `jupyterhub`.
"""

from __future__ import annotations

import importlib

from .client import (
    ExchangeClient,
    ExchangeError,
    NoHubError,
    fetch_feedback,
    find_notebook,
    hand_in,
    receipt_text,
    submit,
)

__all__ = [
    "ExchangeClient",
    "ExchangeError",
    "NoHubError",
    "client",
    "commands",
    "fetch_feedback",
    "find_notebook",
    "hand_in",
    "handlers",
    "instructor",
    "receipt_text",
    "service",
    "store",
    "submit",
]
SUBMODULES = ("client", "commands", "handlers", "instructor", "service", "store")


def __getattr__(name: str):
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
