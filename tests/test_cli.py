"""The ``huishang`` command as a user runs it: serve, join, token, and bad configuration."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from web.config import default_config_path, load_config

ROOT = Path(__file__).resolve().parent.parent


def huishang(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "web.cli", *args],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        **kwargs,  # type: ignore[call-overload]
    )


class Served:
    def __init__(self, process: subprocess.Popen[str], lines: list[str]) -> None:
        self.process, self.lines = process, lines
        self.web = next(line.split()[1] for line in lines if line.startswith("web "))
        self.links = {
            m.group(1): m.group(2)
            for line in lines
            if (m := re.match(r"\s+(\S+)\s+.*\t(http://\S+/join\?token=\S+)$", line))
        }


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    process = huishang("serve", "--port", "0", "--data", str(tmp_path / "data"))
    assert process.stdout is not None
    lines: list[str] = []
    sites = load_config(default_config_path()).sites
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.lstrip().startswith(sites[-1].id + " "):
            break
    try:
        yield Served(process, lines)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        finally:
            if process.poll() is None:
                process.kill()


def test_serve_prints_a_join_link_for_every_site(served: Served) -> None:
    sites = load_config(default_config_path()).sites
    assert set(served.links) == {s.id for s in sites}
    port = int(served.web.rsplit(":", 1)[1])
    assert port not in (0, 8080)  # --port 0 picked a free port, and the output shows it
    assert any("珠吉街" in line for line in served.lines)
    # The chair's link opens the chair console (through the /join redirect).
    request = urllib.request.Request(served.links["tianhe"])
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.url.startswith(f"{served.web}/chair?token=")
    with urllib.request.urlopen(f"{served.web}/healthz", timeout=10) as response:
        assert response.status == 200
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{served.web}/join?token=wrong", timeout=10)
    assert info.value.code == 401


def test_join_prints_events_and_answers_nothing_wrong(served: Served) -> None:
    link = served.links["tianhe.zhuji"]
    join = huishang("join", "--url", link, "--hand", "--seconds", "2")
    out, err = join.communicate(timeout=30)
    assert join.returncode == 0, err
    assert '"joined"' in out and "珠吉街" in out
    assert '"type": "hands"' in out and "tianhe.zhuji" in out


def test_join_with_a_wrong_token_fails_clearly(served: Served) -> None:
    join = huishang("join", "--url", served.web, "--token", "nope", "--seconds", "1")
    _out, err = join.communicate(timeout=30)
    assert join.returncode == 1
    assert "unauthorized" in err


def test_token_command_issues_a_working_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run = huishang("token", "tianhe.zhuji", "--data", str(data))
    out, err = run.communicate(timeout=30)
    assert run.returncode == 0, err
    site, token = out.splitlines()[0].split("\t")
    assert site == "tianhe.zhuji" and len(token) >= 16
    run = huishang("token", "tianhe.zhuij", "--data", str(data))
    out, err = run.communicate(timeout=30)
    assert run.returncode == 2
    assert "tianhe.zhuji" in err  # the near match is suggested


def test_bad_config_fails_at_start_naming_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "huishang.toml"
    config.write_text(
        default_config_path()
        .read_text(encoding="utf-8")
        .replace('sites = "sites.toml"', f'sites = "{default_config_path().parent / "sites.toml"}"')
        .replace("port = 8080", 'port = "eighty"'),
        encoding="utf-8",
    )
    run = huishang("serve", "--config", str(config), "--data", str(tmp_path / "d"))
    _out, err = run.communicate(timeout=30)
    assert run.returncode == 2
    assert "huishang.toml" in err and "web.port" in err
