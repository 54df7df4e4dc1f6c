"""Config files: INI sections whose values are Python literals.

A config file looks like this::

    [global]
    server.socket_port = 8080
    server.max_request_body_size = 10 * 1024 * 1024

    [/]
    request.dispatch = morello.dispatch.MethodDispatcher()

Every value is parsed by :func:`parse_value`, which reads the text with
:mod:`ast` and evaluates a small, fixed set of expression forms itself: it
never hands text to ``eval``. Besides literals it resolves dotted names of
importable objects and calls them, so a config file can still run the code of
whatever it names: treat config files as trusted, like source code.

Within a file, ``%(name)s`` refers to another key of the same section or of the
``[DEFAULT]`` section (:class:`configparser.BasicInterpolation`); write ``%%``
for a literal percent sign. Keys of ``[DEFAULT]`` appear in every section.
"""

from __future__ import annotations

import ast
import builtins
import configparser
import importlib
import operator
import os
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any, Union

__all__ = [
    "ConfigError",
    "ConfigSource",
    "Parser",
    "as_dict",
    "load",
    "merge",
    "parse_value",
    "resolve_name",
    "unrepr",
]

#: What :func:`load` accepts: a filename, an open text file or a ready dict.
ConfigSource = Union[str, bytes, "os.PathLike[str]", IO[str], Mapping[str, Any]]


class ConfigError(ValueError):
    """A config file, section or value could not be understood."""


class _Rejected(Exception):
    """Internal: the expression uses a form config values may not use."""


_NUMBER = (int, float, complex)
_CONSTANT = (str, bytes, int, float, complex, bool, type(None))

_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_ARITHMETIC: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}


def parse_value(text: str) -> object:
    """Return the Python object a config value spells.

    Accepted forms: str/bytes/number/bool/None literals; tuples, lists, sets
    and dicts of accepted forms; unary ``+``/``-`` and ``+ - * / // %`` on
    numbers; ``+`` between two strings (or two bytes); builtin classes such
    as ``int``; dotted names of importable objects (``collections.OrderedDict``,
    ``package.module.Class``), subscripted by a literal
    (``http.client.responses[404]``); and calls of such names whose arguments
    are accepted forms (``datetime.timedelta(seconds=5)``), keywords included
    as ``**`` of a dict with string keys (``VirtualHost(**{"a.example": "/a"})``);
    a keyword written out wins over the same key in a ``**`` dict, and the
    first ``**`` dict wins over later ones. ``__import__('pkg.mod', globals(),
    locals(), [''])`` is read as another spelling of the name ``pkg.mod``.
    An empty value is the empty string. Anything else raises :class:`ConfigError`.
    """
    stripped = text.strip()
    if not stripped:
        return ""
    try:
        tree = ast.parse(stripped, mode="eval")
    except (SyntaxError, ValueError) as exc:  # ValueError: NUL bytes
        reason = exc.msg if isinstance(exc, SyntaxError) else exc
        raise ConfigError(
            f"cannot parse value {text!r}: not a Python expression ({reason})"
        ) from None
    try:
        return _evaluate(tree.body)
    except _Rejected as exc:
        raise ConfigError(f"cannot parse value {text!r}: {exc}") from None
    except Exception as exc:
        # Raised by an import or a call the value asked for.
        raise ConfigError(f"cannot parse value {text!r}: {type(exc).__name__}: {exc}") from exc


#: CherryPy's name for :func:`parse_value`.
unrepr = parse_value


def _evaluate(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, _CONSTANT):
            raise _Rejected(f"the constant {node.value!r} is not allowed")
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_evaluate_items(node.elts))
    if isinstance(node, ast.List):
        return _evaluate_items(node.elts)
    if isinstance(node, ast.Set):
        return set(_evaluate_items(node.elts))
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise _Rejected("'**' unpacking is not allowed in a dict")
        pairs = zip(node.keys, node.values, strict=True)
        return {_evaluate(k): _evaluate(v) for k, v in pairs}  # type: ignore[arg-type]
    if isinstance(node, ast.UnaryOp):
        return _evaluate_unary(node)
    if isinstance(node, ast.BinOp):
        return _evaluate_binary(node)
    if isinstance(node, (ast.Name, ast.Attribute)) or _is_import(node):
        return _resolve(_dotted_name(node))
    if isinstance(node, ast.Subscript):
        return _evaluate_subscript(node)
    if isinstance(node, ast.Call):
        return _evaluate_call(node)
    raise _Rejected(f"{_describe(node)} is not allowed")


def _evaluate_items(nodes: Iterable[ast.expr]) -> list[Any]:
    items = []
    for node in nodes:
        if isinstance(node, ast.Starred):
            raise _Rejected("'*' unpacking is not allowed")
        items.append(_evaluate(node))
    return items


def _evaluate_unary(node: ast.UnaryOp) -> Any:
    op = _UNARY.get(type(node.op))
    if op is None:
        raise _Rejected(f"the operator {_symbol(node.op)!r} is not allowed")
    operand = _evaluate(node.operand)
    if not isinstance(operand, _NUMBER):
        raise _Rejected(f"unary {_symbol(node.op)!r} needs a number, not {operand!r}")
    return op(operand)


def _evaluate_binary(node: ast.BinOp) -> Any:
    op = _ARITHMETIC.get(type(node.op))
    if op is None:
        raise _Rejected(f"the operator {_symbol(node.op)!r} is not allowed")
    left, right = _evaluate(node.left), _evaluate(node.right)
    numbers = isinstance(left, _NUMBER) and isinstance(right, _NUMBER)
    # '+' also joins two strings; repetition ("x" * n) and '%' formatting are
    # left out so a value cannot blow up in size or run format code.
    joined = (
        isinstance(node.op, ast.Add)
        and isinstance(left, (str, bytes))
        and type(left) is type(right)
    )
    if not (numbers or joined):
        raise _Rejected(
            f"{_symbol(node.op)!r} only combines numbers (or joins two strings), "
            f"not {left!r} and {right!r}"
        )
    return op(left, right)


def _evaluate_subscript(node: ast.Subscript) -> Any:
    # Only names of importable objects, so that a value reads a table
    # (response_codes[404]) but cannot index what a call returned.
    if not isinstance(node.value, (ast.Name, ast.Attribute, ast.Subscript)):
        raise _Rejected(f"only a dotted name may be subscripted, not {_describe(node.value)}")
    key = _literal(node.slice, "a subscript")
    return _evaluate(node.value)[key]


def _literal(node: ast.expr, what: str) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise _Rejected(f"{what} must be a literal, not {ast.unparse(node)!r}") from None


def _evaluate_call(node: ast.Call) -> Any:
    if not isinstance(node.func, (ast.Name, ast.Attribute)):
        raise _Rejected("only dotted names may be called")
    name = _dotted_name(node.func)
    func = _resolve(name)
    if not callable(func):
        raise _Rejected(f"{name!r} is not callable")
    args = _evaluate_items(node.args)
    kwargs = {}
    unpacked = []
    for keyword in node.keywords:
        value = _evaluate(keyword.value)
        if keyword.arg is not None:
            kwargs[keyword.arg] = value
        # '**{...}' passes keywords that are not identifiers, such as the
        # host names of VirtualHost(**{"www.example.com": "/www"}).
        elif isinstance(value, dict) and all(isinstance(key, str) for key in value):
            unpacked.append(value)
        else:
            raise _Rejected(f"'**' in a call needs a dict with string keys, not {value!r}")
    # Where Python would refuse a key given twice, CherryPy's config keeps the
    # written-out keyword, else the first '**' dict's value; files rely on it.
    for extra in unpacked:
        for key, value in extra.items():
            kwargs.setdefault(key, value)
    return func(*args, **kwargs)


def _dotted_name(node: ast.expr) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if _is_import(node):
        parts.append(_imported_name(node))  # type: ignore[arg-type]
    elif isinstance(node, ast.Name):
        parts.append(node.id)
    else:
        raise _Rejected(f"attribute access on {_describe(node)} is not allowed")
    return ".".join(reversed(parts))


def _is_import(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "__import__"
    )


_IMPORT_PARAMETERS = ("name", "globals", "locals", "fromlist", "level")


def _imported_name(node: ast.Call) -> str:
    """The dotted name ``__import__(...)`` stands for: it imports, nothing more."""
    if len(node.args) > len(_IMPORT_PARAMETERS) or any(
        isinstance(arg, ast.Starred) for arg in node.args
    ):
        raise _Rejected("__import__ takes name, globals, locals, fromlist and level")
    given = dict(zip(_IMPORT_PARAMETERS, node.args, strict=False))
    for keyword in node.keywords:
        if keyword.arg not in _IMPORT_PARAMETERS or keyword.arg in given:
            raise _Rejected("__import__ takes name, globals, locals, fromlist and level")
        given[keyword.arg] = keyword.value
    if "name" not in given:
        raise _Rejected("__import__ needs a module name")
    name = _literal(given["name"], "the module name of __import__")
    if not isinstance(name, str) or not name:
        raise _Rejected(f"__import__ needs a module name, not {name!r}")
    # globals and locals only matter to relative imports, which are refused:
    # they are taken as written, globals() or locals() or a literal.
    for namespace in ("globals", "locals"):
        if namespace in given and not _is_namespace(given[namespace]):
            _literal(given[namespace], f"the {namespace} of __import__")
    if "level" in given and _literal(given["level"], "the level of __import__") != 0:
        raise _Rejected("relative imports (level other than 0) are not allowed")
    fromlist = given.get("fromlist")
    if fromlist is not None:
        fromlist = _literal(fromlist, "the fromlist of __import__")
    # Like Python: with an empty fromlist the top-level package is the result.
    return name if fromlist else name.partition(".")[0]


def _is_namespace(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("globals", "locals")
        and not node.args
        and not node.keywords
    )


def resolve_name(name: str) -> Any:
    """Return the object a dotted name refers to.

    A single builtin class name (``int``, ``dict``, ``KeyError``) is that
    class. Otherwise the longest importable prefix of ``name`` is imported
    as a module and the remaining parts are looked up as attributes. Dunder
    attributes are refused so that a value cannot reach interpreter
    internals through them. Raises :class:`ConfigError` if nothing matches.
    """
    try:
        return _resolve(name)
    except _Rejected as exc:
        raise ConfigError(f"cannot resolve {name!r}: {exc}") from None


def _resolve(name: str) -> Any:
    parts = name.split(".")
    root = getattr(builtins, parts[0], None)
    if isinstance(root, type):
        target, consumed = root, 1
    else:
        target, consumed = _import_longest_prefix(parts)
    for index in range(consumed, len(parts)):
        attr = parts[index]
        if attr.startswith("__") and attr.endswith("__"):
            raise _Rejected(f"dunder attributes such as {attr!r} are not allowed")
        is_package = hasattr(target, "__path__")
        try:
            target = getattr(target, attr)
        except AttributeError:
            owner = ".".join(parts[:index])
            raise _Rejected(
                f"{owner!r} has no attribute {attr!r}"
                + (f" and there is no module '{owner}.{attr}'" if is_package else "")
            ) from None
    return target


def _import_longest_prefix(parts: list[str]) -> tuple[Any, int]:
    for count in range(len(parts), 0, -1):
        module_name = ".".join(parts[:count])
        try:
            return importlib.import_module(module_name), count
        except ModuleNotFoundError as exc:
            # Only "this prefix does not exist" means: try a shorter one. A
            # module that exists but fails to import its own dependencies is
            # a real error and must surface.
            missing = exc.name or ""
            if module_name != missing and not module_name.startswith(missing + "."):
                raise
    raise _Rejected(
        f"the name {parts[0]!r} is neither a builtin class nor an importable module"
        + (" (a bare word must be quoted to be a string)" if len(parts) == 1 else "")
    )


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Lambda):
        return "a lambda"
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        return "a comprehension"
    if isinstance(node, ast.Subscript):
        return "subscripting"
    if isinstance(node, ast.Constant):
        return f"the literal {node.value!r}"
    if isinstance(node, ast.JoinedStr):
        return "an f-string"
    if isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
        return f"a {type(node).__name__.lower()} literal"
    if isinstance(node, ast.Call):
        return "a call result"
    return f"the expression {ast.unparse(node)!r}"


def _symbol(op: ast.AST) -> str:
    symbols = {
        ast.UAdd: "+", ast.USub: "-", ast.Not: "not", ast.Invert: "~",
        ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
        ast.Mod: "%", ast.Pow: "**", ast.LShift: "<<", ast.RShift: ">>",
        ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^", ast.MatMult: "@",
    }  # fmt: skip
    return symbols.get(type(op), type(op).__name__)


class Parser(configparser.ConfigParser):
    """An INI reader for config files (``cherrypy.lib.reprconf.Parser``).

    Unlike a plain :class:`configparser.ConfigParser` it keeps the case of
    keys, fails on files it cannot open, and :meth:`as_dict` parses every
    value with :func:`parse_value`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Names of the files (or streams) read so far, for error messages.
        self.sources: list[str] = []

    def optionxform(self, optionstr: str) -> str:
        return optionstr

    def read(  # type: ignore[override]
        self,
        filenames: str | bytes | os.PathLike[str] | Iterable[str | bytes | os.PathLike[str]],
        encoding: str | None = "utf-8",
    ) -> list[str]:
        """Read one or more files, raising :class:`OSError` for a missing one."""
        if isinstance(filenames, (str, bytes, os.PathLike)):
            filenames = [filenames]
        names = []
        for filename in filenames:
            name = os.fsdecode(filename)
            with open(filename, encoding=encoding) as fp:
                self.read_file(fp, name)
            names.append(name)
        return names

    def read_file(self, f: Iterable[str], source: str | None = None) -> None:
        """Read an open text file, naming it in any error."""
        name = source or str(getattr(f, "name", "") or "<stream>")
        self.sources.append(name)
        try:
            super().read_file(f, name)
        except configparser.Error as exc:
            raise ConfigError(f"config file {name!r}: {exc.message}") from exc

    def as_dict(
        self, raw: bool = False, vars: Mapping[str, str] | None = None
    ) -> dict[str, dict[str, object]]:
        """Return ``{section: {key: parsed value}}`` for every section."""
        result: dict[str, dict[str, object]] = {}
        for section in self.sections():
            values = result.setdefault(section, {})
            for key in self.options(section):
                try:
                    text = self.get(section, key, raw=raw, vars=vars)
                    values[key] = parse_value(text)
                except configparser.InterpolationError as exc:
                    raise ConfigError(f"{self._where(section, key)}: {exc.message}") from exc
                except ConfigError as exc:
                    raise ConfigError(f"{self._where(section, key)}: {exc}") from exc
        return result

    def dict_from_file(self, file: str | bytes | os.PathLike[str] | IO[str]) -> dict[str, Any]:
        """Read a filename or an open file and return :meth:`as_dict`."""
        if hasattr(file, "read"):
            self.read_file(file)  # type: ignore[arg-type]
        else:
            self.read(file)  # type: ignore[arg-type]
        return self.as_dict()

    @classmethod
    def load(cls, source: ConfigSource) -> dict[str, Any]:
        """Resolve a filename, open file or dict to a dict (see :func:`load`)."""
        return load(source)

    def _where(self, section: str, key: str) -> str:
        files = ", ".join(repr(name) for name in self.sources) or "<no file>"
        return f"config file {files}, section [{section}], key {key!r}"


def load(source: ConfigSource) -> dict[str, Any]:
    """Return the config ``source`` spells as a dict.

    A filename (``str``, ``bytes`` or path-like) or an open text file is
    parsed with :class:`Parser` into ``{section: {key: value}}``. A mapping is
    copied one level deep (every mapping value is copied too) so that the
    caller may update the result without touching ``source``.
    """
    if isinstance(source, Mapping):
        return {
            key: dict(value) if isinstance(value, Mapping) else value
            for key, value in source.items()
        }
    if isinstance(source, (str, bytes, os.PathLike)) or hasattr(source, "read"):
        return Parser().dict_from_file(source)
    raise TypeError(f"expected a filename, an open file or a dict, not {source!r}")


#: CherryPy 3's name for :func:`load`.
as_dict = load


def merge(base: dict[str, Any], other: ConfigSource) -> None:
    """Merge an application config (dict, filename or file) into ``base``.

    Sections present in both are updated key by key rather than replaced.
    ``other`` must be made of sections: ``{'/': {...}}``, not a flat dict.
    """
    sections = load(other)
    for section, values in sections.items():
        if not isinstance(values, dict):
            raise ConfigError(
                f"application config needs section headers, but {section!r} maps to "
                f"{values!r}; wrap a flat config in a dict keyed by path, for example "
                "{'/': config}"
            )
    for section, values in sections.items():
        base.setdefault(section, {}).update(values)
