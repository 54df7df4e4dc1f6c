"""A module whose import fails: it needs a package that does not exist."""

import morello_no_such_dependency  # noqa: F401
