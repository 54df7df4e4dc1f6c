pytest_plugins = [
    "morello.testing",
    "bus_support",
    "store_servers",
    "control_support",
]
