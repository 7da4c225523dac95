"""The workshop recipe itself: `mmcourse hub` refuses clearly what cannot work, and the shipped
JupyterHub config file (PAM, one system account per learner) starts a hub with the exchange."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
from hub_harness import require_hub_tools, running_hub

from mmcourse.course.cli import main
from mmcourse.hub import launch
from mmcourse.hub.config import HubSettings


def test_names_come_from_the_options_and_a_file(tmp_path):
    roster = tmp_path / "learners.txt"
    roster.write_text("alice\n# a comment\n\nbob  # the second\nalice\n")
    assert launch.names("carol, dave,", None) == ("carol", "dave")
    assert launch.names("zoe", str(roster)) == ("zoe", "alice", "bob")


def test_the_hub_command_names_what_is_missing_and_starts_nothing(tmp_path, capsys):
    code = main(
        ["hub", "--learners", "no-such-account-xyz", "--state-dir", str(tmp_path / "state")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "not started" in err
    assert "no system account for no-such-account-xyz" in err and "useradd" in err
    assert "no instructor: pass --instructors" in err
    assert not (tmp_path / "state").exists()


def test_problems_reports_a_course_other_accounts_cannot_read(tmp_path):
    private = tmp_path / "private"
    (private / "course").mkdir(parents=True)
    private.chmod(0o700)
    settings = HubSettings(state_dir=str(tmp_path / "s"), instructors=("root",))
    found = launch.problems(settings, private / "course")
    assert any("cannot read the course" in p for p in found)


@pytest.mark.slow
@pytest.mark.system("configurable-http-proxy")
def test_the_shipped_config_starts_a_pam_hub_with_the_exchange(tmp_path):
    require_hub_tools()
    with running_hub(tmp_path, recipe=True, instructors=("root",)) as hub:
        log = hub.log.read_text()
        assert re.search(r"Using Authenticator: jupyterhub\.auth\.PAMAuthenticator", log)
        assert re.search(r"Using Spawner: jupyterhub\.spawner\.LocalProcessSpawner", log)
        exchange = hub.exchange_call("GET", "api/whoami")
        assert exchange.status_code == 401 and "not logged in" in exchange.json()["error"]
        browser = requests.Session()
        page = browser.get(f"{hub.url}/hub/login", timeout=30)
        assert page.status_code == 200
        found = re.search(
            r'name="_xsrf"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="_xsrf"', page.text
        )
        refused = browser.post(
            f"{hub.url}/hub/login",
            data={
                "username": "root",
                "password": "not-the-password",
                "_xsrf": found.group(1) or found.group(2),
            },
            timeout=30,
            allow_redirects=False,
        )
        assert refused.status_code == 403
        assert "PAM Authentication failed ('root'" in hub.log.read_text()  # PAM said no
        state = Path(hub.settings.state_dir)
        assert (state / "exchange").stat().st_mode & 0o077 == 0  # the hand-ins: the hub's user only
