"""Process management: the engine bus and the plugins that hook into it."""

from . import bus, plugins

# CherryPy code imports the bus module as ``cherrypy.process.wspbus``.
wspbus = bus

__all__ = ["bus", "plugins", "wspbus"]
