"""``tools.proxy.trusted``: forwarded headers only from listed peers, over real HTTP;
the setting checked at engine start, and the production warning when it is unset."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bus_support import python_env
from prefork_support import DEADLINE, running_master, write_app
from test_builtin_tools import Proxied
from test_sessions_config import startup_error

import morello
from morello.lib.trusted_proxies import parse_trusted, trusts
from morello.testing import free_port, running

FORGED = {
    "X-Forwarded-Host": "www.example.org",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-For": "198.51.100.7",
}
WARNING = "tools.proxy is on without tools.proxy.trusted"


def proxy_config(**settings: Any) -> dict[str, Any]:
    return {"tools.proxy.on": True, **{f"tools.proxy.{k}": v for k, v in settings.items()}}


@pytest.mark.parametrize(
    ("trusted", "believed"),
    [
        (None, True),  # unset: CherryPy's behaviour
        (["127.0.0.1"], True),
        (["::1", "127.0.0.0/8"], True),
        ("192.0.2.1, 127.0.0.1", True),
        (["*"], True),
        (["192.0.2.0/24", "2001:db8::/32"], False),
        ([], False),
    ],
)
def test_forwarded_headers_only_from_trusted_peers(
    serve: Any, trusted: Any, believed: bool
) -> None:
    client = serve(Proxied(), {"/": proxy_config(trusted=trusted)})
    port = client.port
    response = client.get("/", FORGED)
    assert response.status == 200
    if believed:
        assert response.text == "https://www.example.org 198.51.100.7 https://www.example.org/page"
    else:
        assert response.text == f"http://127.0.0.1:{port} 127.0.0.1 http://127.0.0.1:{port}/page"
        redirect = client.get("/away", FORGED)
        assert redirect.headers["Location"] == f"http://127.0.0.1:{port}/there"


def test_base_setting_applies_to_untrusted_peers(serve: Any) -> None:
    # base is the operator's, not the client's: it does not depend on the peer.
    config = proxy_config(trusted=["192.0.2.1"], base="https://public.example")
    response = serve(Proxied(), {"/": config}).get("/", FORGED)
    assert response.text == "https://public.example 127.0.0.1 https://public.example/page"


def test_ipv4_peers_on_a_dual_stack_socket_match_ipv4_networks() -> None:
    assert trusts(["10.0.0.0/8"], "::ffff:10.1.2.3")
    assert not trusts(["10.0.0.0/8"], "::ffff:192.0.2.1")
    assert not trusts(["10.0.0.0/8"], "")  # no address: a UNIX socket peer
    assert trusts("*", "")


@pytest.mark.parametrize(
    ("trusted", "bad"),
    [
        (["10.0.0.0/33"], "'10.0.0.0/33'"),
        (["10.0.0.1/8"], "'10.0.0.1/8'"),
        ("127.0.0.1, proxy.internal", "'proxy.internal'"),
        ([10], "10"),
        (True, "True"),
    ],
)
def test_a_bad_trusted_setting_stops_the_engine_start(trusted: Any, bad: str) -> None:
    message = startup_error({"/": proxy_config(trusted=trusted)})
    assert "tools.proxy.trusted" in message and bad in message
    assert "config section '/'" in message
    with pytest.raises(ValueError, match="tools.proxy.trusted"):
        parse_trusted(trusted)


def test_morello_serve_refuses_a_bad_trusted_setting(tmp_path: Path) -> None:
    write_app(tmp_path)
    (tmp_path / "site.conf").write_text(
        "[/]\ntools.proxy.on = True\ntools.proxy.trusted = ['127.0.0.1', '10.0.0.0/33']\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "morello.master", "serve", "app:Root", "-c", "site.conf",
         "--bind", f"127.0.0.1:{free_port()}", "--workers", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=DEADLINE, env=python_env(),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "tools.proxy.trusted" in line]
    assert line.startswith("morello serve: error:") and "'10.0.0.0/33'" in line


def proxy_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and WARNING in r.getMessage()]  # fmt: skip


@pytest.mark.parametrize(
    ("environment", "settings", "warnings"),
    [
        ("production", {}, 1),
        ("production", {"trusted": ["10.0.0.0/8"]}, 0),
        ("staging", {}, 0),
    ],
)
def test_unset_trusted_is_logged_once_at_start_in_production(
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    environment: str,
    settings: dict[str, Any],
    warnings: int,
) -> None:
    monkeypatch.setattr(morello.checker, "_warned", set())
    # Two sections (and a second app) switch the tool on: still one line.
    config = {"/": proxy_config(**settings), "/away": proxy_config(debug=False)}
    apps = {"": Proxied(), "/other": Proxied()}
    with caplog.at_level(logging.WARNING), running(apps, config, {"environment": environment}):
        pass
    assert len(proxy_warnings(caplog)) == warnings


def test_morello_serve_logs_the_warning_once_not_once_per_worker(tmp_path: Path) -> None:
    write_app(tmp_path)
    (tmp_path / "site.conf").write_text(
        '[global]\nenvironment = "production"\n[/]\ntools.proxy.on = True\n'
    )
    with running_master(tmp_path, "-c", "site.conf", workers=3) as master:
        log = master.log()
    assert log.count(WARNING) == 1, log
