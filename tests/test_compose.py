"""docker-compose.yml and the Dockerfile, checked without Docker: every shadow command line in
the stack parses with the real CLI, URLs and bootstraps name real services and listeners, Kafka
runs in KRaft mode, ports, health checks, dependencies, volumes and interpolations are sound.

The checks are functions that return a list of problems, so the tests can also show that each
one fails on a broken stack.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from tests.compose_checks import (
    ALL_CHECKS,
    COMPOSE,
    Compose,
    address_problems,
    command_args,
    command_problems,
    dependency_problems,
    environment_problems,
    health_problems,
    interpolate,
    is_shadow,
    kraft_problems,
    port_problems,
    resolve,
    shadow_contexts,
    volume_problems,
)


@pytest.fixture(scope="module")
def compose() -> Compose:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


# -- the stack as committed ---------------------------------------------------------------


def test_expected_services_exist(compose: Compose) -> None:
    """Kafka, the topic step, two pipelines, the sidecar, the replayer and the mirror are there."""
    services = compose["services"]
    assert {"kafka", "baseline", "candidate", "sidecar", "replay", "mirror"} <= set(services)
    for name in ("replay", "mirror"):  # not started by a plain `docker compose up`
        assert services[name].get("profiles"), name
    assert services["replay"]["restart"] == "no"
    for name, service in services.items():
        assert "image" in service or "build" in service, name


@pytest.mark.parametrize(
    "name", ["baseline", "candidate", "sidecar", "replay", "analyze", "mirror"]
)
def test_shadow_command_parses_with_the_real_cli(compose: Compose, name: str) -> None:
    """Each service's command resolves through shadow's click CLI: no invented options."""
    service = compose["services"][name]
    assert is_shadow(service)
    ctx = resolve(command_args(service))
    expected = {
        "baseline": "mock-llm",
        "candidate": "mock-llm",
        "sidecar": "capture",
        "replay": "replay",
        "analyze": "analyze",
        "mirror": "mirror",
    }[name]
    assert ctx.command.name == expected


def test_the_stack_wires_what_the_brief_asks(compose: Compose) -> None:
    """Profiles, the replay's arms and noise floor, the sidecar's tee, the mirror's metrics."""
    contexts = shadow_contexts(compose)
    assert contexts["baseline"].params["profile"] == "large"
    assert contexts["candidate"].params["profile"] == "routed"
    sidecar = contexts["sidecar"].params
    assert (sidecar["upstream"], sidecar["listen"]) == ("http://baseline:8000", "0.0.0.0:8080")
    assert (sidecar["kafka"], sidecar["topic"]) == ("kafka:9092", "shadow.traces")
    replay = contexts["replay"].params
    assert replay["source"] == "kafka://kafka:9092/shadow.traces"
    assert (replay["baseline"], replay["candidate"]) == (
        "http://baseline:8000",
        "http://candidate:8000",
    )
    assert replay["repeat_baseline"] is True
    assert replay["out"] == "/results/run.duckdb"
    assert replay["group_id"] is None  # each replay reads the topic from the beginning
    assert contexts["mirror"].params["metrics_port"] == 9464
    assert "8080:8080" in compose["services"]["sidecar"]["ports"]
    # The live path never waits for Kafka (the sidecar spools), so neither does its start.
    assert compose["services"]["sidecar"]["depends_on"]["kafka"]["condition"] == "service_started"


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda check: check.__name__)
def test_stack_passes_check(compose: Compose, check: Any) -> None:
    """The committed stack has no problem that the check can find."""
    assert check(compose) == []


def test_interpolations_have_defaults_and_variables_are_set(compose: Compose) -> None:
    """`docker compose config` needs no .env; every variable a container reads is set."""
    assert environment_problems(compose, COMPOSE.read_text()) == []
    replay = command_args(compose["services"]["replay"])
    assert replay[replay.index("--speed") + 1] == "1"
    fast = [
        interpolate(arg, {"SHADOW_REPLAY_SPEED": "10"})
        for arg in compose["services"]["replay"]["command"]
    ]
    assert resolve(fast).params["speed"] == 10.0


# -- the checks can fail ------------------------------------------------------------------


def _with_command(compose: Compose, name: str, command: list[str] | str) -> Compose:
    broken = copy.deepcopy(compose)
    broken["services"][name]["command"] = command
    return broken


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("replay", ["replay", "kafka://kafka:9092/shadow.traces", "--no-such-flag"]),
        (
            "sidecar",
            "capture --upstream http://baseline:8000 --listen 0.0.0.0:8080 --kafak kafka:9092",
        ),
        ("baseline", ["mock-llm", "--host", "0.0.0.0", "--port", "8000", "--profile", "huge"]),
        ("baseline", ["mock-llm", "--port", "eighty"]),
        ("replay", ["replya", "kafka://kafka:9092/shadow.traces"]),
        ("replay", ["replay"]),  # SOURCE is required
        ("mirror", ["mirror", "kafka://kafka:9092/shadow.traces", "--metrics-port", "70000"]),
    ],
)
def test_command_check_rejects_a_broken_command(
    compose: Compose, name: str, command: list[str] | str
) -> None:
    """A misspelt option, bad value, unknown command or missing argument is reported."""
    problems = command_problems(_with_command(compose, name, command))
    assert len(problems) == 1
    assert problems[0].startswith(f"{name}: ")


def test_address_check_rejects_unknown_services_ports_and_bootstraps(compose: Compose) -> None:
    """A URL to a missing service or closed port, or Kafka on its host listener, is reported."""
    replay = compose["services"]["replay"]["command"]
    wrong_host = [arg.replace("candidate:8000", "candidat:8000") for arg in replay]
    wrong_port = [arg.replace("baseline:8000", "baseline:8001") for arg in replay]
    external = [arg.replace("kafka:9092", "localhost:9094") for arg in replay]
    for command, expected in (
        (wrong_host, "names no service"),
        (wrong_port, "does not listen on that port"),
        (external, "not an internal listener"),
    ):
        problems = address_problems(_with_command(compose, "replay", command))
        assert len(problems) == 1, problems
        assert expected in problems[0]
    local = _with_command(
        compose, "candidate", ["mock-llm", "--port", "8000", "--profile", "routed"]
    )
    assert any("unreachable" in p for p in address_problems(local))


def test_structural_checks_reject_broken_stacks(compose: Compose) -> None:
    """Zookeeper, a dangling depends_on, a clash of host ports, a stray variable all show up."""
    zk = copy.deepcopy(compose)
    zk["services"]["zookeeper"] = {"image": "confluentinc/cp-zookeeper:7.6.0"}
    assert kraft_problems(zk)
    no_roles = copy.deepcopy(compose)
    no_roles["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] = "broker"
    assert kraft_problems(no_roles)

    dangling = copy.deepcopy(compose)
    dangling["services"]["sidecar"]["depends_on"]["kafak"] = {"condition": "service_started"}
    assert dependency_problems(dangling) == ["sidecar: depends on kafak, which does not exist"]
    unhealthy = copy.deepcopy(compose)
    del unhealthy["services"]["baseline"]["healthcheck"]
    assert any("no healthcheck" in p for p in dependency_problems(unhealthy))

    clash = copy.deepcopy(compose)
    clash["services"]["candidate"]["ports"] = ["127.0.0.1:8001:8000"]
    assert any("host port 8001" in p for p in port_problems(clash))
    nothing = copy.deepcopy(compose)
    nothing["services"]["sidecar"]["ports"] = ["8080:9000"]
    assert port_problems(nothing) == ["sidecar: publishes 9000, where nothing listens"]

    wrong_health = copy.deepcopy(compose)
    wrong_health["services"]["sidecar"]["healthcheck"]["test"] = [
        "CMD", "python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/health')"
    ]  # fmt: skip
    assert health_problems(wrong_health) == ["sidecar: health check on /health, not /shadow/health"]

    raw = COMPOSE.read_text() + "\n# ${SHADOW_UNSET}\n"
    assert environment_problems(compose, raw) == [
        "${SHADOW_UNSET} has no default: docker compose needs it set"
    ]
    stray = copy.deepcopy(compose)
    stray["services"]["kafka"]["healthcheck"]["test"] = ["CMD-SHELL", "echo $$KAFKA_NOPE"]
    assert environment_problems(stray, "") == ["kafka: uses $KAFKA_NOPE, which it does not set"]

    lost = _with_command(
        compose, "replay", [*compose["services"]["replay"]["command"][:-1], "/tmp/run.duckdb"]
    )
    assert volume_problems(lost) == [
        "replay: /tmp/run.duckdb is not on a volume; it is lost with the container"
    ]
