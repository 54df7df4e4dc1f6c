"""Import shim: ``import cherrypy`` gives the framework under test.

The runner copies this file to ``<work>/cherrypy/__init__.py`` beside the
CherryPy sdist's ``cherrypy/test`` folder and puts ``<work>`` on sys.path
(CherryPy's helper does the same for the servers it spawns). The
``CHERRYPY_SUITE_TARGET`` environment variable picks the framework:

``morello``
    ``cherrypy`` is the module ``morello`` and ``cherrypy.X`` is
    ``morello.X`` itself (not a copy), except the few CherryPy-private
    modules in ``SDIST_PRIVATE``, which are served from the sdist's files
    laid beside this one.
``cherrypy``
    the real CherryPy, found on sys.path without ``<work>`` (or in
    ``CHERRYPY_SUITE_REFERENCE_PATH`` when that is set).

Either way ``cherrypy.test`` and ``cherrypy.tutorial`` (the suite and the
apps it tests) come from the sdist's files here.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.dirname(HERE)
#: Packages of the sdist served to both frameworks.
SDIST_PACKAGES = ("cherrypy.test", "cherrypy.tutorial")
#: CherryPy-private modules the test helper needs, which morello does not
#: promise: morello's run gets the sdist's own files.
SDIST_PRIVATE = ("cherrypy._cpcompat", "cherrypy.lib.gctools")


class SdistFinder(importlib.abc.MetaPathFinder):
    """Find the given ``cherrypy.*`` modules among the files laid beside this one."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if not any(name == n or name.startswith(n + ".") for n in self.names):
            return None
        parts = name.split(".")[1:]
        base = os.path.join(HERE, *parts)
        if os.path.isdir(base):
            init = os.path.join(base, "__init__.py")
            return importlib.util.spec_from_file_location(
                name, init, submodule_search_locations=[base]
            )
        if os.path.isfile(base + ".py"):
            return importlib.util.spec_from_file_location(name, base + ".py")
        return None


class MorelloAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import ``cherrypy.X`` as the module ``morello.X`` itself."""

    def __init__(self) -> None:
        self.specs: dict[str, Any] = {}

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if not name.startswith("cherrypy."):
            return None
        try:
            morello_spec = importlib.util.find_spec("morello" + name[len("cherrypy") :])
        except ModuleNotFoundError:
            return None
        if morello_spec is None:
            return None
        is_package = morello_spec.submodule_search_locations is not None
        return importlib.util.spec_from_loader(name, self, is_package=is_package)

    def create_module(self, spec: Any) -> ModuleType:
        module = importlib.import_module("morello" + spec.name[len("cherrypy") :])
        # The import system is about to stamp our spec on morello's module.
        self.specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Already executed as morello's: only give its own spec back."""
        module.__spec__ = self.specs.pop(module.__spec__.name)

    def get_code(self, name: str) -> Any:
        """The code of morello's module: ``python -m cherrypy`` runs ``morello.__main__``."""
        spec = importlib.util.find_spec("morello" + name[len("cherrypy") :])
        return spec.loader.get_code(spec.name)


def load_real_cherrypy() -> ModuleType:
    """Import the real CherryPy package as ``cherrypy``, skipping this shim."""
    reference = os.environ.get("CHERRYPY_SUITE_REFERENCE_PATH")
    search = [reference] if reference else [p for p in sys.path if p and p != WORK]
    spec = importlib.machinery.PathFinder.find_spec("cherrypy", search)
    if spec is None:
        raise ImportError("the real CherryPy is not installed")
    module = importlib.util.module_from_spec(spec)
    sys.modules["cherrypy"] = module
    spec.loader.exec_module(module)
    return module


def install() -> None:
    """Put the framework chosen by CHERRYPY_SUITE_TARGET in sys.modules['cherrypy']."""
    target = os.environ.get("CHERRYPY_SUITE_TARGET", "morello")
    if target == "morello":
        sys.meta_path[:0] = [SdistFinder(SDIST_PACKAGES + SDIST_PRIVATE), MorelloAlias()]
        import morello

        sys.modules["cherrypy"] = morello
        # ``from cherrypy.lib import gctools`` looks up ``morello.lib.gctools``
        # once morello.lib lacks the attribute: import the sdist's modules
        # now, which sets them as attributes of their morello parents.
        for name in SDIST_PACKAGES + SDIST_PRIVATE:
            importlib.import_module(name)
    elif target == "cherrypy":
        sys.meta_path.insert(0, SdistFinder(SDIST_PACKAGES))
        load_real_cherrypy()
    else:
        raise ImportError(f"CHERRYPY_SUITE_TARGET must be morello or cherrypy, not {target!r}")


install()
