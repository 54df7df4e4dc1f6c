pytest_plugins = ["morello.testing"]
