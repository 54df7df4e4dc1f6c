"""Load tests: a demo app (``app.py``), locust users (``locustfile.py``) and a runner
(``python -m loadtests``, ``runner.py``) that serves the app with prefork workers."""
