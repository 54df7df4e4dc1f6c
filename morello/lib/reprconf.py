"""The config-file parser under its CherryPy name, ``cherrypy.lib.reprconf``.

Everything here lives in :mod:`morello.configfile`; this module only keeps
imports written against CherryPy working.
"""

from __future__ import annotations

from importlib import import_module as modules

from morello.configfile import Parser, as_dict, resolve_name, unrepr

#: Return the object a dotted name refers to (CherryPy's name).
attributes = resolve_name

__all__ = ["Parser", "as_dict", "attributes", "modules", "unrepr"]
