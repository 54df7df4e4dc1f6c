"""CherryPy 18.10.0's own tests keep passing on morello (the fast subset).

The whole suite runs with ``./dev cherrypy-suite``; here only the modules
of ``cherrypy_suite.FULLY_PASSING``, whose every test that passes on
CherryPy passes on morello too.
"""

from __future__ import annotations

import importlib

import pytest
from cherrypy_suite import (
    DELIBERATE,
    FULLY_PASSING,
    VERSION,
    ModuleResult,
    SdistUnavailable,
    fetch_sdist,
    print_table,
    reference_results,
    run_target,
    unexplained,
)

import morello
from morello.testing import running

CP_MODULES = ("_cpconfig", "_cpdispatch", "_cperror", "_cplogging", "_cpreqbody",
              "_cprequest", "_cpserver", "_cptools", "_cptree", "_cpwsgi", "_json")  # fmt: skip


@pytest.mark.parametrize("name", CP_MODULES)
def test_cherrypy_private_module_names_import_as_morello_modules(name: str) -> None:
    # ``from cherrypy._cptree import Application`` in an app run on morello.
    module = importlib.import_module(f"morello.{name}")
    assert module is getattr(morello, name)


@pytest.mark.timeout(300)
def test_fully_passing_modules_still_pass(tmp_path) -> None:
    try:
        sdist = fetch_sdist()
    except SdistUnavailable as exc:
        pytest.skip(f"cannot download CherryPy {VERSION}'s sdist: {exc}")
    modules = list(FULLY_PASSING)
    reference = reference_results(sdist, modules, tmp_path)
    results = run_target(sdist, "morello", modules, tmp_path)
    for module in modules:
        # A broken shim would make CherryPy fail too: the subset must be real tests.
        assert reference[module].count("passed") > 0, module
    lost = {m: unexplained(m, reference[m], r) for m, r in results.items()}
    assert not {m: tests for m, tests in lost.items() if tests}


def test_cherrypy_json_helpers_round_trip() -> None:
    from morello import _json

    value = {"a": [1, "é"], "b": None}
    encoded = b"".join(_json.encode(value))
    assert _json.decode(encoded.decode("utf-8")) == value == _json.json.loads(encoded)


def test_cherrypy_wsgi_server_path_names_morellos_server() -> None:
    # Config files name it: server.instance = 'cherrypy._cpwsgi_server.CPWSGIServer'.
    module = importlib.import_module("morello._cpwsgi_server")
    assert module.CPWSGIServer is morello.httpserver.WSGIServer


class Hello:
    @morello.expose
    def index(self) -> str:
        return "hello"


def test_cherrypy_native_server_path_serves_the_tree() -> None:
    # CherryPy's native server: morello's own, which serves morello apps without WSGI.
    instance = "morello._cpnative_server.CPHTTPServer"
    try:
        with running({"": Hello()}, global_config={"server.instance": instance}) as client:
            assert client.get("/").text == "hello"
            native = importlib.import_module("morello._cpnative_server")
            assert type(morello.server.httpserver) is native.CPHTTPServer
    finally:
        morello.server.instance = None


def test_summary_counts_deliberate_differences_apart(monkeypatch, capsys) -> None:
    monkeypatch.setitem(DELIBERATE, "test_x::Case::test_b", "our own wording")
    monkeypatch.setitem(DELIBERATE, "test_x::test_d[1]", "no favicon")
    monkeypatch.setitem(DELIBERATE, "test_x::Case::test_e", "stale entry")
    names = ["Case::test_a", "Case::test_b", "Case::test_c", "cherrypy.test.test_x::test_d[1]",
             "Case::test_e"]  # fmt: skip
    reference = ModuleResult("ok", 1.0, dict.fromkeys(names, "passed"))
    morello_outcomes = ["passed", "failed", "error", "failed", "passed"]
    result = ModuleResult("ok", 1.0, dict(zip(names, morello_outcomes, strict=True)),
                          {"Case::test_c": "boom"})  # fmt: skip
    assert print_table({"test_x": reference}, {"test_x": result}, failures=True) == (2, 5, 2)
    out = capsys.readouterr().out.splitlines()
    assert "    failed   Case::test_b: deliberate: our own wording" in out
    assert "    failed   cherrypy.test.test_x::test_d[1]: deliberate: no favicon" in out
    assert "    error    Case::test_c: boom" in out
    assert "2/5 CherryPy-passing tests pass (2 more differ on purpose: see README)" in out
    assert "note: test_x::Case::test_e passes now: remove it from DELIBERATE" in out
    assert unexplained("test_x", reference, result) == ["Case::test_c"]


def test_deliberate_entries_name_known_modules_and_give_a_reason() -> None:
    for test, reason in DELIBERATE.items():
        module, _, name = test.partition("::")
        assert module.startswith("test_") and name and not name.startswith("cherrypy."), test
        assert reason.strip() and "\n" not in reason, test
