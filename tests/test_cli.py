"""The `mmcourse` command: doctor, and `lab` really serving the course in JupyterLab."""

import json
import os
import shutil
import subprocess
import sys
import urllib.request

import pytest
from conftest import ROOT, free_port, jupyter_env, lab_server_args, wait_for_server


def run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "mmcourse", *args], capture_output=True, text=True, env=env, cwd=ROOT
    )


def test_console_script_is_installed():
    script = shutil.which("mmcourse", path=os.path.dirname(sys.executable))
    assert script, "the `mmcourse` console script is missing from the environment"
    done = subprocess.run([script, "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "release" in done.stdout and "doctor" in done.stdout


@pytest.mark.slow
def test_doctor_passes_here():
    done = run("doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok   torch" in done.stdout and "Ready" in done.stdout


@pytest.mark.slow
def test_doctor_names_a_missing_package(tmp_path):
    (tmp_path / "transformers.py").write_text(
        "raise ImportError('simulated: transformers is not installed')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = run("doctor", env=env)
    assert done.returncode == 1
    assert (
        "BAD  transformers" in done.stdout
        and "simulated" in done.stdout
        and "make lab" in done.stdout
    )


def test_unknown_command_is_a_usage_error():
    done = run("fly")
    assert done.returncode == 2 and "invalid choice" in done.stderr


@pytest.mark.slow
def test_lab_opens_jupyterlab_at_lesson_00(tmp_path):
    port, token = free_port(), "mmcourse-test"
    process = subprocess.Popen(
        # without --allow-root: as root (a container, CI) `mmcourse lab` must add it by itself
        [sys.executable, "-m", "mmcourse", "lab", "--here", "--", *without_allow_root(port, token)],
        cwd=ROOT,
        env=jupyter_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_server(f"{base}/api/status?token={token}", process)
        url = f"{base}/api/contents/notebooks/00_welcome.ipynb?content=0&token={token}"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert json.load(response)["type"] == "notebook"
        with urllib.request.urlopen(
            f"{base}/?token={token}", timeout=10
        ) as page:  # the default page
            assert page.url.split("?")[0].endswith("/lab/tree/notebooks/00_welcome.ipynb")
            assert page.status == 200 and "JupyterLab" in page.read().decode()
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert "Opening the course at notebooks/00_welcome.ipynb" in output
    assert ("You are root" in output) == (os.geteuid() == 0)


def without_allow_root(port, token):
    return [arg for arg in lab_server_args(port, token) if arg != "--allow-root"]


def test_lab_allows_root_only_as_root_and_says_so():
    from mmcourse.course import cli

    as_root = cli.lab_command("python", ["--port=9"], as_root=True)
    assert "--allow-root" in as_root and as_root[-1] == "--port=9"
    assert "--allow-root" not in cli.lab_command("python", [], as_root=False)
    assert cli.lab_command("python", ["--allow-root"], as_root=True).count("--allow-root") == 1
    assert "--allow-root" in cli.ROOT_NOTE and "ordinary user" in cli.ROOT_NOTE


@pytest.mark.slow
def test_eval_clip_prints_the_metrics_table():
    done = run("eval", "clip", "--n", "40", "--start", "123")
    assert done.returncode == 0, done.stderr
    for metric in (
        "zero-shot color_shape",
        "zero-shot position",
        "withheld zero-shot position",
        "R@1",
        "R@5 (3 obj)",
    ):
        assert metric in done.stdout


@pytest.mark.slow
def test_eval_of_an_unknown_model_is_one_clear_error():
    done = run("eval", "clip", "nobody/no-such-clip", env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2
    assert "cannot load 'nobody/no-such-clip'" in done.stderr and "shapes-clip" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_eval_vlm_prints_the_metrics_table(tmp_path, nano_clip_folder):
    from test_vlm import tiny_llama
    from transformers import CLIPImageProcessor, CLIPVisionModel

    from mmcourse import vlm
    from mmcourse.tokenizer import build_tokenizer

    model = vlm.MultimodalModel(
        CLIPVisionModel.from_pretrained(nano_clip_folder),
        tiny_llama(),
        None,
        build_tokenizer(),
        processor=CLIPImageProcessor.from_pretrained(nano_clip_folder),
    )
    model.save_pretrained(tmp_path / "vlm")
    done = run("eval", "vlm", str(tmp_path / "vlm"), "--n", "10")
    assert done.returncode == 0, done.stderr
    for row in (
        "| question kind | model | majority | question only |",
        "| all |",
        "| captions |",
        "| BLEU-4 |",
    ):
        assert row in done.stdout, row
    missing = run("eval", "vlm", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "not an mmcourse VLM folder" in missing.stderr


def test_train_options_a_recipe_lacks_are_refused_by_name():
    done = run("train", "shapes-clip", "--vision", "models/clip", "--run-dir", "never-written")
    assert done.returncode == 2
    assert "the recipe shapes-clip has no --vision" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_recipe_option_is_refused_before_anything_is_written(tmp_path):
    run_dir = tmp_path / "run"
    done = run("train", "shapes-vlm-aligned", "--run-dir", str(run_dir), "--merge", "0")
    assert done.returncode == 2
    assert "merge must be a positive int" in done.stderr and "Traceback" not in done.stderr
    assert not run_dir.exists()


@pytest.mark.slow
def test_eval_lm_prints_the_text_qa_table():
    done = run("eval", "lm", "--n", "40", "--start", "321")
    assert done.returncode == 0, done.stderr
    for row in ("| position |", "| count |", "describing a described scene", "| 3 obj |"):
        assert row in done.stdout
