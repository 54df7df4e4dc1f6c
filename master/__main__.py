"""``python -m morello.master``: the same as the ``morello`` command."""

import sys

from .cli import main

sys.exit(main())
