"""The classroom commands of `mmcourse`: thin wrappers over `client` and `instructor`.

Learners: `submit ex03 [PATH]`, `submissions`, `feedback ex03`. Instructors: `deadline ex03 TIME`,
`collect ex03 DIR`, then the usual `mmcourse grade DIR --out RESULTS`, then
`return-feedback ex03 DIR RESULTS`. `hub` starts the workshop hub. Every expected failure is one
line naming the problem and the fix (exit status 2), never a traceback. Only the standard
library is imported until a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register"]


def _fail(command: str, error: Exception) -> int:
    print(f"{command}: {error}", file=sys.stderr)
    return 2


def _submit(args: argparse.Namespace) -> int:
    from . import client

    try:
        receipt = client.hand_in(args.exercise, args.path)
    except client.ExchangeError as error:
        return _fail("submit", error)
    print(client.receipt_text(receipt))
    return 0


def _submissions(args: argparse.Namespace) -> int:
    from . import client

    try:
        receipts = client.ExchangeClient().submissions(args.exercise, args.user)
    except client.ExchangeError as error:
        return _fail("submissions", error)
    if args.json:
        print(json.dumps(receipts, indent=1))
        return 0
    for r in receipts:
        late = "LATE" if r["late"] else "on time"
        print(f"{r['received_at']}  {r['user']}  {r['exercise']}  {r['size']:>8} B  {late}")
    if not receipts:
        print("No hand-ins yet.")
    return 0


def _feedback(args: argparse.Namespace) -> int:
    from . import client

    try:
        path, record = client.fetch_feedback(
            args.exercise, Path(args.workspace) if args.workspace else None
        )
    except client.ExchangeError as error:
        return _fail("feedback", error)
    print(f"Feedback on {args.exercise} (version {record['version']}) written to {path}")
    return 0


def _deadline(args: argparse.Namespace) -> int:
    from . import client

    try:
        exchange = client.ExchangeClient()
        if args.clear:
            deadline = exchange.set_deadline(args.exercise, None)
        elif args.time:
            deadline = exchange.set_deadline(args.exercise, args.time)
        else:
            deadline = exchange.deadline(args.exercise)
    except client.ExchangeError as error:
        return _fail("deadline", error)
    print(f"{args.exercise}: deadline {deadline or 'none'}")
    return 0


def _collect(args: argparse.Namespace) -> int:
    from . import client, instructor

    try:
        manifest = instructor.collect(args.exercise, Path(args.out))
    except client.ExchangeError as error:
        return _fail("collect", error)
    late = ", ".join(r["user"] for r in manifest["late_only"]) or "none"
    print(
        f"Collected {len(manifest['submissions'])} on-time hand-in(s) of {args.exercise} into "
        f"{args.out} (manifest.json); late only, not collected: {late}.\n"
        f"Grade them with: mmcourse grade {args.out} --out RESULTS"
    )
    return 0


def _return_feedback(args: argparse.Namespace) -> int:
    from . import client, instructor

    try:
        rows = instructor.return_feedback(args.exercise, Path(args.collected), Path(args.results))
    except (client.ExchangeError, OSError, ValueError) as error:
        return _fail("return-feedback", error)
    for row in rows:
        print(f"{row['user']}: {row['total']}/{row['max']} {row['status']}")
    print(f"Gradebook by hub user: {Path(args.results) / f'gradebook-{args.exercise}.csv'}")
    return 0 if all(r["status"].startswith("released") for r in rows) else 1


def _hub(args: argparse.Namespace) -> int:
    from ..hub import launch

    return launch.run(args)


def register(commands) -> None:
    """Add the classroom commands to `mmcourse`'s sub-command parser."""
    submit = commands.add_parser("submit", help="hand in an exercise through the course hub")
    submit.add_argument("exercise", help="e.g. ex03")
    submit.add_argument("path", nargs="?", help="the notebook (default: workspace/ex03_*.ipynb)")
    submit.set_defaults(run=_submit)

    listing = commands.add_parser("submissions", help="list your hand-ins (instructors: all)")
    listing.add_argument("--exercise", help="only this exercise")
    listing.add_argument("--user", help="instructors: only this learner")
    listing.add_argument("--json", action="store_true", help="print the receipts as JSON")
    listing.set_defaults(run=_submissions)

    feedback = commands.add_parser("feedback", help="fetch your feedback into your workspace")
    feedback.add_argument("exercise")
    feedback.add_argument("--workspace", help="where to write it (default: your workspace)")
    feedback.set_defaults(run=_feedback)

    deadline = commands.add_parser("deadline", help="show or (instructors) set a deadline")
    deadline.add_argument("exercise")
    deadline.add_argument("time", nargs="?", help="ISO-8601 with a zone, e.g. 2026-12-03T12:00Z")
    deadline.add_argument("--clear", action="store_true", help="remove the deadline")
    deadline.set_defaults(run=_deadline)

    collect = commands.add_parser(
        "collect", help="instructors: fetch the latest on-time hand-ins into DIR"
    )
    collect.add_argument("exercise")
    collect.add_argument("out", help="DIR: DIR/<hub user>/exNN.ipynb and DIR/manifest.json")
    collect.set_defaults(run=_collect)

    give_back = commands.add_parser(
        "return-feedback", help="instructors: upload each learner's graded result to them"
    )
    give_back.add_argument("exercise")
    give_back.add_argument("collected", help="the DIR that `mmcourse collect` wrote")
    give_back.add_argument("results", help="the --out folder of `mmcourse grade DIR`")
    give_back.set_defaults(run=_return_feedback)

    hub = commands.add_parser("hub", help="start the workshop JupyterHub (course + exchange)")
    hub.add_argument("--instructors", help="hub user names, comma-separated")
    hub.add_argument("--learners", help="hub user names, comma-separated")
    hub.add_argument("--learners-file", help="a file with one learner name a line")
    hub.add_argument("--ip", default="127.0.0.1", help="listen address (0.0.0.0: the network)")
    hub.add_argument("--port", type=int, default=8000, help="the hub's port (default 8000)")
    hub.add_argument(
        "--state-dir", default="hub-state", help="hub database, secrets and hand-ins (private)"
    )
    hub.set_defaults(run=_hub)
