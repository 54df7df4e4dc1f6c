"""Sessions: one session tool, four stores (RAM, file, memcached, Redis).

``tools.sessions`` (:mod:`.tool`) gives each request ``morello.session``;
:mod:`.base` defines the session and the storage API, :mod:`.ram` and
:mod:`.file` the stores, :mod:`.codec` how data is stored and
:mod:`.auth` the ``tools.session_auth`` login flow.
"""
