"""``python -m loadtests``: see :mod:`loadtests.runner` and README's "Load tests"."""

import sys

from .runner import main

sys.exit(main())
