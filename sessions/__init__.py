"""Sessions: one session tool, four stores (RAM, file, memcached, Redis)."""
