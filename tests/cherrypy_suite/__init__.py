"""CherryPy 18.10.0's own test suite, run against morello.

Usage: ``./dev cherrypy-suite [MODULE...] [--failures]`` or
``python -m tests.cherrypy_suite ...`` (MODULE like ``test_core``).

The runner downloads CherryPy's sdist with pip (cached in
``.cache/cherrypy-suite/``, never committed), lays the sdist's
``cherrypy/test`` folder beside the import shim of ``shim/`` (``import
cherrypy`` gives ``morello``, ``cherrypy.X`` gives ``morello.X``) and runs
each test module in its own pytest process, two at a time, with a per-test
timeout and a per-module wall-clock bound. It prints a table of outcomes on
morello and on CherryPy, then ``K/N CherryPy-passing tests pass (D more
differ on purpose: see README)``: N tests pass on CherryPy, K of them pass on
morello, and D of the others are listed in :data:`DELIBERATE`, each failing
because of a difference README's "What differs from CherryPy on purpose"
explains.

The CherryPy outcomes come from the same runner with the shim handing out
the real CherryPy: the one installed in the venv when it is 18.10.0, else
the sdist's own package. They are cached by the sdist's hash.

What morello's run takes from the sdist besides ``cherrypy/test``:

- ``cherrypy._cpcompat``: py2/py3 shims the test helper imports
  (``ntob``, ``text_or_bytes``, ``HTTPSConnection``);
- ``cherrypy.lib.gctools``: the helper mounts its ``GCRoot`` at ``/gc`` in
  every test app to look for reference leaks;
- ``cherrypy.tutorial``: the tutorial apps ``test_tutorials`` serves (apps,
  which run on morello through the shim like any other).

The pytest plugin ``shim/suite_plugin.py`` moves the helper's fixed port
(54583) to a free one per process, so that two modules can run at once.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

from morello.testing import free_port

VERSION = "18.10.0"
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "cherrypy-suite"
SHIM = Path(__file__).resolve().parent / "shim"
TARGETS = ("morello", "cherrypy")
JOBS = 2
#: pytest-timeout's bound on each test, seconds.
TEST_TIMEOUT = 60
#: Wall-clock bound on one module's pytest process, seconds.
MODULE_TIMEOUT = 300

#: Modules whose every CherryPy-passing test passes on morello (or differs
#: on purpose: :data:`DELIBERATE`), which ``tests/test_cherrypy_suite.py``
#: keeps so. Also fully passing but left out: test_http (80 s), test_states
#: (30 s of real cherryd processes), test_bus (its
#: test_wait_publishes_periodically counts ticks of a 10 ms timer and misses
#: on a busy machine) and test_caching (its test_antistampede gives 100
#: concurrent 4 s requests 6 s).
FULLY_PASSING = (
    "test_auth_basic", "test_auth_digest", "test_config", "test_config_server",
    "test_dynamicobjectmapping", "test_etags", "test_httputil", "test_iterator", "test_json",
    "test_logging",
    "test_mime", "test_native", "test_objectmapping", "test_params", "test_plugins",
    "test_proxy", "test_refleaks", "test_routes", "test_sessionauthenticate", "test_tutorials",
    "test_virtualhost", "test_wsgi_ns", "test_wsgi_unix_socket", "test_wsgiapps",
    "test_wsgi_vhost", "test_xmlrpc",
)  # fmt: skip


#: CherryPy-passing tests that fail on morello on purpose: ``module::test``
#: (the test as ``--failures`` lists it, without the module's dotted name) ->
#: the difference, one line. Only differences README explains belong here.
DELIBERATE: dict[str, str] = {
    # Pages and messages morello writes itself, in its own words.
    "test_httputil::test_valid_status[500-expected_status2]":
        "morello's own wording of the 500 message",
    "test_tutorials::TutorialTest::test10HTTPErrors": "morello's own wording of the 500 message",
    "test_core::ErrorTests::test_start_response_error":
        "morello's own wording of the last-resort 500 for a malformed response header",
    "test_encoding::EncodingTests::test_query_string_decoding":
        "morello's own wording of the 404 for an undecodable query string",
    "test_encoding::EncodingTests::testGzip":
        "morello's own wording of tools.gzip's 406; a streamed body failing before its first "
        "chunk is a plain 500 (CherryPy has sent the gzip header and cuts the connection)",
    "test_static::StaticTest::test_index": "morello's own wording of the 301 redirect note",
    "test_misc_tools::AcceptTest::test_Accept_Tool": "morello's own wording of tools.accept's 406",
    "test_misc_tools::AcceptTest::test_accept_selection":
        "morello's own wording of tools.accept's 406",
    "test_xmlrpc::XmlRpcTest::testXmlRpc": "morello's own wording of XML-RPC faults",
    "test_conn::ConnectionTests::test_Content_Length_out_preheaders":
        "morello's own wording of the 500 for a body longer than its Content-Length",
    "test_request_obj::RequestObjectTests::testErrorHandling":
        "short error pages are not padded to 512 bytes",
    # Request bodies and framing.
    "test_tutorials::TutorialTest::test09Files":
        "a multipart body cut short by its Content-Length is a 400",
    "test_conn::ConnectionTests::test_Chunked_Encoding":
        "Transfer-Encoding with Content-Length is a 400 (strict RFC 9112 framing)",
    "test_conn::ConnectionTests::test_readall_or_close":
        "100 Continue only when the application reads the body; else the connection closes",
    "test_static::StaticTest::test_null_bytes":
        "a NUL in the request target is a 400 (strict RFC 9112 framing)",
    # Sessions.
    "test_session::SessionTest::test_0_Session":
        "HttpOnly cookies (the test splits every cookie attribute on '='), no clean-up thread",
    "test_session::SessionTest::test_7_session_cookies":
        "HttpOnly cookies; a session that was only loaded and holds no data is not stored",
    # Response bytes.
    "test_tools::ToolTests::testCombinedTools":
        "gzip streams carry zlib's header (mtime 0), so equal bodies give equal bytes",
}  # fmt: skip


class SdistUnavailable(RuntimeError):
    """pip could not download CherryPy's sdist."""


@dataclass
class Sdist:
    """CherryPy's unpacked sdist and the cache directory keyed by its hash."""

    tarball: Path
    digest: str
    source: Path  # the unpacked cherrypy-<version> directory

    @property
    def cache(self) -> Path:
        return self.tarball.parent.parent / self.digest[:16]

    @property
    def modules(self) -> list[str]:
        """The suite's test modules, like ``test_core``."""
        return sorted(p.stem for p in (self.source / "cherrypy" / "test").glob("test_*.py"))


@dataclass
class ModuleResult:
    """One module's run: ``outcomes`` maps test ids to passed/failed/error/skipped."""

    # ok; broken: collection errors or the like (pytest's exit status 2 to 4);
    # timeout; crashed: no report.
    status: str
    seconds: float
    outcomes: dict[str, str] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes.values() if o == outcome)


def fetch_sdist(cache: Path = CACHE) -> Sdist:
    """Download (once) and unpack CherryPy's sdist under ``cache``."""
    downloads = cache / "sdist"
    tarball = downloads / f"cherrypy-{VERSION}.tar.gz"
    if not tarball.is_file():
        downloads.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                   "--no-deps", "--no-binary", ":all:", f"cherrypy=={VERSION}", "-d", downloads]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode or not tarball.is_file():
            raise SdistUnavailable(done.stderr.strip().splitlines()[-1:] or "pip failed")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    sdist = Sdist(tarball, digest, Path())
    sdist.source = sdist.cache / "src" / f"cherrypy-{VERSION}"
    if not sdist.source.is_dir():
        with tarfile.open(tarball) as archive:
            archive.extractall(sdist.cache / "src", filter="data")
    return sdist


def lay_out(sdist: Sdist, target: str, root: Path) -> Path:
    """A fresh work directory under ``root``: the shim, the sdist's suite in its package."""
    work = root / target
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(SHIM, work, ignore=shutil.ignore_patterns("__pycache__"))
    package = sdist.source / "cherrypy"
    for name in ("test", "tutorial"):
        shutil.copytree(package / name, work / "cherrypy" / name)
    # Tests serve the package's favicon as a sample static file.
    shutil.copy(package / "favicon.ico", work / "cherrypy")
    if target == "morello":
        shutil.copy(package / "_cpcompat.py", work / "cherrypy")
        (work / "cherrypy" / "lib").mkdir()
        shutil.copy(package / "lib" / "gctools.py", work / "cherrypy" / "lib")
    return work


def reference_env(sdist: Sdist) -> dict[str, str]:
    """Where the shim finds the real CherryPy for the reference run."""
    try:
        installed = importlib.metadata.version("cherrypy")
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed == VERSION:
        return {}
    return {"CHERRYPY_SUITE_REFERENCE_PATH": str(sdist.source)}


def run_module(work: Path, target: str, module: str, env: dict[str, str]) -> ModuleResult:
    """Run one test module in its own pytest process and read its JUnit report."""
    report = work / "reports" / f"{module}.xml"
    report.parent.mkdir(exist_ok=True)
    report.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "-q", "-c", "pytest.ini", "--rootdir", ".",
               f"--timeout={TEST_TIMEOUT}", f"--junitxml={report}", f"cherrypy/test/{module}.py"]
    env = {**os.environ, **env, "CHERRYPY_SUITE_TARGET": target,
           "CHERRYPY_SUITE_PORT": str(free_port())}
    log = (work / "reports" / f"{module}.log").open("wb")
    start = time.monotonic()
    with log, subprocess.Popen(command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True) as process:
        try:
            status = "ok" if process.wait(MODULE_TIMEOUT) in (0, 1) else "broken"
        except subprocess.TimeoutExpired:
            # The tests may have spawned servers of their own: end the group.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            status = "timeout"
    result = ModuleResult(status, round(time.monotonic() - start, 1))
    if status != "timeout" and report.is_file():
        read_junit(report, module, result)
    elif status != "timeout":
        result.status = "crashed"
    return result


def read_junit(report: Path, module: str, result: ModuleResult) -> None:
    """Fill ``result`` from a pytest JUnit report (a test is passed if nothing went wrong)."""
    prefix = f"cherrypy.test.{module}."
    for case in ET.parse(report).getroot().iter("testcase"):
        classname = case.get("classname", "").removeprefix(prefix)
        test = f"{classname}::{case.get('name')}" if classname else case.get("name", "")
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
                message = (child.get("message") or "").strip().splitlines()[:1]
                message = message[0][:300] if message else ""
                if outcome != "skipped":
                    break
        result.outcomes[test] = outcome
        if message:
            result.messages[test] = message


def run_target(
    sdist: Sdist, target: str, modules: list[str], root: Path | None = None
) -> dict[str, ModuleResult]:
    """Run ``modules`` against ``target``, ``JOBS`` processes at a time.

    The tests write files beside themselves: concurrent runs need their own ``root``.
    """
    work = lay_out(sdist, target, root or sdist.cache)
    env = reference_env(sdist) if target == "cherrypy" else {}
    with concurrent.futures.ThreadPoolExecutor(JOBS) as pool:
        futures = {m: pool.submit(run_module, work, target, m, env) for m in modules}
        return {m: f.result() for m, f in futures.items()}


def reference_results(
    sdist: Sdist, modules: list[str], root: Path | None = None
) -> dict[str, ModuleResult]:
    """CherryPy's outcomes for ``modules``, run once and cached by the sdist's hash."""
    path = sdist.cache / "reference.json"
    cached = json.loads(path.read_text()) if path.is_file() else {}
    results = {m: ModuleResult(**r) for m, r in cached.items()}
    missing = [m for m in modules if m not in results]
    if missing:
        results.update(run_target(sdist, "cherrypy", missing, root))
        # A module that timed out or crashed is run again next time.
        complete = {m: asdict(r) for m, r in results.items() if r.status == "ok"}
        path.write_text(json.dumps(complete, indent=1))
    return {m: results[m] for m in modules}


def regressions(reference: ModuleResult, result: ModuleResult) -> list[str]:
    """The tests passing on CherryPy that do not pass on morello."""
    return [t for t, o in reference.outcomes.items()
            if o == "passed" and result.outcomes.get(t) != "passed"]


def test_id(module: str, test: str) -> str:
    """``module::test`` as :data:`DELIBERATE` spells it (``test_x::Class::test``).

    The JUnit report names a module-level test function by the module's
    dotted name: that prefix is dropped.
    """
    return f"{module}::{test.removeprefix(f'cherrypy.test.{module}::')}"


def unexplained(module: str, reference: ModuleResult, result: ModuleResult) -> list[str]:
    """The :func:`regressions` of ``module`` that are not in :data:`DELIBERATE`."""
    return [t for t in regressions(reference, result) if test_id(module, t) not in DELIBERATE]


def counts(result: ModuleResult) -> str:
    if result.status in ("timeout", "crashed"):
        return result.status
    tally = "/".join(str(result.count(o)) for o in ("passed", "failed", "error", "skipped"))
    return tally if result.status == "ok" else f"{result.status} {tally}"


def print_table(reference: dict[str, ModuleResult], results: dict[str, ModuleResult],
                failures: bool) -> tuple[int, int, int]:
    """Print the per-module table (and the failing tests); return (K, N, D).

    D counts the failing tests of :data:`DELIBERATE`; an entry whose test
    passes now is pointed out, so that the list stays true.
    """
    print(f"{'module':<28} {'morello p/f/e/s':>16} {'cherrypy p/f/e/s':>17} {'K/N':>8} "
          f"{'purpose':>7} {'time':>5}")
    k = n = d = 0
    passing_now = []
    for module, result in results.items():
        ref = reference[module]
        passing = ref.count("passed")
        lost = regressions(ref, result)
        purposeful = len(lost) - len(unexplained(module, ref, result))
        k, n, d = k + passing - len(lost), n + passing, d + purposeful
        print(f"{module:<28} {counts(result):>16} {counts(ref):>17} "
              f"{f'{passing - len(lost)}/{passing}':>8} {purposeful or '':>7} "
              f"{result.seconds:>4.0f}s")
        passing_now += [test_id(module, t) for t, o in result.outcomes.items()
                        if o == "passed" and test_id(module, t) in DELIBERATE]
        if failures:
            for test in lost:
                # A test missing from a finished run was not collected.
                finished = result.status in ("ok", "broken")
                outcome = result.outcomes.get(test, "missing" if finished else result.status)
                reason = DELIBERATE.get(test_id(module, test))
                detail = f"deliberate: {reason}" if reason else result.messages.get(test, "")
                print(f"    {outcome:<8} {test}: {detail[:160]}")
    print(f"{k}/{n} CherryPy-passing tests pass ({d} more differ on purpose: see README)")
    for test in passing_now:
        print(f"note: {test} passes now: remove it from DELIBERATE")
    return k, n, d


def main(argv: list[str] | None = None) -> int:
    summary = __doc__.split("\n")[0]
    parser = argparse.ArgumentParser(prog="./dev cherrypy-suite", description=summary)
    parser.add_argument("modules", nargs="*", help="test modules (default: all), like test_core")
    parser.add_argument("--failures", action="store_true",
                        help="list the CherryPy-passing tests that fail on morello")
    args = parser.parse_args(argv)
    try:
        sdist = fetch_sdist()
    except SdistUnavailable as exc:
        print(f"cherrypy-suite: cannot download CherryPy {VERSION}'s sdist: {exc}", file=sys.stderr)
        return 2
    unknown = sorted(set(args.modules) - set(sdist.modules))
    if unknown:
        print(f"cherrypy-suite: no such test module: {', '.join(unknown)}", file=sys.stderr)
        return 2
    modules = args.modules or sdist.modules
    reference = reference_results(sdist, modules)
    results = run_target(sdist, "morello", modules)
    (sdist.cache / "morello.json").write_text(
        json.dumps({m: asdict(r) for m, r in results.items()}, indent=1))
    print_table(reference, results, args.failures)
    return 0
