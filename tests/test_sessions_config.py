"""tools.sessions settings checked at engine start; the README's custom store, run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from morello.sessions.base import Session
from morello.sessions.ram import RamSession
from test_sessions import Root, concurrently, session_id, sessions_config, with_cookie

from morello.process.bus import ChannelFailures
from morello.testing import running

README = Path(__file__).resolve().parents[1] / "README.md"


class NoLocks(Session):
    """A store without lock methods nor ``_apply``."""


class NoMerge(RamSession):
    _apply = Session._apply


def startup_error(config: dict[str, Any], global_config: dict[str, Any] | None = None) -> str:
    """The message of the failed engine start (the engine is left stopped and clean)."""
    context = running({"": Root()}, config, global_config)
    try:
        with pytest.raises(ChannelFailures) as failure:
            context.__enter__()
    finally:
        context.__exit__(None, None, None)
    return str(failure.value)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"storage_type": "mongo"},
            ["storage_type 'mongo'", "'ram', 'file', 'memcached' or 'redis'"],
        ),
        ({"storage_type": "file"}, ["'file' needs tools.sessions.storage_path"]),
        (
            {"locking": "pessimistic"},
            ["'pessimistic'", "'implicit', 'early', 'explicit', 'optimistic'"],
        ),
        ({"storage_class": dict}, ["storage_class must be a subclass", "dict"]),
        ({"storage_class": NoMerge, "locking": "optimistic"}, ["NoMerge has none"]),
        ({"storage_class": NoLocks}, ["'implicit' needs a store with acquire_lock()"]),
        ({"serializer": "pickle"}, ["needs tools.sessions.secret"]),
        ({"serializer": "yaml"}, ["'json' or 'pickle', not 'yaml'"]),
        ({"storage_type": "redis", "url": "redis+sentinel://h/"}, ["/service_name"]),
        ({"storage_type": "memcached", "servers": ["h:port"]}, ["'h:port'", "1 to 65535"]),
    ],
)
def test_bad_settings_stop_the_engine_start(options: dict[str, Any], expected: list[str]) -> None:
    message = startup_error({"/": sessions_config(**options)})
    for text in expected:
        assert text in message
    assert "config section '/'" in message


def test_storage_path_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    message = startup_error({"/": sessions_config(storage_type="file", storage_path=blocker)})
    assert f"tools.sessions.storage_path {str(blocker)!r}" in message


def test_settings_merge_down_the_sections(tmp_path: Path) -> None:
    config = {
        "/": sessions_config(storage_type="file", storage_path=str(tmp_path)),
        "/api/v1": {"tools.sessions.locking": "optimistic"},
        "/api/v1/old": {"tools.sessions.locking": "pesimistic"},
    }
    message = startup_error(config)
    assert "'pesimistic'" in message and "config section '/api/v1/old'" in message


def test_global_config_is_checked() -> None:
    message = startup_error({}, sessions_config(storage_type="mongo"))
    assert "storage_type 'mongo'" in message


def test_good_or_switched_off_settings_start(tmp_path: Path) -> None:
    config = {
        "/": sessions_config(storage_type="file", storage_path=str(tmp_path / "new")),
        "/off": {"tools.sessions.on": False, "tools.sessions.storage_type": "mongo"},
    }
    with running({"": Root()}, config) as client:
        assert client.get("/count").body == b"1"
    assert (tmp_path / "new").is_dir()  # made at startup


def readme_store() -> type[Session]:
    """The custom store of README.md, executed."""
    block = re.search(r"```python\n(# A custom session store.*?)```", README.read_text(), re.S)
    assert block is not None, "the custom store example is missing from README.md"
    namespace: dict[str, Any] = {}
    exec(block.group(1), namespace)
    return namespace["DictSession"]


def test_readme_custom_store(serve: Any) -> None:
    store = readme_store()
    config = sessions_config(storage_class=store, locking="optimistic")
    client = serve(Root(), {"/": config})
    sid = session_id(client.get("/count"))
    assert client.get("/count", with_cookie(sid)).body == b"2"
    assert client.get("/read", with_cookie(sid)).body == b"2"
    assert list(store.records) == [sid]
    # Merges under concurrency: only same-key races lose increments, never the key.
    assert concurrently(client, ["/count"] * 20, sid) == [200] * 20
    assert int(client.get("/read", with_cookie(sid)).body) > 2
    # Without lock methods, the locking modes that need them are refused at startup.
    assert "DictSession has none" in startup_error({"/": sessions_config(storage_class=store)})
