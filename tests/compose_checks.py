"""Reading docker-compose.yml as Compose would, and checks that each return a list of problems.

Used by tests/test_compose.py, which runs every check on the committed stack and shows each one
failing on a broken copy.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from shadow.cli import cli

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

Compose = dict[str, Any]
Service = dict[str, Any]

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}; $$ escapes a dollar.
_INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
_BARE = re.compile(r"(?<!\$)\$(?P<name>[A-Za-z_]\w*)")
_ESCAPED = re.compile(r"\$\$\{?(?P<name>[A-Za-z_]\w*)")
_DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
_URL_OPTIONS = ("upstream", "baseline", "candidate")
_HEALTH_URL = re.compile(r"https?://(?:127\.0\.0\.1|localhost):(?P<port>\d+)(?P<path>/[^'\"\s]*)")


# -- reading the stack --------------------------------------------------------------------


def interpolate(value: str, env: Mapping[str, str] | None = None) -> str:
    """Compose's variable interpolation, with ``env`` as the shell (default: empty)."""
    env = env or {}

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if op in (":-", "-"):
            unset = name not in env or (op == ":-" and not env[name])
            return arg if unset else env[name]
        if name not in env:
            raise KeyError(f"${{{name}}} is not set and has no default")
        return env[name]

    value = _INTERPOLATION.sub(one, value)
    bare = _BARE.search(value)
    if bare and bare["name"] not in env:
        raise KeyError(f"${bare['name']} is not set and has no default")
    return value.replace("$$", "$")


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _environment(service: Service) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def is_shadow(service: Service) -> bool:
    """Runs the image built from ./Dockerfile, whose ENTRYPOINT is ``shadow``."""
    build = service.get("build")
    context = build.get("context") if isinstance(build, Mapping) else build
    return context in (".", "./") and "entrypoint" not in service


def command_args(service: Service) -> list[str]:
    """The service's command as argv (a list, or a string split as a shell would)."""
    command = service.get("command", [])
    if isinstance(command, str):
        return shlex.split(interpolate(command))
    assert all(isinstance(arg, str) for arg in command), f"quote every argument: {command!r}"
    return [interpolate(arg) for arg in command]


def resolve(args: Sequence[str]) -> click.Context:
    """Parse ``shadow ARGS...`` with the real CLI, as the console script would.

    Raises click's UsageError (unknown command or option, bad value, missing argument).
    """
    ctx = click.Context(cli, info_name="shadow")
    command: click.Command = cli
    rest = list(args)
    while isinstance(command, click.Group):
        if not rest or rest[0].startswith("-"):
            raise click.UsageError(f"expected a command after {ctx.command_path!r}, got {rest}")
        name, *rest = rest
        found = command.get_command(ctx, name)
        if found is None:
            raise click.UsageError(f"no such command {ctx.command_path} {name}")
        command = found
        if isinstance(command, click.Group):
            ctx = click.Context(command, info_name=name, parent=ctx)
        else:
            return command.make_context(name, rest, parent=ctx)
    raise AssertionError("unreachable")


def shadow_contexts(compose: Compose) -> dict[str, click.Context]:
    return {
        name: resolve(command_args(service))
        for name, service in compose["services"].items()
        if is_shadow(service)
    }


def _port(text: str) -> int:
    return int(text.rpartition(":")[2])


def listening_ports(name: str, service: Service) -> set[int]:
    """The container ports a service listens on, from its own command line or settings."""
    if is_shadow(service):
        ctx = resolve(command_args(service))
        command = ctx.command.name
        if command == "mock-llm":
            return {int(ctx.params["port"])}
        if command == "capture":
            return {_port(ctx.params["listen"])}
        if command == "mirror" and ctx.params["metrics_port"]:
            return {int(ctx.params["metrics_port"])}
        return set()
    listeners = _environment(service).get("KAFKA_LISTENERS", "")
    return {_port(item) for item in listeners.split(",") if item}


def kafka_listeners(service: Service, variable: str) -> dict[str, str]:
    """``KAFKA_LISTENERS``-style value as {listener name: host:port}."""
    value = _environment(service).get(variable, "")
    out = {}
    for item in filter(None, value.split(",")):
        listener, _, address = item.partition("://")
        out[listener] = address
    return out


def internal_bootstraps(compose: Compose) -> set[str]:
    """host:port of every advertised Kafka listener that other containers can resolve."""
    found = set()
    for name, service in compose["services"].items():
        if "KAFKA_PROCESS_ROLES" not in _environment(service):
            continue
        hosts = {name, service.get("hostname", name)}
        for address in kafka_listeners(service, "KAFKA_ADVERTISED_LISTENERS").values():
            if address.rpartition(":")[0] in hosts:
                found.add(address)
    return found


# -- the checks ---------------------------------------------------------------------------


def command_problems(compose: Compose) -> list[str]:
    """Shadow command lines the real CLI rejects."""
    problems = []
    for name, service in compose["services"].items():
        if not is_shadow(service):
            continue
        try:
            resolve(command_args(service))
        except (click.UsageError, KeyError) as exc:
            problems.append(f"{name}: shadow {shlex.join(command_args(service))}: {exc}")
    return problems


def address_problems(compose: Compose) -> list[str]:
    """URLs that name no service or the wrong port; Kafka bootstraps that are not internal."""
    services = compose["services"]
    problems = []
    internal = internal_bootstraps(compose)
    if not internal:
        problems.append("no Kafka service advertises a listener under its service name")
    for name, ctx in shadow_contexts(compose).items():
        params = ctx.params
        for option in _URL_OPTIONS:
            url = params.get(option)
            if url is None:
                continue
            parts = urlsplit(url)
            target = parts.hostname or ""
            if target not in services:
                problems.append(f"{name}: --{option} {url} names no service of the stack")
            elif parts.port not in listening_ports(target, services[target]):
                problems.append(f"{name}: --{option} {url}: {target} does not listen on that port")
        bootstraps = []
        source = params.get("source")
        if isinstance(source, str) and source.startswith("kafka://"):
            bootstraps.append(source.removeprefix("kafka://").partition("/")[0])
        if params.get("kafka"):
            bootstraps.append(params["kafka"])
        for bootstrap in bootstraps:
            for address in bootstrap.split(","):
                if address not in internal:
                    problems.append(
                        f"{name}: Kafka at {address} is not an internal listener ({internal})"
                    )
        for option in ("host",):
            if option in params and params[option] != "0.0.0.0":
                problems.append(f"{name}: --host {params[option]} is unreachable from others")
        if "listen" in params and not str(params["listen"]).startswith("0.0.0.0:"):
            problems.append(f"{name}: --listen {params['listen']} is unreachable from others")
    for name, service in services.items():
        if "KAFKA_PROCESS_ROLES" in _environment(service) or is_shadow(service):
            continue
        args = [interpolate(arg) for arg in service.get("command") or []]
        if "--bootstrap-server" in args:
            address = args[args.index("--bootstrap-server") + 1]
            if address not in internal:
                problems.append(f"{name}: --bootstrap-server {address} is not internal")
    return problems


def kraft_problems(compose: Compose) -> list[str]:
    """A Kafka that is not a single KRaft node whose listeners agree with each other."""
    services = compose["services"]
    problems = []
    for name, service in services.items():
        image = str(service.get("image", ""))
        env = _environment(service)
        if "zookeeper" in image.lower() or "zookeeper" in name.lower():
            problems.append(f"{name}: ZooKeeper has no place in a KRaft stack")
        if any("ZOOKEEPER" in key for key in env):
            problems.append(f"{name}: ZooKeeper settings in a KRaft stack")
    brokers = {n: s for n, s in services.items() if "KAFKA_PROCESS_ROLES" in _environment(s)}
    if len(brokers) != 1:
        return [*problems, f"expected one Kafka node, found {sorted(brokers)}"]
    ((name, service),) = brokers.items()
    env = _environment(service)
    if set(env["KAFKA_PROCESS_ROLES"].split(",")) != {"broker", "controller"}:
        problems.append(
            f"{name}: process roles {env['KAFKA_PROCESS_ROLES']}; a single node is both"
        )
    listeners = kafka_listeners(service, "KAFKA_LISTENERS")
    advertised = kafka_listeners(service, "KAFKA_ADVERTISED_LISTENERS")
    protocols = dict(
        item.split(":") for item in env.get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "").split(",")
    )
    controllers = env.get("KAFKA_CONTROLLER_LISTENER_NAMES", "").split(",")
    inter_broker = env.get("KAFKA_INTER_BROKER_LISTENER_NAME", "")
    for listener in listeners:
        if listener not in protocols:
            problems.append(f"{name}: listener {listener} has no security protocol")
    for listener, address in advertised.items():
        if listener not in listeners:
            problems.append(f"{name}: advertised listener {listener} is not a listener")
        elif _port(address) != _port(listeners[listener]):
            problems.append(f"{name}: {listener} is advertised on another port than it binds")
        if listener in controllers:
            problems.append(f"{name}: the controller listener {listener} must not be advertised")
    for listener in [*controllers, inter_broker]:
        if listener not in listeners:
            problems.append(f"{name}: {listener} is named but is not a listener")
    voters = env.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "")
    node, _, voter = voters.partition("@")
    hosts = {name, service.get("hostname", name)}
    if node != str(env.get("KAFKA_NODE_ID")) or voter.rpartition(":")[0] not in hosts:
        problems.append(f"{name}: quorum voters {voters!r} are not this node")
    elif controllers and _port(voter) != _port(listeners.get(controllers[0], ":0")):
        problems.append(f"{name}: quorum voter port is not the controller listener's")
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    ):
        if env.get(key) != "1":
            problems.append(f"{name}: {key} must be 1 on one node (is {env.get(key)})")
    return problems


def port_problems(compose: Compose) -> list[str]:
    """Published ports that are malformed, taken twice, or lead to nothing listening."""
    problems = []
    taken: dict[tuple[str, int], str] = {}
    for name, service in compose["services"].items():
        for spec in service.get("ports") or []:
            if not isinstance(spec, str):
                problems.append(f"{name}: write port {spec!r} as a quoted string")
                continue
            parts = spec.split(":")
            if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[-2:]):
                problems.append(f"{name}: port {spec!r} is not [IP:]HOST:CONTAINER")
                continue
            ip = parts[0] if len(parts) == 3 else "0.0.0.0"
            host, container = int(parts[-2]), int(parts[-1])
            if not (0 < host < 65536 and 0 < container < 65536):
                problems.append(f"{name}: port {spec!r} is out of range")
            clashes = [
                other
                for (other_ip, other_host), other in taken.items()
                if other_host == host and (other_ip == ip or "0.0.0.0" in (ip, other_ip))
            ]
            if clashes:
                problems.append(f"{name}: host port {host} is also published by {clashes[0]}")
            taken[(ip, host)] = name
            if container not in listening_ports(name, service):
                problems.append(f"{name}: publishes {container}, where nothing listens")
    return problems


def health_problems(compose: Compose) -> list[str]:
    """Health checks on the wrong port or path; long-running shadow services without one."""
    expected_paths = {"mock-llm": "/health", "capture": "/shadow/health", "mirror": "/metrics"}
    problems = []
    for name, ctx in shadow_contexts(compose).items():
        service = compose["services"][name]
        command = ctx.command.name or ""
        test = " ".join(str(part) for part in (service.get("healthcheck") or {}).get("test", []))
        if command not in expected_paths:
            continue
        match = _HEALTH_URL.search(test)
        if match is None:
            problems.append(f"{name}: no HTTP health check")
            continue
        if int(match["port"]) not in listening_ports(name, service):
            problems.append(f"{name}: health check on port {match['port']}, not the service's")
        if match["path"] != expected_paths[command]:
            problems.append(
                f"{name}: health check on {match['path']}, not {expected_paths[command]}"
            )
    return problems


def dependency_problems(compose: Compose) -> list[str]:
    """depends_on naming missing services, impossible conditions or inactive profiles."""
    services = compose["services"]
    problems = []
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {target: {"condition": "service_started"} for target in depends}
        for target, spec in depends.items():
            if target not in services:
                problems.append(f"{name}: depends on {target}, which does not exist")
                continue
            condition = (spec or {}).get("condition", "service_started")
            if condition not in _DEPENDS_CONDITIONS:
                problems.append(f"{name}: unknown depends_on condition {condition}")
            if condition == "service_healthy" and "healthcheck" not in services[target]:
                problems.append(f"{name}: waits for {target} to be healthy; it has no healthcheck")
            if (
                condition == "service_completed_successfully"
                and services[target].get("restart", "no") != "no"
            ):
                problems.append(f"{name}: waits for {target} to complete; it restarts")
            if services[target].get("profiles") and not service.get("profiles"):
                problems.append(f"{name}: depends on {target}, which only runs in a profile")
    return problems


def environment_problems(compose: Compose, raw: str) -> list[str]:
    """Interpolations without a default, container-shell variables the service does not set."""
    problems = []
    for match in _INTERPOLATION.finditer(raw):
        if match["op"] not in (":-", "-"):
            problems.append(f"${{{match['name']}}} has no default: docker compose needs it set")
    for name, service in compose["services"].items():
        env = _environment(service)
        for text in _strings({k: v for k, v in service.items() if k != "environment"}):
            for match in _ESCAPED.finditer(text):
                if match["name"] not in env:
                    problems.append(f"{name}: uses ${match['name']}, which it does not set")
        for key, value in env.items():
            if value == "":
                problems.append(f"{name}: {key} is empty")
    return problems


def volume_problems(compose: Compose) -> list[str]:
    """Named volumes not declared; results or spool paths that are not on a volume."""
    declared = set(compose.get("volumes") or {})
    problems = []
    for name, service in compose["services"].items():
        mounts = {}
        for spec in service.get("volumes") or []:
            source, _, target = str(spec).partition(":")
            target = target.partition(":")[0]
            mounts[target] = source
            if not source.startswith((".", "/", "~")) and source not in declared:
                problems.append(f"{name}: volume {source} is not declared")
        if not is_shadow(service):
            continue
        ctx = resolve(command_args(service))
        # What a service writes and must outlive it: results, and the sidecar's spool.
        writes = {"replay": "out", "mirror": "out", "capture": "spool_dir"}.get(
            ctx.command.name or ""
        )
        path = str(ctx.params.get(writes) or "") if writes else ""
        if path and not any(
            path == target or path.startswith(target.rstrip("/") + "/") for target in mounts
        ):
            problems.append(f"{name}: {path} is not on a volume; it is lost with the container")
    return problems


ALL_CHECKS = (
    command_problems,
    address_problems,
    kraft_problems,
    port_problems,
    health_problems,
    dependency_problems,
    volume_problems,
)
