"""``python -m tests.cherrypy_suite``: see the package's docstring."""

import sys

from . import main

sys.exit(main())
