"""The library's three layers, as DESIGN and the README's "Contributing" describe them, kept true:
concepts import only earlier chapters and never the recipes or the course tooling; every module
names its public API; every submodule is reachable as `mmcourse.X`; light commands stay light."""

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

import mmcourse

PACKAGE = ROOT / "mmcourse"
#: The chapter that teaches each concept module; a module may import only concepts of its chapter or
#: earlier (and `utils`, `checkpoints`, which every chapter uses).
CHAPTER = dict(
    data=0,
    tokenizer=0,
    utils=0,
    plotting=0,
    checkpoints=1,
    vision=1,
    contrastive=3,
    clip=3,
    projection=4,
    language_model=5,
    vlm=5,
    metrics=6,
    attention=8,
    widgets=8,
    frozen_lm=9,
    tutorial=1,
)
ANYWHERE = {"utils", "checkpoints"}
#: "About 300 lines": a concept module that grows past this is split (one job per module).
CONCEPT_MODULE_LINES = 350


def module_names() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(mmcourse.__path__, "mmcourse."):
        if not info.name.endswith("__main__"):
            names.append(info.name)
    return sorted(names)


def mmcourse_imports(path: Path) -> set[str]:
    """The top-level mmcourse modules (`data`, `recipes`, ...) that a file imports."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    package = parts if parts[-1] == "__init__" else parts[:-1]
    package = [p for p in package if p != "__init__"]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                if node.module:
                    target = [*base, *node.module.split(".")]
                    found.add(target[0] if target else node.module)
                else:
                    found.update(base[:1] if base else [a.name for a in node.names])
            elif node.module and node.module.split(".")[0] == "mmcourse":
                rest = node.module.split(".")[1:]
                found.update(rest[:1] or [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("mmcourse."))
    return found


def concept_files():
    for name in CHAPTER:
        path = PACKAGE / f"{name}.py"
        yield from [path] if path.exists() else sorted((PACKAGE / name).glob("*.py"))


@pytest.mark.parametrize("path", list(concept_files()), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_concept_imports_only_earlier_chapters_and_never_recipes_or_tooling(path):
    top = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    for imported in mmcourse_imports(path) - {top}:
        assert imported in CHAPTER, (
            f"{path.name} imports mmcourse.{imported}, which is not a concept"
        )
        assert imported in ANYWHERE or CHAPTER[imported] <= CHAPTER[top], (
            f"{top} (chapter {CHAPTER[top]}) imports {imported} (chapter {CHAPTER[imported]})"
        )


@pytest.mark.parametrize("path", list(concept_files()), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_concept_module_stays_short(path):
    lines = len(path.read_text().splitlines())
    assert lines <= CONCEPT_MODULE_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines: split it"


def test_the_layers_are_the_packages_the_readme_names():
    assert set(mmcourse.CONCEPTS) == set(CHAPTER)
    on_disk = {p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_")}
    on_disk |= {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert on_disk == set(mmcourse.__all__)
    for layer in ("recipes", "course", "grading"):
        for path in (PACKAGE / layer).rglob("*.py"):
            assert not mmcourse_imports(path) & {"widgets"}, f"{path} imports a notebook widget"
    for path in (PACKAGE / "recipes").rglob("*.py"):
        assert not mmcourse_imports(path) & {"course", "grading"}, (
            f"{path}: recipes are not tooling"
        )


@pytest.mark.parametrize("name", module_names())
def test_every_module_names_its_public_api(name):
    module = importlib.import_module(name)
    assert isinstance(getattr(module, "__all__", None), (list, tuple)), f"{name} has no __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"


def test_every_submodule_is_reachable_as_an_attribute_in_a_fresh_interpreter():
    # `import mmcourse` then attribute access only, the way a notebook reaches `mmcourse.widgets`
    code = (
        "import functools, mmcourse, sys\n"
        "for name in sys.argv[1:]:\n"
        "    functools.reduce(getattr, name.split('.')[1:], mmcourse)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *module_names()], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]


def light(code: str) -> str:
    """Run `code` in a fresh interpreter; return the heavy packages it imported."""
    probe = code + "\nimport sys\nprint(sorted({'torch', 'transformers'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_release_strips_markers_without_importing_torch():
    assert (
        light("from mmcourse.course import release\nassert release.release(check=True) == []")
        == "[]"
    )


def test_the_cli_builds_without_importing_torch():
    # `python -m mmcourse lab` sets the course up on a bare Python: its parser may not need torch
    assert light("from mmcourse.course import cli\ncli.build_parser().parse_args(['lab'])") == "[]"


def test_one_generate_path():
    # `tutorial.py` is the tutorial's own code, kept with its faults for the lessons to fix: nothing
    # in the library calls it
    callers = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if ".generate(" in path.read_text() and path.name != "tutorial.py"
    ]
    assert callers == ["vlm/decoding.py"], callers
