"""Tests for morello.configfile: literal parsing, INI loading and merging."""

from __future__ import annotations

import collections
import datetime
import io
import os
import textwrap
import xml

import pytest

from morello.configfile import (
    ConfigError,
    Parser,
    as_dict,
    load,
    merge,
    parse_value,
    resolve_name,
    unrepr,
)

TUTORIAL_CONFIG = """\
[global]
server.socket_host = "127.0.0.1"
server.socket_port = 8080
server.thread_pool = 10

[/]
tools.sessions.on = True
tools.staticdir.root = "/path/to/app"

[/static]
tools.staticdir.on = True
tools.staticdir.dir = "static"
"""

TUTORIAL_DICT = {
    "global": {
        "server.socket_host": "127.0.0.1",
        "server.socket_port": 8080,
        "server.thread_pool": 10,
    },
    "/": {"tools.sessions.on": True, "tools.staticdir.root": "/path/to/app"},
    "/static": {"tools.staticdir.on": True, "tools.staticdir.dir": "static"},
}


def write(tmp_path, text: str, name: str = "app.conf") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


# --------------------------------------------------------------- literals


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8080", 8080),
        ("-1", -1),
        ("+1.5", 1.5),
        ("1.5e3", 1500.0),
        ("0x1F", 31),
        ("1_000", 1000),
        ("2j", 2j),
        ("'single'", "single"),
        ('"double"', "double"),
        ('"""triple"""', "triple"),
        ('u"unicode"', "unicode"),
        ('"caf\\u00e9"', "café"),
        ("'it''s'", "its"),
        ('b"raw"', b"raw"),
        ("True", True),
        ("False", False),
        ("None", None),
        ("()", ()),
        ("(1,)", (1,)),
        ("(1, 'a', None)", (1, "a", None)),
        ("[]", []),
        ("[1, [2, 3]]", [1, [2, 3]]),
        ("{1, 2}", {1, 2}),
        ("{}", {}),
        ("{'a': [1, 2], 3: {'b': None}}", {"a": [1, 2], 3: {"b": None}}),
        ("1024 * 1024", 1048576),
        ("10 * 1024 * 1024", 10485760),
        ("10 - 3", 7),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("7 % 3", 1),
        ("-(2 + 3)", -5),
        ("1.5 * 2", 3.0),
        ("'text/' + 'html'", "text/html"),
        ("b'a' + b'b'", b"ab"),
        ("", ""),
        ("   ", ""),
        ("  42  ", 42),
        ("[1,\n2]", [1, 2]),
    ],
)
def test_literals(text: str, expected: object) -> None:
    value = parse_value(text)
    assert value == expected
    assert type(value) is type(expected)


def test_unrepr_is_parse_value() -> None:
    assert unrepr is parse_value


@pytest.mark.parametrize(
    ("text", "expected"),
    [("int", int), ("dict", dict), ("KeyError", KeyError), ("str.upper", str.upper)],
)
def test_builtin_classes(text: str, expected: object) -> None:
    assert parse_value(text) is expected


# ---------------------------------------------------- dotted names, calls


def test_dotted_names() -> None:
    assert parse_value("collections.OrderedDict") is collections.OrderedDict
    assert parse_value("os.path.join") is os.path.join
    assert parse_value("os") is os
    assert parse_value("datetime.timedelta") is datetime.timedelta


def test_dotted_name_imports_longest_module_prefix() -> None:
    # ``import xml`` does not import xml.etree.ElementTree: the submodule has
    # to be imported because it is a prefix of the name.
    from xml.etree import ElementTree

    assert parse_value("xml.etree.ElementTree.Element") is ElementTree.Element
    assert xml.etree.ElementTree is ElementTree


def test_subscripted_dotted_names() -> None:
    import http.client

    assert parse_value("http.client.responses[404]") == http.client.responses[404]
    assert parse_value("os.sep[-1]") == os.sep
    assert parse_value("string.ascii_letters[0][0]") == "a"


def test_import_call_is_another_spelling_of_a_module_name() -> None:
    assert parse_value("__import__('os.path', globals(), locals(), [''])") is os.path
    assert parse_value("__import__('xml.etree')") is xml
    assert parse_value("__import__('os', fromlist=['sep']).sep") == os.sep


def test_calls() -> None:
    assert parse_value("datetime.timedelta(seconds=5)") == datetime.timedelta(seconds=5)
    od = parse_value("collections.OrderedDict([('b', 1), ('a', 2)])")
    assert type(od) is collections.OrderedDict
    assert list(od) == ["b", "a"]
    assert parse_value("os.path.join('a', 'b')") == os.path.join("a", "b")
    assert parse_value("int('12')") == 12
    nested = parse_value("[datetime.timedelta(minutes=1 + 1), dict(a=(1, 2))]")
    assert nested == [datetime.timedelta(minutes=2), {"a": (1, 2)}]


def test_morello_dispatcher_call() -> None:
    dispatch = pytest.importorskip("morello.dispatch")
    assert type(parse_value("morello.dispatch.MethodDispatcher()")) is dispatch.MethodDispatcher


def test_cherrypy_prefixed_names_resolve_like_any_module() -> None:
    cherrypy = pytest.importorskip("cherrypy")
    dispatcher = parse_value("cherrypy.dispatch.MethodDispatcher()")
    assert type(dispatcher) is cherrypy.dispatch.MethodDispatcher


def test_resolve_name() -> None:
    assert resolve_name("collections.OrderedDict") is collections.OrderedDict
    with pytest.raises(ConfigError, match=r"cannot resolve 'collections\.Nope'.*no attribute"):
        resolve_name("collections.Nope")


def test_module_with_broken_import_is_reported(tmp_path, monkeypatch) -> None:
    pkg = tmp_path / "morello_cfg_broken_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import morello_cfg_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="morello_cfg_missing_dependency"):
        parse_value("morello_cfg_broken_pkg.Thing")


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("static", r"'static' is neither a builtin class nor an importable module"),
        ("no_such_module_xyz.Thing", r"'no_such_module_xyz' is neither"),
        ("os.no_such_attr", r"'os' has no attribute 'no_such_attr'"),
        ("__import__(os.sep)", r"the module name of __import__ must be a literal"),
        ("__import__('')", r"__import__ needs a module name, not ''"),
        ("__import__(fromlist=[])", r"__import__ needs a module name"),
        ("__import__('os', open('x'))", r"the globals of __import__ must be a literal"),
        ("__import__('os', None, None, [os.sep])", r"the fromlist of __import__ must be"),
        ("__import__('os', level=1)", r"relative imports \(level other than 0\)"),
        ("__import__('os', None, None, [], 0, 1)", r"__import__ takes name, globals"),
        ("__import__('os', nme='x')", r"__import__ takes name, globals"),
        ("globals()", r"'globals' is neither a builtin class"),
        ("eval('1')", r"'eval' is neither a builtin class"),
        ("open('/etc/passwd')", r"'open' is neither a builtin class"),
        ("lambda: 1", r"a lambda is not allowed"),
        ("'abc'.upper", r"attribute access on the literal 'abc'"),
        ("'abc'.upper()", r"attribute access on the literal 'abc'"),
        ("[1].pop", r"attribute access on a list literal"),
        ("[x for x in (1, 2)]", r"a comprehension is not allowed"),
        ("{x: 1 for x in ()}", r"a comprehension is not allowed"),
        ("(x for x in ())", r"a comprehension is not allowed"),
        ("os.__builtins__", r"dunder attributes such as '__builtins__'"),
        ("int.__subclasses__()", r"dunder attributes such as '__subclasses__'"),
        ("f'{1}'", r"an f-string is not allowed"),
        ("{'a': 1}['a']", r"only a dotted name may be subscripted, not a dict literal"),
        ("int('1')[0]", r"only a dotted name may be subscripted, not a call result"),
        ("os.environ[os.sep]", r"a subscript must be a literal, not 'os.sep'"),
        ("os.sep[0:1]", r"a subscript must be a literal, not '0:1'"),
        ("os.environ['MORELLO_NO_SUCH_VARIABLE']", r"KeyError"),
        ("1 if True else 2", r"the expression '1 if True else 2' is not allowed"),
        ("1 < 2", r"is not allowed"),
        ("not True", r"the operator 'not' is not allowed"),
        ("2 ** 1000000", r"the operator '\*\*' is not allowed"),
        ("'-' * 80", r"'\*' only combines numbers"),
        ("'%s' % 1", r"'%' only combines numbers"),
        ("'a' + b'b'", r"'\+' only combines numbers"),
        ("-'a'", r"unary '-' needs a number"),
        ("...", r"the constant Ellipsis is not allowed"),
        ("[*'ab']", r"'\*' unpacking is not allowed"),
        ("{**{}}", r"'\*\*' unpacking is not allowed in a dict"),
        ("dict(**[1])", r"'\*\*' in a call needs a dict with string keys"),
        ("dict(**{1: 2})", r"'\*\*' in a call needs a dict with string keys"),
        ("os.sep()", r"'os.sep' is not callable"),
        ("int('x')", r"ValueError: invalid literal"),
        ("1 / 0", r"ZeroDivisionError"),
        ("1; import os", r"not a Python expression"),
        ("x = 1", r"not a Python expression"),
        ("[1, 2", r"not a Python expression"),
        ("'a\x00'", r"not a Python expression"),
    ],
)
def test_rejected_values(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_value(text)
    assert repr(text) in str(info.value)
    assert isinstance(info.value, ValueError)


# ------------------------------------------------------------ load / files


def test_tutorial_config_from_filename(tmp_path) -> None:
    path = write(tmp_path, TUTORIAL_CONFIG)
    assert load(path) == TUTORIAL_DICT
    assert load(tmp_path / "app.conf") == TUTORIAL_DICT
    assert load(os.fsencode(path)) == TUTORIAL_DICT


def test_tutorial_config_round_trip(tmp_path) -> None:
    # Writing the loaded values back with repr() yields the same config.
    loaded = load(io.StringIO(TUTORIAL_CONFIG))
    lines = []
    for section, values in loaded.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {value!r}" for key, value in values.items())
    assert load(io.StringIO("\n".join(lines))) == loaded == TUTORIAL_DICT


def test_load_open_file(tmp_path) -> None:
    path = write(tmp_path, TUTORIAL_CONFIG)
    with open(path, encoding="utf-8") as f:
        assert load(f) == TUTORIAL_DICT


def test_load_dict_returns_copy() -> None:
    source = {"/": {"tools.gzip.on": True}, "flat.key": 1}
    loaded = load(source)
    assert loaded == source
    loaded["/"]["tools.gzip.on"] = False
    loaded["new"] = {}
    assert source == {"/": {"tools.gzip.on": True}, "flat.key": 1}
    assert as_dict is load


def test_load_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        load(42)  # type: ignore[arg-type]


def test_keys_keep_case_and_dots() -> None:
    loaded = load(io.StringIO("[/Path]\nTools.StaticDir.On: True\n# comment\n; other\n"))
    assert loaded == {"/Path": {"Tools.StaticDir.On": True}}


def test_inline_comment_is_part_of_the_value() -> None:
    # Like CherryPy: no inline comments, so this is a (bad) value, not 1.
    with pytest.raises(ConfigError, match="not a Python expression"):
        load(io.StringIO("[s]\nkey = 1 ; comment\n"))
    assert load(io.StringIO("[s]\nkey = 1 # comment\n")) == {"s": {"key": 1}}


def test_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        load(str(tmp_path / "missing.conf"))


def test_error_names_file_section_key_and_value(tmp_path) -> None:
    path = write(tmp_path, "[/static]\ntools.staticdir.dir = static\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert repr(path) in message
    assert "[/static]" in message
    assert "'tools.staticdir.dir'" in message
    assert "cannot parse value 'static'" in message
    assert "must be quoted" in message


def test_ini_syntax_error_names_file(tmp_path) -> None:
    path = write(tmp_path, "key = 1\n")
    with pytest.raises(ConfigError, match=r"config file '.*app\.conf': File contains no section"):
        load(path)
    with pytest.raises(ConfigError, match=r"config file '<stream>': .*section 'a' already exists"):
        load(io.StringIO("[a]\nkey = 1\n[a]\n"))


# ----------------------------------------------------------- interpolation


def test_interpolation_within_section_and_default() -> None:
    text = """\
    [DEFAULT]
    port = 8080

    [global]
    server.socket_port = %(port)s
    base = "/srv"
    # Interpolation is textual: join the quoted value with another string.
    tools.staticdir.root = %(base)s + "/app"
    url = "http://localhost:%(port)s/"
    log.format = "100%% literal"
    """
    loaded = load(io.StringIO(textwrap.dedent(text)))
    assert loaded == {
        "global": {
            "server.socket_port": 8080,
            "base": "/srv",
            "tools.staticdir.root": "/srv/app",
            "url": "http://localhost:8080/",
            "log.format": "100% literal",
            # [DEFAULT] keys show up in every section, like configparser's.
            "port": 8080,
        }
    }


def test_interpolation_does_not_cross_sections() -> None:
    text = "[a]\nx = 1\n[b]\ny = %(x)s\n"
    with pytest.raises(ConfigError, match=r"section \[b\], key 'y'.*interpolation key 'x'"):
        load(io.StringIO(text))


def test_parser_raw_and_vars() -> None:
    parser = Parser()
    parser.read_string('[a]\nx = "%(name)s"\ny = 2\n')
    assert parser.as_dict(raw=True) == {"a": {"x": "%(name)s", "y": 2}}
    assert parser.as_dict(vars={"name": "bob"}) == {"a": {"x": "bob", "y": 2}}


# ---------------------------------------------------------------- Parser


def test_parser_read_many_files_later_wins(tmp_path) -> None:
    first = write(tmp_path, "[a]\nx = 1\ny = 1\n", "first.conf")
    second = write(tmp_path, "[a]\ny = 2\n[b]\nz = 'z'\n", "second.conf")
    parser = Parser()
    assert parser.read([first, second]) == [first, second]
    assert parser.as_dict() == {"a": {"x": 1, "y": 2}, "b": {"z": "z"}}


def test_parser_read_missing_file_raises(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        Parser().read(str(tmp_path / "missing.conf"))


def test_parser_dict_from_file_and_load(tmp_path) -> None:
    path = write(tmp_path, TUTORIAL_CONFIG)
    assert Parser().dict_from_file(path) == TUTORIAL_DICT
    assert Parser().dict_from_file(io.StringIO(TUTORIAL_CONFIG)) == TUTORIAL_DICT
    assert Parser.load(path) == TUTORIAL_DICT
    assert Parser.load({"/": {"a": 1}}) == {"/": {"a": 1}}


def test_reprconf_reexports() -> None:
    from morello.configfile import resolve_name
    from morello.lib import reprconf

    assert reprconf.unrepr is parse_value
    assert reprconf.Parser is Parser
    assert reprconf.as_dict is load
    assert reprconf.attributes is resolve_name
    assert reprconf.modules("os.path") is os.path


# ------------------------------------------------------------------ merge


def test_merge_updates_sections_key_by_key(tmp_path) -> None:
    base = {"/": {"tools.sessions.on": True, "a": 1}, "/keep": {"b": 2}}
    merge(base, {"/": {"a": 10, "c": 3}, "/new": {"d": 4}})
    assert base == {
        "/": {"tools.sessions.on": True, "a": 10, "c": 3},
        "/keep": {"b": 2},
        "/new": {"d": 4},
    }
    merge(base, write(tmp_path, "[/new]\nd = 40\n"))
    assert base["/new"] == {"d": 40}


def test_merge_does_not_share_dicts_with_source() -> None:
    other = {"/": {"a": 1}}
    base: dict = {}
    merge(base, other)
    base["/"]["a"] = 2
    assert other == {"/": {"a": 1}}


def test_merge_flat_config_is_rejected_without_changes() -> None:
    base = {"/": {"a": 1}}
    with pytest.raises(ConfigError, match="section headers"):
        merge(base, {"/x": {"b": 2}, "tools.gzip.on": True})
    assert base == {"/": {"a": 1}}


# ---------------------------------------------------- CherryPy differential

DIFFERENTIAL_CONFIGS = [
    TUTORIAL_CONFIG,
    """\
    [global]
    server.socket_port = 8080
    server.max_request_body_size = 10 * 1024 * 1024
    log.error_file = ""
    engine.autoreload.on = False
    checker.on = None
    offset = -5
    ratio = 0.75
    name: 'colon delimiter'
    empty =
    """,
    """\
    [/]
    tools.encode.encoding = "utf-8"
    tools.response_headers.headers = [("X-Frame-Options", "DENY"), ("X-A", "b")]
    tools.auth.users = {"alice": "secret", "bob": "other"}
    request.methods_with_bodies = ("POST", "PUT", "PATCH")
    blob = b"bytes"
    joined = "text/" + "html"
    multi = [1,
        2,
        3]
    Mixed.Case.Key = 'kept'
    """,
    """\
    [DEFAULT]
    port = 8080
    base = "/srv"

    [global]
    server.socket_port = %(port)s
    url = "http://localhost:%(port)s/"

    [/static]
    tools.staticdir.root = %(base)s + "/app"
    percent = "100%%"
    """,
    """\
    [/]
    timeout = datetime.timedelta(seconds=5)
    ordered = collections.OrderedDict([("a", 1), ("b", 2)])
    storage = cherrypy.lib.sessions.RamSession
    join = os.path.join
    kind = int
    """,
    """\
    [/]
    reason = http.client.responses[404]
    nested = string.ascii_letters[-1]
    separator = os.path.sep[0]
    """,
    """\
    [/]
    before = dict(foo="buzz", **{"foo": "bar", "fizz": "buzz"})
    after = dict(**{"foo": "bar", "fizz": "buzz"}, foo="buzz")
    first = dict(**{"a": 1}, **{"a": 2, "b": 3})
    """,
    """\
    [/]
    fromlist = __import__('os.path', globals(), locals(), ['']).sep
    package = __import__('os.path').path.sep
    module = __import__('collections', None, None, ['OrderedDict'], 0)
    """,
]


@pytest.mark.parametrize("text", DIFFERENTIAL_CONFIGS)
def test_same_result_as_cherrypy(text: str) -> None:
    reprconf = pytest.importorskip("cherrypy.lib.reprconf")
    text = textwrap.dedent(text)
    expected = reprconf.Parser().dict_from_file(io.StringIO(text))
    assert load(io.StringIO(text)) == expected


@pytest.mark.parametrize(
    "text", ["bare_word", "os.no_such_attr", "[1, 2", "'abc' * 'x'", "__import__('no_mod')"]
)
def test_rejected_like_cherrypy(text: str) -> None:
    reprconf = pytest.importorskip("cherrypy.lib.reprconf")
    source = f"[s]\nkey = {text}\n"
    with pytest.raises(ValueError):
        reprconf.Parser().dict_from_file(io.StringIO(source))
    with pytest.raises(ConfigError):
        load(io.StringIO(source))
