"""A module that takes long to import, to signal a worker while it boots."""

import time

import worker_apps

time.sleep(10)

root = worker_apps.Root()
