"""``python -m morello``: CherryPy's ``cherryd`` (see :mod:`morello.daemon`).

The prefork server is the ``morello`` command (``python -m morello.master``).
"""

from morello.daemon import main

if __name__ == "__main__":
    main()
