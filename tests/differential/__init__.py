"""Differential tests: the same CherryPy application served by morello and by CherryPy 18."""
