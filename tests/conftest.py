"""Shared fixtures. Tests that need a system package skip when it is absent, unless CI demands
it."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIRE_SYSTEM = os.environ.get("MMCOURSE_REQUIRE_SYSTEM") == "1"
CHROMIUM_PATHS = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")


def need_system(what: str, found: bool, install: str) -> None:
    """Skip (or fail under MMCOURSE_REQUIRE_SYSTEM=1) when a system package is missing."""
    if found:
        return
    message = f"needs {what}; install it with: {install}"
    if REQUIRE_SYSTEM:
        pytest.fail(f"MMCOURSE_REQUIRE_SYSTEM=1 and this test {message}")
    pytest.skip(message)


#: Notebooks over about 10 s under nbval on 2 cores (benchmarks/course_runtime.py measures them
#: all): `make quick` leaves them to `make test`.
SLOW_NOTEBOOKS = {
    "01_clip_vision_encoder.ipynb",
    "02_spatial_patch_features.ipynb",
    "03_contrastive_learning.ipynb",
    "05_assembling_the_model.ipynb",
    "06_captioning_and_decoding.ipynb",
    "07_visual_question_answering.ipynb",
    "08_attention.ipynb",
    "09_frozen_language_model.ipynb",
    "ex06_decoding.ipynb",
    "ex07_vqa.ipynb",
}
#: Fixtures whose tests start a browser or a sandboxed process per case.
SLOW_FIXTURES = {"chromium", "bwrap"}


def pytest_collection_modifyitems(config, items):
    """The fast tier is what is not marked `slow`: costly notebooks, browser and sandbox tests."""
    for item in items:
        path = Path(str(item.fspath))
        if (path.suffix == ".ipynb" and path.name in SLOW_NOTEBOOKS) or SLOW_FIXTURES & set(
            getattr(item, "fixturenames", ())
        ):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def chromium() -> str:
    path = next((p for p in CHROMIUM_PATHS if Path(p).exists()), None) or shutil.which("chromium")
    need_system(
        "Chromium",
        path is not None,
        "apt-get install -y --no-install-recommends chromium fonts-dejavu-core",
    )
    return path


@pytest.fixture
def bwrap() -> str:
    from mmcourse.grading.sandbox import bubblewrap

    path = bubblewrap()
    need_system(
        "bubblewrap that can create namespaces", path is not None, "apt-get install -y bubblewrap"
    )
    return path


@pytest.fixture
def course_root() -> Path:
    return ROOT


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jupyter_env(tmp: Path) -> dict:
    """An environment whose Jupyter config, runtime and settings all live in `tmp` (no user state,
    no news)."""
    import json
    import sys

    env = dict(os.environ)
    for var, sub in [
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTER_DATA_DIR", "data"),
        ("JUPYTERLAB_SETTINGS_DIR", "settings"),
        ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
        ("IPYTHONDIR", "ipython"),
        ("MPLCONFIGDIR", "mpl"),
    ]:
        (tmp / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(tmp / sub)
    notification = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    # every cell stays in the page (no virtual scrolling), so a test finds a widget wherever it is
    # in the notebook
    tracker = tmp / "settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True, exist_ok=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    # the venv's own kernel, whatever a user's machine has registered
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def lab_server_args(port: int, token: str) -> list[str]:
    return [
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--expose-app-in-browser",
    ]


def wait_for_server(url: str, process, seconds: float = 60) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the Jupyter server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"the Jupyter server did not answer {url} within {seconds} s")


@contextlib.contextmanager
def jupyter_lab(root: Path, tmp: Path, token: str):
    """A JupyterLab server on loopback serving `root`, its state in `tmp`; yields its base URL."""
    import subprocess
    import sys

    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            f"--ServerApp.root_dir={root}",
            *lab_server_args(port, token),
        ],
        env=jupyter_env(tmp),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(f"{base}/api/status?token={token}", process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


# Tests never reach the Hugging Face Hub: a hub id must fail fast, as it does for an offline
# learner.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def nano_clip_folder(tmp_path_factory) -> Path:
    """A random-weight tiny CLIP saved like a shipped one (model, tokenizer, processor config)."""
    from mmcourse import clip
    from mmcourse.recipes.shapes_clip import save_clip_extras
    from mmcourse.tokenizer import build_tokenizer

    folder = tmp_path_factory.mktemp("nano-clip")
    __import__("torch").manual_seed(0)  # deterministic random weights
    config = clip.PRESETS["nano"]
    clip.build_clip(config).save_pretrained(folder)
    save_clip_extras(folder, build_tokenizer(), config)
    return folder


@pytest.fixture(scope="session")
def vit_b32_folder(tmp_path_factory) -> Path:
    """A random-weight CLIP with the layout of openai/clip-vit-base-patch32 (224 px, patch 32, 768
    wide).

    Two layers instead of twelve keep it small; nothing about the layout the course relies on
    changes.
    """
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    folder = tmp_path_factory.mktemp("vit-b32")
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(
            hidden_size=512,
            intermediate_size=2048,
            num_hidden_layers=1,
            num_attention_heads=8,
            vocab_size=1000,
            eos_token_id=999,
        ),
        vision_config=dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=2,
            num_attention_heads=12,
            image_size=224,
            patch_size=32,
        ),
        projection_dim=512,
    )
    CLIPModel(config).save_pretrained(folder)
    # OpenAI's preprocessing: shortest edge to 224 (bicubic), center crop 224, CLIP mean/std
    CLIPImageProcessor(
        size={"shortest_edge": 224},
        crop_size={"height": 224, "width": 224},
        resample=3,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def clip():
    """The shipped shapes-clip (a full CLIPModel), loaded once for the session."""
    from transformers import CLIPModel

    from mmcourse import checkpoints

    return checkpoints.from_pretrained(CLIPModel, "shapes-clip").eval()


@pytest.fixture(scope="session")
def clip_tokenizer():
    from transformers import AutoTokenizer

    from mmcourse import checkpoints

    return checkpoints.from_pretrained(AutoTokenizer, "shapes-clip")


@pytest.fixture(scope="session")
def vlm_patches():
    from mmcourse import vlm

    return vlm.load("shapes-vlm-patches")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread while a module runs: the shipped models are tiny, and hundreds of
    one-image forwards are then mostly thread start-up and sync (measured on 2 busy cores: 50 s for
    test_attention.py
    instead of 9 s)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
