"""The learner's side without a hub: clear messages instead of tracebacks, and the right file."""

from __future__ import annotations

import pytest
from conftest import free_port

from mmcourse.course.cli import main
from mmcourse.exchange import client


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    for name in ("MMCOURSE_EXCHANGE_URL", "JUPYTERHUB_API_TOKEN", "JPY_SESSION_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MMCOURSE_WORKSPACE", str(tmp_path / "workspace"))
    (tmp_path / "workspace").mkdir()
    (tmp_path / "workspace" / "ex00_shapes_world.ipynb").write_text("{}")
    return tmp_path / "workspace"


def test_off_a_hub_submit_says_so_and_names_the_file(workspace, capsys):
    assert client.submit("ex00") is None
    out = capsys.readouterr().out
    assert out.startswith("Not submitted: There is no course hub here")
    assert str(workspace / "ex00_shapes_world.ipynb") in out


def test_off_a_hub_the_command_fails_in_one_line(workspace, capsys):
    assert main(["submit", "ex00"]) == 2
    err = capsys.readouterr().err
    assert "no course hub" in err and "Traceback" not in err


def test_the_kernel_s_own_notebook_is_the_one_handed_in(workspace, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere" / "ex00_shapes_world.ipynb"
    elsewhere.parent.mkdir()
    elsewhere.write_text("{}")
    monkeypatch.setenv("JPY_SESSION_NAME", str(elsewhere))
    assert client.find_notebook("ex00") == elsewhere
    assert client.find_notebook("ex00", workspace / "ex00_shapes_world.ipynb").parent == workspace
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "ex03_other.ipynb"))
    assert client.find_notebook("ex00") == workspace / "ex00_shapes_world.ipynb"


def test_a_missing_copy_and_a_bad_id_are_named(workspace):
    with pytest.raises(client.ExchangeError, match="mmcourse start ex03"):
        client.find_notebook("ex03")
    with pytest.raises(client.ExchangeError, match="not an exercise id"):
        client.hand_in("ex3")


def test_an_unreachable_exchange_is_named(workspace, monkeypatch):
    monkeypatch.setenv(
        "MMCOURSE_EXCHANGE_URL", f"http://127.0.0.1:{free_port()}/services/exchange/"
    )
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "x")
    with pytest.raises(client.ExchangeError, match="cannot reach the exchange"):
        client.hand_in("ex00")
