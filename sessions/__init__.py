"""Sessions: one session tool, four stores (RAM, file, memcached, Redis).

``tools.sessions`` (:mod:`.tool`) gives each request ``morello.session``;
:mod:`.base` defines the session, the storage API and the optimistic merge;
:mod:`.ram`, :mod:`.file`, :mod:`.memcached_store` and :mod:`.redis_store`
are the stores (:mod:`.hosts` reads their ``host:port`` settings);
:mod:`.codec` is how data is stored and :mod:`.auth` the
``tools.session_auth`` login flow.
"""
