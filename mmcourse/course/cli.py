"""The `mmcourse` command (also `python -m mmcourse`): lab, doctor, release, start, train, eval,
grade, and the classroom commands on a hub (`mmcourse.exchange.commands`).

Imports stay inside the commands: `python -m mmcourse lab` must run on a bare Python to set up
`.venv`.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys

from . import bootstrap

__all__ = ["FIRST_NOTEBOOK", "ROOT_NOTE", "build_parser", "lab_command", "main", "running_as_root"]

FIRST_NOTEBOOK = "notebooks/00_welcome.ipynb"


def running_as_root() -> bool:
    return os.name == "posix" and os.geteuid() == 0


def lab_command(python: str, jupyter_args: list[str], as_root: bool) -> list[str]:
    """The `jupyter lab` command line: the course root is the server's root (lessons, exercises and
    the learner's workspace side by side) and the browser opens at lesson 00. As root (a Docker
    container, say) JupyterLab
    refuses to start unless it is given `--allow-root`."""
    command = [
        python,
        "-m",
        "jupyter",
        "lab",
        f"--ServerApp.root_dir={bootstrap.ROOT}",
        f"--LabApp.default_url=/lab/tree/{FIRST_NOTEBOOK}",
    ]
    if as_root and not any(arg.startswith("--allow-root") for arg in jupyter_args):
        command.append("--allow-root")
    return [*command, *jupyter_args]


ROOT_NOTE = (
    "You are root (as in a Docker container): JupyterLab refuses to run as root unless told to, so "
    "the course "
    "starts it with --allow-root. That is fine in a container or a machine of your own; on a "
    "shared machine, "
    "run `make lab` as an ordinary user instead. The server listens on this machine only "
    "(127.0.0.1); to reach "
    "it from outside a container, add `-- --ip=0.0.0.0` and publish the port."
)


def _lab(args: argparse.Namespace) -> int:
    if args.here or bootstrap.in_course_venv():
        python = sys.executable
    else:
        try:
            python = str(bootstrap.ensure_venv())
        except subprocess.CalledProcessError as error:
            print(
                f"Installing the course failed ({error}). See 'Troubleshooting' in README.md.",
                file=sys.stderr,
            )
            return 1
    as_root = running_as_root()
    if as_root:
        print(ROOT_NOTE, flush=True)
    command = lab_command(python, args.jupyter_args, as_root)
    print(f"Opening the course at {FIRST_NOTEBOOK} (Ctrl-C stops JupyterLab)", flush=True)
    # become the server, so that signals (Ctrl-C, a terminate) reach it directly
    if os.name == "posix":
        os.chdir(bootstrap.ROOT)
        os.execv(python, command)
    try:
        return subprocess.call(command, cwd=bootstrap.ROOT)
    except KeyboardInterrupt:
        return 130


def _doctor(args: argparse.Namespace) -> int:
    from . import doctor

    return doctor.main()


def _release(args: argparse.Namespace) -> int:
    from . import release

    try:
        stale = release.release(check=args.check)
    except ValueError as error:
        print(f"release: {error}", file=sys.stderr)
        return 2
    if args.check:
        if stale:
            print("exercises/ is out of date with solutions/:", *stale, sep="\n  ", file=sys.stderr)
            print("Run `mmcourse release` and commit exercises/.", file=sys.stderr)
            return 1
        print("exercises/ is in sync with solutions/.")
        return 0
    print(f"Wrote exercises/ ({len(stale)} file(s) changed).")
    return 0


def _start(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import release

    try:
        path, copied = release.start(
            args.exercise, Path(args.workspace) if args.workspace else None
        )
    except ValueError as error:
        print(f"start: {error}", file=sys.stderr)
        return 2
    if copied:
        print(f"Your copy: {path}\nOpen it in JupyterLab; course updates never overwrite it.")
    else:
        print(
            f"You already have {path}; it was kept as it is (nothing overwritten).\n"
            "To start afresh, rename or delete your copy first."
        )
    return 0


def _recipe_name(what: str, image_tokens: str) -> str:
    """`clip` and `vlm` are short for the shipped models' recipes; any name of the registry is taken
    as it is."""
    return {"clip": "shapes-clip", "vlm": f"shapes-vlm-{image_tokens}", "lm": "shapes-lm"}.get(
        what, what
    )


#: `mmcourse train` options that replace a field of the recipe (the two-stage recipes take them).
RECIPE_OPTIONS = ("vision", "language", "merge", "start_from", "projector")


def _train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..recipes import registry, ship

    entry = registry.get(_recipe_name(args.what, args.image_tokens))
    recipe = entry.default()
    run_dir = args.run_dir or f"runs/{entry.name}"
    if args.steps:
        recipe = replace(recipe, train=replace(recipe.train, steps=args.steps))
    if args.batch_size:
        recipe = replace(recipe, train=replace(recipe.train, batch_size=args.batch_size))
    overrides = {k: getattr(args, k) for k in RECIPE_OPTIONS if getattr(args, k) is not None}
    unknown = [k for k in overrides if not hasattr(recipe, k)]
    if unknown:
        options = ", ".join("--" + k.replace("_", "-") for k in unknown)
        print(f"train: the recipe {entry.name} has no {options}.", file=sys.stderr)
        return 2
    try:
        recipe = replace(recipe, **overrides)
        entry.recipe_module.train(run_dir, recipe)
    except ValueError as error:
        print(f"train: {error}", file=sys.stderr)
        return 2
    from ..recipes.loop import distributed

    if distributed()[0] != 0:
        return 0  # under torchrun, rank 0 ships and reports
    if args.ship:
        print(f"Shipped {ship.ship(entry.name, run_dir)}")
    if args.eval_n:
        print(entry.recipe_module.report(f"{run_dir}/last", args.eval_n, 0))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ..checkpoints import CheckpointError
    from ..recipes import registry

    default = _recipe_name(args.what, "patches")
    module = registry.get(default).recipe_module
    try:
        print(module.report(args.name or default, args.n, args.start))
    except (CheckpointError, ValueError) as error:
        print(f"eval: {error}", file=sys.stderr)
        return 2
    return 0


def _grade(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    from ..grading import class_grader as grade
    from ..grading import question_bank, sandbox

    out = Path(args.out)
    if args.merge:
        out.mkdir(parents=True, exist_ok=True)
        for folder in args.submissions:
            for result in Path(folder).glob("*.json"):
                if result.parent.resolve() != out.resolve():
                    shutil.copy2(result, out / result.name)
                    feedback = result.with_suffix(".feedback.md")
                    if feedback.exists():
                        shutil.copy2(feedback, out / feedback.name)
        print(f"Merged into {grade.write_csv(out)}")
        return 0
    bank = None
    if args.questions:
        try:
            bank, variants = question_bank.load_private(Path(args.questions))
        except ValueError as error:
            print(f"grade: {error}", file=sys.stderr)
            return 2
        print(f"Private question definitions: {', '.join(q.qid for q in variants) or 'none found'}")
    if not args.unsafe and sandbox.bubblewrap() is None:
        print(
            "grade: bubblewrap (bwrap) is not available, so learners' code cannot be isolated. "
            "Install it "
            "(apt-get install bubblewrap) or pass --unsafe to grade WITHOUT a sandbox.",
            file=sys.stderr,
        )
        return 2
    if args.unsafe:
        print(
            "WARNING: grading with --unsafe: learners' code runs WITHOUT a sandbox, as you.",
            file=sys.stderr,
        )
    try:
        paths = grade.shard(grade.collect(Path(p) for p in args.submissions), args.shard)
    except ValueError as error:
        print(f"grade: {error}", file=sys.stderr)
        return 2
    try:
        seed = grade.class_seed(out, args.seed, sharded=bool(args.shard))
    except ValueError as error:
        print(f"grade: {error}", file=sys.stderr)
        return 2
    limits = sandbox.Limits(
        wall_seconds=args.timeout, cpu_seconds=int(args.timeout * 2), memory_mb=args.memory
    )
    settings = grade.Settings(
        limits=limits, hidden=args.hidden, seed=seed, unsafe=args.unsafe, bank=bank
    )
    written = grade.grade_all(
        paths, out, settings, grade.default_references(), workers=args.workers
    )
    print(
        f"Graded {len(written)} new submission(s) of {len(paths)}; gradebook: {out / 'grades.csv'}"
    )
    statuses = collections.Counter(
        json.loads(path.read_text(encoding="utf-8")).get("status", "graded") for path in written
    )
    if set(statuses) - {"graded"}:
        named = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
        print(f"Hand-ins: {named}; the reasons are in the gradebook's status and problem columns")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmcourse", description="Build a vision-language model, lesson by lesson."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    lab = commands.add_parser("lab", help="set up .venv if needed and open JupyterLab at lesson 00")
    lab.add_argument(
        "--here", action="store_true", help="use this Python environment (conda) instead of .venv"
    )
    lab.add_argument(
        "jupyter_args", nargs=argparse.REMAINDER, help="passed on to `jupyter lab` (after --)"
    )
    lab.set_defaults(run=_lab)

    doctor = commands.add_parser("doctor", help="check versions, device, checkpoints and notebooks")
    doctor.set_defaults(run=_doctor)

    release = commands.add_parser("release", help="write exercises/ from solutions/")
    release.add_argument(
        "--check", action="store_true", help="only compare; exit 1 naming stale files"
    )
    release.set_defaults(run=_release)

    start = commands.add_parser(
        "start", help="copy an exercise into your workspace/ (never overwrites)"
    )
    start.add_argument("exercise", help="e.g. ex00")
    start.add_argument(
        "--workspace", help="folder for your copies (default: workspace/ or $MMCOURSE_WORKSPACE)"
    )
    start.set_defaults(run=_start)

    from ..recipes.registry import RECIPES

    train = commands.add_parser(
        "train", help="train (or resume) a course model: `mmcourse train clip|vlm|NAME`"
    )
    train.add_argument(
        "what", choices=["clip", "vlm", *RECIPES], help="clip, vlm (see --image-tokens) or a recipe"
    )
    train.add_argument(
        "--image-tokens",
        choices=["patches", "cls"],
        default="patches",
        help="vlm: what the LM sees",
    )
    train.add_argument(
        "--run-dir",
        help="where checkpoints go (default runs/shapes-clip, runs/shapes-vlm-KIND); "
        "rerun to resume",
    )
    train.add_argument("--steps", type=int, help="override the recipe's number of steps")
    train.add_argument("--batch-size", type=int, help="override the recipe's (global) batch size")
    train.add_argument(
        "--vision",
        help="two-stage recipes: a CLIP folder or name (e.g. openai/clip-vit-base-patch32)",
    )
    train.add_argument(
        "--language",
        help="two-stage recipes: a Llama-architecture folder with its tokenizer (SmolLM2-135M)",
    )
    train.add_argument(
        "--merge", type=int, help="patch blocks merged into one image token (must divide the grid)"
    )
    train.add_argument("--projector", choices=["linear", "mlp"], help="two-stage recipes")
    train.add_argument("--start-from", help="stage 2: the stage-1 VLM folder to start from")
    train.add_argument(
        "--eval-n", type=int, default=1000, help="test questions after training (0: none)"
    )
    train.add_argument(
        "--ship", action="store_true", help="maintainers: copy the finished run into the package"
    )
    train.set_defaults(run=_train)

    evaluate = commands.add_parser(
        "eval", help="print a model's metrics table: `mmcourse eval clip|vlm|lm [NAME]`"
    )
    evaluate.add_argument("what", choices=["clip", "vlm", "lm"])
    evaluate.add_argument(
        "name", nargs="?", help="shipped name or folder (default shapes-clip, shapes-vlm-patches)"
    )
    evaluate.add_argument("--n", type=int, default=1000, help="scenes per group (default 1000)")
    evaluate.add_argument(
        "--start", type=int, default=0, help="first test-split example (fresh scenes: any other)"
    )
    evaluate.set_defaults(run=_eval)
    grading = commands.add_parser(
        "grade", help="grade learners' notebooks in a sandbox: `mmcourse grade FILES... --out DIR`"
    )
    grading.add_argument(
        "submissions", nargs="+", help="notebooks or folders of them (with --merge: result folders)"
    )
    grading.add_argument(
        "--out", required=True, help="the gradebook folder (grades.csv, one JSON and feedback each)"
    )
    grading.add_argument(
        "--workers", type=int, default=1, help="submissions graded at once (default 1)"
    )
    grading.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per question (default 120)"
    )
    grading.add_argument(
        "--memory", type=int, default=4096, help="MB of address space per question (default 4096)"
    )
    grading.add_argument(
        "--hidden", type=int, default=10, help="hidden cases per question (default 10)"
    )
    grading.add_argument(
        "--seed",
        type=int,
        help="the hidden cases' seed: keep it private (default: a random one, "
        "saved in OUT/grading-seed.txt and reused by reruns; shards need the same --seed)",
    )
    grading.add_argument(
        "--questions", help="a folder of instructor question definitions (private variants)"
    )
    grading.add_argument(
        "--shard", help="grade only shard i of n (e.g. 2/5); merge the shards' folders with --merge"
    )
    grading.add_argument(
        "--merge",
        action="store_true",
        help="merge result folders into --out and rewrite grades.csv",
    )
    grading.add_argument(
        "--unsafe",
        action="store_true",
        help="grade without bubblewrap (NOT isolated; says so loudly)",
    )
    grading.set_defaults(run=_grade)

    from ..exchange import commands as classroom

    classroom.register(commands)  # submit, submissions, feedback, deadline, collect, ..., hub
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "jupyter_args", None) and args.jupyter_args[0] == "--":
        args.jupyter_args = args.jupyter_args[1:]
    return args.run(args)
