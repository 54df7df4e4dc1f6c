"""The ``deploy/`` recipes: parsed, cross-checked, and run for real where this machine can.

Everything that only needs the files runs everywhere: the YAML parses, the
Kubernetes objects and the compose services are the expected ones, the
morello config files pass morello's own parser and ``master.settings``, every
``morello serve`` command line in the recipes parses with
``settings_from_args``, and the ports, paths and timeouts agree across recipes.

Checks that need a program run when it is installed and are skipped otherwise
(``./dev test`` installs nginx, redis-server and memcached when run as root):
``systemd-analyze verify`` on the units, ``nginx -t`` on the nginx recipe,
``kubectl kustomize`` on the Kubernetes folder, and an end-to-end run of nginx
(as the current user, in a temporary prefix, on loopback ports) in front of
two real ``morello serve`` masters sharing Redis sessions.

Not checkable here: building the image and running compose (no Docker
daemon), applying the manifests to a cluster, and systemd actually starting
the units (no systemd as PID 1). The unit's NotifyAccess choice is checked
against the notifications a real master sends during a USR2 upgrade, fed to
a model of how systemd accepts them.
"""

from __future__ import annotations

import http.server
import ipaddress
import os
import pwd
import re
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import yaml
from morello.master.arbiter import FAST_STOP_GRACE
from morello.master.cli import settings_from_args
from morello.master.ctl import process_gone
from morello.master.settings import from_config_file
from prefork_support import DEADLINE, MasterProcess, free_port, wait_for, write_app

from morello.configfile import load as load_config
from morello.lib.trusted_proxies import parse_trusted, trusts

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
SYSTEMD = DEPLOY / "systemd"
SERVICE = SYSTEMD / "morello.service"
SOCKET = SYSTEMD / "morello.socket"
SYSTEMD_CONF = SYSTEMD / "morello.conf"
SYSTEMD_ENV = SYSTEMD / "morello.env"
NGINX_CONF = DEPLOY / "nginx" / "morello.conf"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DOCKER_CONF = DEPLOY / "docker" / "morello.conf"
COMPOSE = DEPLOY / "docker" / "compose.yaml"
KUBERNETES = DEPLOY / "kubernetes"
DEMO = REPO / "examples" / "demo"

#: What every recipe serves, and where.
APP_SPEC = "examples.demo.site:Site"
APP_PORT = 8080
CONTROL_BIND = "127.0.0.1:9100"
#: Where the recipes install the morello config file.
CONFIG_PATH = "/etc/morello/morello.conf"
#: Where the systemd recipe puts the application (WorkingDirectory=).
SYSTEMD_APP_DIR = "/srv/morello/app"

# What a graceful stop of the master takes at most, beyond graceful_timeout:
# workers get graceful_timeout + 1 s, then a fast stop gets FAST_STOP_GRACE.
STOP_OVERHEAD = 1 + FAST_STOP_GRACE


# -- reading the recipes -----------------------------------------------------


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit: section -> key -> values (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending: str | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith(("#", ";")):
            continue
        if pending is not None:
            line = f"{pending} {line}"
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        pending = None
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: {line!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit_value(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit.get(section, {}).get(key)
    assert values, f"[{section}] {key}= is missing"
    return values[-1]


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not NAME=value: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def systemd_words(command: str, env: dict[str, str]) -> list[str]:
    """An Exec*= line as systemd runs it: ``$VAR`` alone splits, ``${VAR}`` does not."""
    words: list[str] = []
    for word in shlex.split(command):
        alone = re.fullmatch(r"\$(\w+)", word)
        if alone:
            words.extend(env.get(alone.group(1), "").split())
        else:
            words.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word))
    words[0] = words[0].lstrip("-@:+!")
    return words


def seconds(text: str) -> float:
    """A systemd time span: ``45``, ``45s``, ``1min 30s``."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text)
    assert parts and "".join(n + u for n, u in parts) == text.replace(" ", ""), text
    return sum(float(number) * units[unit] for number, unit in parts)


def serve_args(command: list[str]) -> list[str]:
    """The arguments after ``morello serve`` in ``command``."""
    for index, word in enumerate(command[:-1]):
        if Path(word).name == "morello" and command[index + 1] == "serve":
            return command[index + 2 :]
    raise AssertionError(f"not a `morello serve` command: {command}")


def with_config(args: list[str], path: Path | str) -> list[str]:
    """``args`` with the value of ``--config`` replaced by ``path``."""
    args = list(args)
    for flag in ("--config", "-c"):
        if flag in args:
            args[args.index(flag) + 1] = str(path)
            return args
    raise AssertionError(f"no --config in {args}")


def config_arg(args: list[str]) -> str:
    for flag in ("--config", "-c"):
        if flag in args:
            return args[args.index(flag) + 1]
    raise AssertionError(f"no --config in {args}")


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        name, _, rest = line.partition(" ")
        instructions.append((name.upper(), rest.strip()))
    assert not pending, "Dockerfile ends with a continuation line"
    return instructions


def exec_form(arguments: str) -> list[str]:
    """The JSON (exec) form of CMD/ENTRYPOINT/HEALTHCHECK CMD; shell form is refused."""
    import json

    assert arguments.startswith("["), f"use the exec form (JSON array), not {arguments!r}"
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def docker_command() -> list[str]:
    instructions = dict(dockerfile_instructions())
    command = exec_form(instructions.get("ENTRYPOINT", "[]")) + exec_form(instructions["CMD"])
    return command


def healthcheck_command() -> list[str]:
    (arguments,) = [rest for name, rest in dockerfile_instructions() if name == "HEALTHCHECK"]
    options, sep, command = arguments.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {arguments}"
    return exec_form(command.strip())


def yaml_documents(path: Path) -> list[Any]:
    with path.open() as file:
        return [doc for doc in yaml.safe_load_all(file) if doc is not None]


def kubernetes_objects() -> dict[tuple[str, str], dict[str, Any]]:
    objects = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml_documents(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, f"{key} defined twice"
            objects[key] = doc
    return objects


def k8s_container() -> dict[str, Any]:
    deployment = kubernetes_objects()[("Deployment", "morello")]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def k8s_config_text() -> str:
    return kubernetes_objects()[("ConfigMap", "morello-config")]["data"]["morello.conf"]


def k8s_config_file(directory: Path) -> Path:
    path = directory / "k8s-morello.conf"
    path.write_text(k8s_config_text())
    return path


def nginx_upstream_servers(text: str | None = None) -> list[tuple[str, int]]:
    text = NGINX_CONF.read_text() if text is None else text
    (body,) = re.findall(r"upstream\s+\w+\s*\{(.*?)\}", text, re.S)
    servers = re.findall(r"^\s*server\s+([^\s:;]+):(\d+)", body, re.M)
    return [(host, int(port)) for host, port in servers]


def nginx_static_alias() -> str:
    pattern = r"location\s+/static/\s*\{[^}]*?\balias\s+([^;\s]+)\s*;"
    (alias,) = re.findall(pattern, NGINX_CONF.read_text())
    return alias


def port_of(bind: str) -> int:
    return int(bind.rsplit(":", 1)[1])


def session_settings(section: dict[str, Any]) -> dict[str, Any]:
    prefix = "tools.sessions."
    return {key[len(prefix) :]: value for key, value in section.items() if key.startswith(prefix)}


# -- YAML and Kubernetes -----------------------------------------------------


def test_every_yaml_file_parses() -> None:
    paths = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert COMPOSE in paths and len(paths) >= 6, paths
    for path in paths:
        documents = yaml_documents(path)
        assert documents, f"{path} is empty"
        for doc in documents:
            assert isinstance(doc, dict), f"{path}: a document is not a mapping"


def test_kubernetes_objects_are_the_expected_kinds() -> None:
    assert set(kubernetes_objects()) == {
        ("ConfigMap", "morello-config"),
        ("Deployment", "morello"),
        ("Service", "morello"),
        ("Deployment", "morello-redis"),
        ("Service", "morello-redis"),
    }
    for (kind, name), doc in kubernetes_objects().items():
        expected = "apps/v1" if kind == "Deployment" else "v1"
        assert doc["apiVersion"] == expected, (kind, name)
    # The kustomization applies every manifest of the folder.
    (kustomization,) = yaml_documents(KUBERNETES / "kustomization.yaml")
    manifests = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_renders_the_folder() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rendered = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(result.stdout) if d}
    assert rendered == set(kubernetes_objects())


def k8s_probes() -> dict[str, tuple[str, int]]:
    """The container's httpGet probes: name -> (path, container port number)."""
    container = k8s_container()
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    probes = {}
    for name in ("readinessProbe", "livenessProbe", "startupProbe"):
        if name in container:
            get = container[name]["httpGet"]
            probes[name] = (get["path"], ports.get(get["port"], get["port"]))
    return probes


def test_kubernetes_probes_ask_the_probe_port() -> None:
    """httpGet probes on /readyz and /healthz of master.health_bind, which listens on
    the pod's addresses (the kubelet connects to the pod IP); the control endpoint,
    which can scale the server, stays on loopback."""
    container = k8s_container()
    config = from_config_file(str(k8s_config_file(Path(tempfile.mkdtemp()))))
    assert config.control_bind == CONTROL_BIND
    assert config.health_bind is not None
    host = config.health_bind.rsplit(":", 1)[0]
    assert host in ("0.0.0.0", "[::]"), config.health_bind
    probes = k8s_probes()
    assert probes == {
        "readinessProbe": ("/readyz", port_of(config.health_bind)),
        "livenessProbe": ("/healthz", port_of(config.health_bind)),
    }
    for name in probes:
        assert "exec" not in container[name], name
        assert container[name]["timeoutSeconds"] >= 1
    # Nothing in the pod spec reaches for the control port.
    assert port_of(CONTROL_BIND) not in {p["containerPort"] for p in container["ports"]}


def test_kubernetes_deployment_details(tmp_path: Path) -> None:
    objects = kubernetes_objects()
    deployment = objects[("Deployment", "morello")]
    pod = deployment["spec"]["template"]["spec"]
    container = k8s_container()
    settings = from_config_file(str(k8s_config_file(tmp_path)))

    # Stopping: preStop pause, then TERM, then the master's graceful stop.
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep", pre_stop
    pause = float(pre_stop[1])
    needed = pause + settings.graceful_timeout + STOP_OVERHEAD
    assert pod["terminationGracePeriodSeconds"] >= needed

    # Resources, and workers that fit the memory limit.
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind
    limit = resources["limits"]["memory"]
    assert limit.endswith("Mi"), limit
    assert settings.max_rss is not None
    assert settings.workers * settings.max_rss < int(limit[:-2]) << 20

    # Never root.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]

    # Labels and names that must line up.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = objects[("Service", "morello")]
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert settings.health_bind is not None
    assert ports == {"http": APP_PORT, "health": port_of(settings.health_bind)}
    # The Service carries traffic only: the probe port is the kubelet's.
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    assert [port_of(bind) for bind in settings.bind] == [APP_PORT]

    # The config file: ConfigMap key, mounted where --config looks.
    (volume,) = [v for v in pod["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == "morello-config"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    (key,) = objects[("ConfigMap", "morello-config")]["data"]
    assert f"{mount['mountPath']}/{key}" == config_arg(serve_args(container["command"]))

    # Sessions: the Redis Service the config names.
    sections = load_config(str(tmp_path / "k8s-morello.conf"))
    url = session_settings(sections["/"])["url"]
    redis_service = objects[("Service", "morello-redis")]
    redis_pod_labels = objects[("Deployment", "morello-redis")]["spec"]["template"]["metadata"][
        "labels"
    ]
    assert redis_service["spec"]["selector"].items() <= redis_pod_labels.items()
    (redis_port,) = redis_service["spec"]["ports"]
    assert url == f"redis://morello-redis:{redis_port['port']}/0"


# -- morello config files and command lines ---------------------------------


def recipe_configs(directory: Path) -> dict[str, Path]:
    return {
        "systemd": SYSTEMD_CONF,
        "docker": DOCKER_CONF,
        "kubernetes": k8s_config_file(directory),
    }


def test_config_files_parse_and_master_keys_are_accepted(tmp_path: Path) -> None:
    import morello

    for recipe, path in recipe_configs(tmp_path).items():
        sections = load_config(str(path))
        master_keys = [k for k in sections["global"] if k.startswith("master.")]
        assert master_keys, recipe
        settings = from_config_file(str(path))  # ValueError for an unknown master.* key
        settings.app = APP_SPEC
        settings.check()
        assert settings.control_bind == CONTROL_BIND, recipe
        assert settings.graceful_timeout == 30, recipe
        # Sessions: Redis, with settings the session tool accepts at startup.
        sessions = session_settings(sections["/"])
        assert sessions["on"] is True and sessions["storage_type"] == "redis", recipe
        for section in sections.values():
            options = session_settings(section)
            if options.get("on"):
                morello.tools.sessions.check_config(options)
        assert session_settings(sections["/static"])["on"] is False, recipe
        assert sections["/"]["tools.proxy.on"] is True, recipe
        # Forwarded headers believed from named peers only (not "*", not nobody).
        trusted = sections["/"]["tools.proxy.trusted"]
        assert parse_trusted(trusted), recipe
        morello.tools.proxy.check_config({"on": True, "trusted": trusted})

    # The check bites: a misspelt master key is refused.
    broken = tmp_path / "broken.conf"
    broken.write_text(SYSTEMD_CONF.read_text().replace("master.workers", "master.wokers"))
    with pytest.raises(ValueError, match="wokers"):
        from_config_file(str(broken))


def recipe_command_lines() -> dict[str, list[str]]:
    unit = read_unit(SERVICE)
    env = read_env_file(SYSTEMD_ENV)
    return {
        "systemd": systemd_words(unit_value(unit, "Service", "ExecStart"), env),
        "docker": docker_command(),
        "kubernetes": k8s_container()["command"],
    }


def test_serve_command_lines_parse(tmp_path: Path) -> None:
    configs = recipe_configs(tmp_path)
    for recipe, command in recipe_command_lines().items():
        args = serve_args(command)
        assert config_arg(args) == CONFIG_PATH, recipe
        settings, log_level = settings_from_args(with_config(args, configs[recipe]))
        assert settings.app == APP_SPEC, recipe
        assert settings.config == str(configs[recipe])
        assert settings.control_bind == CONTROL_BIND
        assert log_level in ("debug", "info", "warning", "error")
    # The environment file's extra flags did reach the systemd command line.
    assert "--log-level" in recipe_command_lines()["systemd"]


# -- systemd -----------------------------------------------------------------


def test_systemd_units_say_what_morello_needs() -> None:
    service = read_unit(SERVICE)
    settings = from_config_file(str(SYSTEMD_CONF))
    assert unit_value(service, "Service", "Type") == "notify"
    # NotifyAccess=all would let the old master's STOPPING=1 stop the upgraded
    # service (see test_notify_access_keeps_the_upgraded_master).
    assert unit_value(service, "Service", "NotifyAccess") == "main"
    reload_words = shlex.split(unit_value(service, "Service", "ExecReload"))
    assert reload_words == ["/bin/kill", "-HUP", "$MAINPID"]
    assert unit_value(service, "Service", "KillSignal") == "SIGTERM"
    assert unit_value(service, "Service", "KillMode") in ("mixed", "control-group")
    stop = seconds(unit_value(service, "Service", "TimeoutStopSec"))
    assert stop >= settings.graceful_timeout + STOP_OVERHEAD
    assert seconds(unit_value(service, "Service", "TimeoutStartSec")) > settings.boot_timeout
    assert unit_value(service, "Service", "User") not in ("root", "0")
    assert unit_value(service, "Service", "NoNewPrivileges") == "yes"
    # The files ExecStart and EnvironmentFile name are the ones in deploy/systemd.
    assert unit_value(service, "Service", "EnvironmentFile") == f"/etc/morello/{SYSTEMD_ENV.name}"
    assert Path(CONFIG_PATH).name == SYSTEMD_CONF.name
    assert unit_value(service, "Service", "WorkingDirectory") == SYSTEMD_APP_DIR
    # Socket activation: the socket unit is required and listens on the app port.
    assert "morello.socket" in unit_value(service, "Unit", "Requires").split()
    socket_unit = read_unit(SOCKET)
    assert port_of(unit_value(socket_unit, "Socket", "ListenStream")) == APP_PORT
    assert int(unit_value(socket_unit, "Socket", "Backlog")) == settings.backlog
    assert unit_value(socket_unit, "Install", "WantedBy") == "sockets.target"


@pytest.mark.skipif(not os.access("/usr/bin/systemd-analyze", os.X_OK) and
                    shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")  # fmt: skip
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` has nothing to say about the units.

    The only change to the copies verified: ExecStart runs the morello script
    of this test's environment instead of /srv/morello/venv/bin/morello, so the
    check that the command exists is a real one. Any message fails the test
    (verify exits 0 after warnings such as an unknown key).
    """
    program = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    morello_script = Path(sys.executable).with_name("morello")
    assert morello_script.exists(), morello_script
    text = SERVICE.read_text()
    copy, count = re.subn(
        r"^ExecStart=/srv/morello/venv/bin/morello ",
        f"ExecStart={morello_script} ",
        text,
        flags=re.M,
    )
    assert count == 1
    (tmp_path / SERVICE.name).write_text(copy)
    shutil.copy(SOCKET, tmp_path / SOCKET.name)
    result = subprocess.run(
        [program, "verify", "--man=no", str(tmp_path / SOCKET.name), str(tmp_path / SERVICE.name)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        result.stdout + result.stderr
    )


def _read_datagram(sock: socket.socket) -> tuple[int, dict[str, str]]:
    """One notification: (sender pid, fields)."""
    credentials = struct.calcsize("iII")
    data, ancillary, _flags, _address = sock.recvmsg(4096, socket.CMSG_SPACE(credentials))
    pid = None
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", payload[:credentials])[0]
    assert pid is not None, "no sender credentials"
    return pid, dict(line.split("=", 1) for line in data.decode().splitlines())


def _receive(sock: socket.socket, messages: list[tuple[int, dict[str, str]]], until: Any,
             what: str, timeout: float = DEADLINE) -> None:  # fmt: skip
    """Append the notifications that arrive until ``until(messages)`` holds."""
    deadline = time.monotonic() + timeout
    while not until(messages):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"not within {timeout}s: {what}; got {messages}")
        if select.select([sock], [], [], min(remaining, 0.1))[0]:
            messages.append(_read_datagram(sock))


def _systemd_model(messages: list[tuple[int, dict[str, str]]], access: str,
                   main_pid: int) -> tuple[int, str]:  # fmt: skip
    """How systemd (service_notify_message) takes these notifications: (main pid, state)."""
    state = "activating"
    for pid, fields in messages:
        if access == "none" or (access in ("main", "exec") and pid != main_pid):
            continue  # "reception only permitted for main PID"
        if "MAINPID" in fields:
            main_pid = int(fields["MAINPID"])
        if fields.get("READY") == "1" and state == "activating":
            state = "active"
        elif fields.get("STOPPING") == "1" and state == "active":
            state = "deactivating"  # then SIGKILL for all after TimeoutStopSec
    return main_pid, state


def test_notify_access_keeps_the_upgraded_master(tmp_path: Path) -> None:
    """USR2, then TERM to the old master: systemd must end up following the new one.

    A real master notifies a datagram socket (as systemd's NOTIFY_SOCKET)
    that records each sender's pid; the unit's NotifyAccess= decides which
    notifications a model of systemd accepts.
    """
    access = unit_value(read_unit(SERVICE), "Service", "NotifyAccess")
    write_app(tmp_path)
    directory = tempfile.mkdtemp(prefix="morello-notify-")  # short: AF_UNIX path limit
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    receiver.bind(os.path.join(directory, "notify"))
    master = MasterProcess(tmp_path, workers=1)
    new_pid: int | None = None
    messages: list[tuple[int, dict[str, str]]] = []

    def sent(pid: int | None, **fields: str) -> Any:
        return lambda got: any(
            p == pid and all(f.get(k) == v for k, v in fields.items()) for p, f in got
        )

    try:
        master.start(env={"NOTIFY_SOCKET": os.path.join(directory, "notify")})
        old_pid = master.pid
        _receive(receiver, messages, sent(old_pid, READY="1"), "READY=1 from the master")
        master.send(signal.SIGUSR2)
        _receive(receiver, messages, lambda got: any("MAINPID" in f for _, f in got),
                 "MAINPID= after USR2")  # fmt: skip
        new_pid = int(next(f["MAINPID"] for _, f in messages if "MAINPID" in f))
        _receive(receiver, messages, sent(new_pid, READY="1"), "READY=1 from the new master")
        master.send(signal.SIGTERM)
        assert master.wait_exit() == 0
        # Whatever else was sent until now (the old master's last words).
        while select.select([receiver], [], [], 0.3)[0]:
            messages.append(_read_datagram(receiver))
        main_pid, state = _systemd_model(messages, access, old_pid)
        assert (main_pid, state) == (new_pid, "active"), (
            f"with NotifyAccess={access}, systemd would follow pid {main_pid} in state "
            f"{state!r} after the upgrade (old master {old_pid}, new {new_pid}): {messages}"
        )
        assert psutil.pid_exists(new_pid)
    finally:
        master.stop()
        if new_pid is not None and not process_gone(new_pid):
            os.kill(new_pid, signal.SIGTERM)
            wait_for(lambda: process_gone(new_pid), what="new master gone")
        receiver.close()
        shutil.rmtree(directory, ignore_errors=True)


# -- Docker and compose ------------------------------------------------------


def test_dockerfile() -> None:
    instructions = dockerfile_instructions()
    names = [name for name, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [rest for name, rest in instructions if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    # Runs as a numeric uid (Kubernetes' runAsNonRoot can check it), the one
    # the Deployment names.
    assert users[-1].split(":")[0] == str(k8s_pod_user())
    assert names.count("HEALTHCHECK") == 1
    healthcheck = healthcheck_command()
    assert healthcheck[0] == "python"
    assert f"http://{CONTROL_BIND}/healthz" in " ".join(healthcheck)
    assert serve_args(docker_command())[0] == APP_SPEC
    runs = " ".join(rest for name, rest in instructions if name == "RUN")
    assert 'pip install ".[redis,memcached]"' in runs
    assert ("EXPOSE", str(APP_PORT)) in instructions


def k8s_pod_user() -> int:
    deployment = kubernetes_objects()[("Deployment", "morello")]
    return deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]


def _copy_sources() -> list[tuple[list[str], str]]:
    copies = []
    for name, rest in dockerfile_instructions():
        if name not in ("COPY", "ADD"):
            continue
        words = [w for w in shlex.split(rest) if not w.startswith("--")]
        copies.append((words[:-1], words[-1]))
    return copies


def test_dockerfile_copies_files_that_exist_and_suffice() -> None:
    """COPY sources exist (the build context is the repository root) and cover
    everything ``pip install .`` needs: pyproject.toml, the readme and every
    package directory it names."""
    import tomllib

    context = REPO
    (compose,) = yaml_documents(COMPOSE)
    build = compose["services"]["app"]["build"]
    assert (COMPOSE.parent / build["context"]).resolve() == context
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE
    copied = set()
    for sources, _destination in _copy_sources():
        for source in sources:
            assert (context / source).exists(), source
            copied.add(source.rstrip("/"))
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    package_dirs = setuptools.get("package-dir", {})
    needed = {"pyproject.toml", project["project"]["readme"]}
    for package in setuptools["packages"]:
        # A package lives in its package-dir entry, else in the directory of
        # its closest listed parent, else in its dotted path.
        parts = package.split(".")
        for cut in range(len(parts), 0, -1):
            parent = ".".join(parts[:cut])
            if parent in package_dirs:
                path = Path(package_dirs[parent], *parts[cut:])
                break
        else:
            path = Path(*parts)
        needed.add(path.parts[0])
    assert needed <= copied, f"not copied into the image: {sorted(needed - copied)}"
    # The config the CMD reads is copied to where it reads it.
    destinations = {dest for _, dest in _copy_sources()}
    assert config_arg(serve_args(docker_command())) in destinations


def test_compose_services() -> None:
    (compose,) = yaml_documents(COMPOSE)
    services = compose["services"]
    assert {"app", "redis", "memcached", "nginx"} <= set(services)
    settings = from_config_file(str(DOCKER_CONF))
    sections = load_config(str(DOCKER_CONF))

    app_services = {name for name, s in services.items() if s.get("image") == "morello-demo:0.1.0"}
    assert "app" in app_services
    for name in app_services:
        service = services[name]
        assert "redis" in service["depends_on"], name
        # The config file mounted where the image's CMD reads it.
        mounts = [volume.split(":") for volume in service["volumes"]]
        assert [(COMPOSE.parent / m[0]).resolve() for m in mounts if m[1] == CONFIG_PATH] == [
            DOCKER_CONF
        ]
        grace = service["stop_grace_period"]
        assert seconds(grace) >= settings.graceful_timeout + STOP_OVERHEAD, name
        assert service.get("user") in (None, str(k8s_pod_user()))

    # nginx runs the nginx recipe, its upstream names are the app containers'
    # names, and the static files it serves are the demo's.
    nginx = services["nginx"]
    mounts = {target: (COMPOSE.parent / source).resolve()
              for source, target, *_ in (v.split(":") for v in nginx["volumes"])}  # fmt: skip
    assert mounts["/etc/nginx/conf.d/default.conf"] == NGINX_CONF
    assert mounts[nginx_static_alias().rstrip("/")] == DEMO / "static"
    names = {}
    for name in app_services:
        aliases = services[name].get("networks", {}).get("default", {}).get("aliases", [])
        for alias in [name, *aliases]:
            names[alias] = name
    upstreams = nginx_upstream_servers()
    assert len(upstreams) == 2
    assert len({names.get(host) for host, _ in upstreams} - {None}) == 2, upstreams
    assert set(nginx["depends_on"]) >= app_services

    # The apps believe forwarded headers from nginx's pinned address, which
    # lies in the network's subnet; not from the rest of that network.
    nginx_address = nginx["networks"]["default"]["ipv4_address"]
    (subnet,) = [entry["subnet"] for entry in compose["networks"]["default"]["ipam"]["config"]]
    trusted = sections["/"]["tools.proxy.trusted"]
    assert trusts(trusted, nginx_address) and trusts([subnet], nginx_address)
    assert not trusts(trusted, str(ipaddress.ip_network(subnet)[2]))

    # The session url names the compose file's redis service.
    url = session_settings(sections["/"])["url"]
    assert re.fullmatch(r"redis://(\w+):6379/\d+", url).group(1) in services


def test_ports_and_timeouts_agree_across_recipes(tmp_path: Path) -> None:
    configs = {name: from_config_file(str(path)) for name, path in recipe_configs(tmp_path).items()}
    assert {s.control_bind for s in configs.values()} == {CONTROL_BIND}
    assert {s.graceful_timeout for s in configs.values()} == {30}
    for name, settings in configs.items():
        assert [port_of(b) for b in settings.bind] == [APP_PORT], name
    assert port_of(unit_value(read_unit(SOCKET), "Socket", "ListenStream")) == APP_PORT
    assert {port for _, port in nginx_upstream_servers()} == {APP_PORT}
    (compose,) = yaml_documents(COMPOSE)
    assert compose["services"]["app"]["expose"] == [str(APP_PORT)]
    control_port = port_of(CONTROL_BIND)
    assert f":{control_port}/healthz" in " ".join(healthcheck_command())
    k8s = from_config_file(str(k8s_config_file(tmp_path)))
    assert k8s.health_bind is not None
    assert {port for _, port in k8s_probes().values()} == {port_of(k8s.health_bind)}


# -- running the recipes ------------------------------------------------------


class RecipeMaster(MasterProcess):
    """``morello serve`` with a recipe's own arguments, run from an app directory.

    The app directory holds only ``examples/demo`` (as /srv/morello/app does),
    and PYTHONPATH is not set: the installed morello and the copied app are
    all there is. Bind, control endpoint and workers are overridden by flags
    appended after the recipe's arguments.
    """

    def __init__(self, directory: Path, app_dir: Path, args: list[str], workers: int = 1):
        super().__init__(directory, workers=workers)
        self.app_dir = app_dir
        self.command = [
            sys.executable, "-m", "morello.master", "serve", *args,
            "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers),
            "--control-bind", f"unix:{self.control_path}", "--pidfile", self.pidfile,
        ]  # fmt: skip

    def start(self, env: dict[str, str] | None = None) -> RecipeMaster:
        environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        environment.update(env or {})
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=self.app_dir, stdout=log, stderr=subprocess.STDOUT,
                env=environment,
            )  # fmt: skip
        return self


def install_app(directory: Path) -> Path:
    """A copy of the demo laid out as the systemd recipe's WorkingDirectory."""
    shutil.copytree(DEMO, directory / "examples" / "demo",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    return directory


def systemd_config_for(tmp_path: Path, app_dir: Path, redis_url: str) -> Path:
    """deploy/systemd/morello.conf with the app directory and Redis url of this test."""
    text = SYSTEMD_CONF.read_text()
    assert text.count(SYSTEMD_APP_DIR) == 1
    text = text.replace(SYSTEMD_APP_DIR, str(app_dir))
    text, count = re.subn(r'^(tools\.sessions\.url\s*=\s*)"[^"]*"', rf'\g<1>"{redis_url}"',
                          text, flags=re.M)  # fmt: skip
    assert count == 1
    path = tmp_path / "morello.conf"
    path.write_text(text)
    return path


def systemd_serve_args(config: Path) -> list[str]:
    return with_config(serve_args(recipe_command_lines()["systemd"]), config)


VISIT = re.compile(r"Visit (\d+) in this session, answered by process (\d+)")


def test_demo_runs_as_the_systemd_recipe_runs_it(tmp_path: Path, redis_store: Any) -> None:
    """ExecStart's arguments, the recipe's config, the app directory layout:
    pages with Redis sessions, static files, the control endpoint, and the
    Docker and Kubernetes probe commands against it."""
    app_dir = install_app(tmp_path / "app")
    config = systemd_config_for(tmp_path, app_dir, redis_store.url)
    master = RecipeMaster(tmp_path, app_dir, systemd_serve_args(config)).start()
    try:
        master.wait_ready(1)
        with requests.Session() as client:
            visits = [int(VISIT.search(client.get(master.url + "/", timeout=10).text)[1])
                      for _ in range(3)]  # fmt: skip
        assert visits == [1, 2, 3]
        css = requests.get(master.url + "/static/site.css", timeout=10)
        assert css.status_code == 200
        assert css.content == (DEMO / "static" / "site.css").read_bytes()
        assert "session_id" not in css.cookies  # no session for static files
        assert master.control("GET", "/readyz")[0] == 200
    finally:
        master.stop()


class _Answer503(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_probe_commands_tell_up_from_down(tmp_path: Path, redis_store: Any) -> None:
    """The Docker HEALTHCHECK, run as it is written, and the Kubernetes httpGet
    probes, asked as the kubelet asks them (only the ports changed): success
    against a ready master, failure against a 503 or nothing listening."""
    app_dir = install_app(tmp_path / "app")
    config = systemd_config_for(tmp_path, app_dir, redis_store.url)
    control_port, health_port = free_port(), free_port()
    args = [*systemd_serve_args(config)]
    master = RecipeMaster(tmp_path, app_dir, args)
    master.command += ["--control-bind", f"127.0.0.1:{control_port}",
                       "--health-bind", f"127.0.0.1:{health_port}"]  # fmt: skip

    def healthcheck(port: int) -> bool:
        command = [sys.executable if w == "python" else w.replace(CONTROL_BIND, f"127.0.0.1:{port}")
                   for w in healthcheck_command()]  # fmt: skip
        assert any(f"127.0.0.1:{port}" in w for w in command), command
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0

    def kubelet(path: str, port: int) -> bool:
        # The kubelet's httpGet: any status from 200 to 399 passes.
        try:
            status = requests.get(f"http://127.0.0.1:{port}{path}", timeout=5,
                                  allow_redirects=False).status_code  # fmt: skip
        except requests.ConnectionError:
            return False
        return 200 <= status < 400

    probes = {"HEALTHCHECK": lambda ports: healthcheck(ports[0])}
    for name, (path, _) in k8s_probes().items():
        probes[name] = lambda ports, path=path: kubelet(path, ports[1])

    master.start()
    try:
        wait_for(lambda: kubelet("/readyz", health_port),
                 what=f"master ready\n{master.log()[-2000:]}")  # fmt: skip
        for name, probe in probes.items():
            assert probe((control_port, health_port)), name
    finally:
        master.stop()
    server = http.server.HTTPServer(("127.0.0.1", 0), _Answer503)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        answers_503 = server.server_address[1]
        for name, probe in probes.items():
            assert not probe((answers_503, answers_503)), f"{name} passed a 503"
            nothing = free_port()
            assert not probe((nothing, nothing)), f"{name} passed with nothing listening"
    finally:
        server.shutdown()
        server.server_close()


# -- nginx ---------------------------------------------------------------------


def nginx_program() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


needs_nginx = pytest.mark.skipif(nginx_program() is None, reason="nginx is not installed")


def nginx_site(upstream_ports: list[int], listen_port: int, static_dir: Path) -> str:
    """The nginx recipe pointed at loopback backends, port and static folder."""
    text = NGINX_CONF.read_text()
    hosts = [f"{host}:{port}" for host, port in nginx_upstream_servers(text)]
    assert len(hosts) == len(upstream_ports) == 2
    for host, port in zip(hosts, upstream_ports, strict=True):
        text, count = re.subn(rf"(\bserver\s+){re.escape(host)}\b", rf"\g<1>127.0.0.1:{port}", text)
        assert count == 1, host
    text, count = re.subn(r"^(\s*)listen\s+80\s*;", rf"\g<1>listen 127.0.0.1:{listen_port};",
                          text, flags=re.M)  # fmt: skip
    assert count == 1
    alias = nginx_static_alias()
    text = text.replace(f"alias {alias};", f"alias {static_dir}/;")
    return text


def nginx_wrapper(prefix: Path, site: str) -> Path:
    """An nginx.conf like Debian's (the site included in http {}), everything in ``prefix``."""
    (prefix / "site.conf").write_text(site)
    # Workers switch to `user` only when nginx starts as root; then they must
    # be able to read the temporary folders.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    mime = "/etc/nginx/mime.types"
    types = f"include {mime};" if os.path.exists(mime) else "types { text/css css; }"
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
{user}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 256; }}
http {{
    {types}
    default_type application/octet-stream;
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/site.conf;
}}
""")
    return conf


def nginx_command(prefix: Path, conf: Path, *extra: str) -> list[str]:
    program = nginx_program()
    assert program is not None
    return [program, "-p", f"{prefix}/", "-e", f"{prefix}/error.log", "-c", str(conf), *extra]


@needs_nginx
def test_nginx_t_accepts_the_recipe(tmp_path: Path) -> None:
    site = nginx_site([free_port(), free_port()], free_port(), DEMO / "static")
    conf = nginx_wrapper(tmp_path, site)
    result = subprocess.run(nginx_command(tmp_path, conf, "-t"), capture_output=True, text=True,
                            timeout=30)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@needs_nginx
def test_nginx_balances_two_masters_and_serves_static_files(tmp_path: Path,
                                                           redis_store: Any) -> None:  # fmt: skip
    """nginx in front of two `morello serve` masters (two hosts, here two
    loopback ports) sharing Redis sessions, as deploy/nginx and deploy/systemd
    describe it."""
    app_dir = install_app(tmp_path / "app")
    config = systemd_config_for(tmp_path, app_dir, redis_store.url)
    # nginx serves /static/ from its own copy, with a file morello does not have.
    static = tmp_path / "nginx-static"
    shutil.copytree(DEMO / "static", static)
    (static / "only-on-nginx.txt").write_text("served by nginx\n")
    masters = []
    nginx = None
    try:
        for number in (1, 2):
            directory = tmp_path / f"master{number}"
            directory.mkdir()
            masters.append(RecipeMaster(directory, app_dir, systemd_serve_args(config)).start())
        for master in masters:
            master.wait_ready(1)
        port = free_port()
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        conf = nginx_wrapper(prefix, nginx_site([m.port for m in masters], port, static))
        nginx = subprocess.Popen(nginx_command(prefix, conf, "-g", "daemon off;"),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        base = f"http://127.0.0.1:{port}"

        def listening() -> bool:
            assert nginx is not None
            if nginx.poll() is not None:
                pytest.fail(f"nginx exited: {nginx.stderr.read().decode() if nginx.stderr else ''}")
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        wait_for(listening, what="nginx listening")

        # Balanced: every request goes to the other master (round robin), and
        # the session follows the visitor through Redis.
        worker_pids = [set(master.worker_pids()) for master in masters]
        served_by = []
        with requests.Session() as client:
            for expected_visit in range(1, 9):
                response = client.get(base + "/", timeout=10)
                assert response.status_code == 200, response.text
                visit, pid = map(int, VISIT.search(response.text).groups())
                assert visit == expected_visit
                (number,) = [i for i, pids in enumerate(worker_pids) if pid in pids]
                served_by.append(number)
            assert served_by.count(0) >= 2 and served_by.count(1) >= 2, served_by

            # A form post and its redirect, through the proxy headers:
            # tools.proxy builds the Location from X-Forwarded-Host (with port).
            response = client.post(base + "/guestbook/sign", data={"message": "via nginx"},
                                   allow_redirects=False, timeout=10)  # fmt: skip
            assert response.status_code in (302, 303), response.text
            assert response.headers["Location"] == f"{base}/guestbook/"
            assert "via nginx" in client.get(base + "/guestbook/", timeout=10).text
            moved = client.get(base + "/guestbook", allow_redirects=False, timeout=10)
            assert moved.headers["Location"] == f"{base}/guestbook/"

        # Static files come from nginx's folder, with nginx's cache headers.
        css = requests.get(base + "/static/site.css", timeout=10)
        assert css.status_code == 200
        assert css.content == (DEMO / "static" / "site.css").read_bytes()
        assert css.headers["Content-Type"].startswith("text/css")
        assert css.headers.get("Cache-Control") == "max-age=3600"
        only = requests.get(base + "/static/only-on-nginx.txt", timeout=10)
        assert only.status_code == 200 and only.text == "served by nginx\n"
        for master in masters:  # and morello has no such file
            missing = requests.get(master.url + "/static/only-on-nginx.txt", timeout=10)
            assert missing.status_code == 404
    finally:
        if nginx is not None and nginx.poll() is None:
            nginx.send_signal(signal.SIGQUIT)  # graceful; its workers exit with it
            try:
                nginx.wait(10)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait()
        for master in masters:
            master.stop()
