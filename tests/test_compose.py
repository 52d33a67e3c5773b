"""docker-compose.yml, the Dockerfile and the configs they mount, checked without Docker.

No Docker engine runs here, so each piece is checked by the tool that owns it:
docker-compose validates the compose file (`config` needs no engine), promtool the
Prometheus config and the rule files it loads, amtool the Alertmanager config, perfgen's
own loaders the proxy and simulator configs, and pip builds the wheel from exactly the
files the Dockerfile's build context would hold.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager.yml"
PROXY_CONFIG = ROOT / "deploy" / "compose" / "config.toml"
SIMULATOR_CONFIG = ROOT / "deploy" / "compose" / "simulator.toml"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

SERVICES = {
    "config-init",
    "simulator",
    "exporter",
    "generator",
    "prometheus",
    "alertmanager",
    "alert-log",
    "grafana",
}
# What the Prometheus config expects each perfgen service to listen on.
EXPORTER_ADDRESS = "exporter:9470"
GENERATOR_ADDRESS = "generator:9471"


def docker_compose() -> str:
    found = shutil.which("docker-compose")
    if not found:
        pytest.skip("docker-compose not installed (apt-get install -y docker-compose)")
    return found


def compose_config(*args: str) -> dict[str, Any]:
    """`docker-compose config` output: the file as Compose understands it."""
    # A clean environment: a developer's PERFGEN_CONFIG_DIR must not change the result.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PERFGEN_", "GRAFANA_", "PROXY_", "COMPOSE_"))
    }
    result = subprocess.run(
        [docker_compose(), "-f", str(COMPOSE), *args, "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return compose_config("--profile", "simulator")


def promtool() -> str:
    from perfgen.stack.processes import BinaryMissing, find_binary

    try:
        return find_binary("promtool")
    except BinaryMissing as exc:
        pytest.skip(str(exc))


# --------------------------------------------------------------------------- compose


def test_compose_config_is_valid_without_and_with_the_simulator_profile(
    compose: dict[str, Any],
) -> None:
    default = compose_config()
    assert set(compose["services"]) == SERVICES
    # docker-compose v1's `config` lists profiled services too; `up` without
    # --profile simulator starts only those without a profile.
    unprofiled = {name for name, s in default["services"].items() if not s.get("profiles")}
    assert unprofiled == SERVICES - {"simulator"}


def test_published_ports_are_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            text = port if isinstance(port, str) else f"{port.get('host_ip')}:{port}"
            assert text.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_bind_mounts_exist(compose: dict[str, Any]) -> None:
    """Every host path a service mounts exists, so `up` does not create empty dirs."""
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if source.startswith("/"):
                assert Path(source).exists(), f"{name} mounts missing {source}"


def test_perfgen_services_use_the_contract_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    exporter = services["exporter"]["command"]
    assert exporter[:1] == ["exporter"]
    assert exporter[exporter.index("--listen") + 1] == "0.0.0.0:9470"
    assert exporter[exporter.index("--config") + 1] == "/etc/terraphim/config.toml"
    simulator = services["simulator"]["command"]
    assert simulator[:1] == ["simulate"] and "0.0.0.0:8700" in simulator
    assert services["simulator"]["profiles"] == ["simulator"]
    generator = " ".join(services["generator"]["command"])
    for part in (
        "perfgen generate",
        "--config /etc/terraphim/config.toml",
        "--prometheus http://prometheus:9090",
        "--every 5m",
        "--metrics-listen 0.0.0.0:9471",
    ):
        assert part in generator
    # The exporter reads and the generator writes the same proxy config.
    shared = {
        v.split(":")[0]
        for s in ("exporter", "generator", "config-init")
        for v in services[s]["volumes"]
        if v.split(":")[1] == "/etc/terraphim"
    }
    assert shared == {"proxy-config"}


def test_generator_reload_url_is_optional() -> None:
    """The sh wrapper passes --reload-url only when PROXY_RELOAD_URL is set."""
    raw = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    command = raw["services"]["generator"]["command"][0].replace("$$", "$")
    fake = "echo"  # print the argv instead of running perfgen
    for url, expected in (("", "--reload-url"), ("http://proxy:3456/x", None)):
        script = command.replace("exec perfgen", f"exec {fake} perfgen")
        result = subprocess.run(
            ["sh", "-c", script],
            capture_output=True,
            text=True,
            env={"PROXY_RELOAD_URL": url, "PATH": os.environ["PATH"]},
            timeout=10,
        )
        assert result.returncode == 0, result.stderr
        if expected:
            assert expected not in result.stdout
        else:
            assert f"--reload-url {url}" in result.stdout


# --------------------------------------------------------------------------- Prometheus


def test_prometheus_config_passes_promtool_with_the_rendered_rules() -> None:
    result = subprocess.run(
        [promtool(), "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    # promtool counts the rules of each file: an empty or missing file is no check at all.
    for rule_file in config["rule_files"]:
        path = os.path.normpath(PROMETHEUS_CONFIG.parent / rule_file)
        assert Path(path).is_file(), rule_file
        assert re.search(
            rf"Checking {re.escape(path)}\n\s+SUCCESS: [1-9]\d* rules found", output
        ), output


def test_prometheus_rule_paths_resolve_inside_the_container(compose: dict[str, Any]) -> None:
    """The container mounts the repo layout under /perfgen, so relative paths still work."""
    service = compose["services"]["prometheus"]
    config_file = next(
        a.split("=", 1)[1] for a in service["command"] if a.startswith("--config.file=")
    )
    mounts = {v.split(":")[1]: Path(v.split(":")[0]) for v in service["volumes"]}
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    for rule_file in config["rule_files"]:
        in_container = os.path.normpath(os.path.join(os.path.dirname(config_file), rule_file))
        mount = next(m for m in mounts if in_container.startswith(m + "/"))
        on_host = mounts[mount] / os.path.relpath(in_container, mount)
        assert on_host.resolve() == (PROMETHEUS_CONFIG.parent / rule_file).resolve()


def test_prometheus_jobs_and_relabelling_match_the_local_stack() -> None:
    from perfgen.stack.prometheus_config import probe_relabel_configs

    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"llm_probe", "perfgen_exporter", "perfgen_generator"} <= set(jobs)
    probe = jobs["llm_probe"]
    assert probe["metrics_path"] == "/probe"
    assert probe["honor_labels"] is True
    assert probe["http_sd_configs"][0]["url"] == f"http://{EXPORTER_ADDRESS}/sd"
    assert probe["relabel_configs"] == probe_relabel_configs(EXPORTER_ADDRESS)
    assert jobs["perfgen_exporter"]["static_configs"][0]["targets"] == [EXPORTER_ADDRESS]
    assert jobs["perfgen_generator"]["static_configs"][0]["targets"] == [GENERATOR_ADDRESS]


def test_grafana_time_interval_is_the_probe_scrape_interval() -> None:
    """$__rate_interval is derived from it; too short and probe rates come out empty."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    probe = next(j for j in config["scrape_configs"] if j["job_name"] == "llm_probe")
    datasources = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    prometheus = next(d for d in datasources if d["type"] == "prometheus")
    assert prometheus["jsonData"]["timeInterval"] == probe["scrape_interval"]


# --------------------------------------------------------------------------- Alertmanager


COMPOSE_ALERTMANAGER_CONFIG = ROOT / "deploy" / "compose" / "alertmanager.yml"


@pytest.mark.parametrize(
    "path", [ALERTMANAGER_CONFIG, COMPOSE_ALERTMANAGER_CONFIG], ids=["example", "compose"]
)
def test_alertmanager_config_passes_amtool(path: Path) -> None:
    from perfgen.stack.processes import BinaryMissing, find_binary

    try:
        amtool = find_binary("amtool")
    except BinaryMissing as exc:
        pytest.skip(str(exc))
    result = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Templates it names must be inside what the container mounts (the file itself).
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert not config.get("templates"), "mount the templates in docker-compose.yml too"


def test_compose_alertmanager_reaches_the_alert_log_service(compose: dict[str, Any]) -> None:
    """The same routing as the example, with receivers a container can reach."""
    services = compose["services"]
    command = " ".join(services["alertmanager"]["command"])
    assert "/perfgen/deploy/compose/alertmanager.yml" in command
    assert services["alert-log"]["entrypoint"] == ["python", "-m", "perfgen.stack.webhook"]
    assert "0.0.0.0:5001" in services["alert-log"]["command"]

    example = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    ours = yaml.safe_load(COMPOSE_ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    urls = [
        hook["url"]
        for receiver in ours["receivers"]
        for hook in receiver.get("webhook_configs", [])
    ]
    assert urls and all(url.startswith("http://alert-log:5001/") for url in urls)
    for key in ("route", "inhibit_rules", "global"):
        assert ours.get(key) == example.get(key), f"{key} differs from deploy/alertmanager.yml"
    assert [r["name"] for r in ours["receivers"]] == [r["name"] for r in example["receivers"]]


# --------------------------------------------------------------------------- configs


def test_compose_proxy_config_points_at_the_simulator_service() -> None:
    from perfgen.config import load_config
    from perfgen.simulator.config import load_simulator_config

    config = load_config(PROXY_CONFIG)
    simulator = load_simulator_config(SIMULATOR_CONFIG)
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    environment = compose["services"]["exporter"]["environment"]
    raw = tomllib.loads(PROXY_CONFIG.read_text(encoding="utf-8"))
    keys = {p["name"]: p["api_key"] for p in raw["providers"]}
    assert config.performance.targets
    for provider in config.providers.values():
        match = re.fullmatch(r"http://simulator:8700/([^/]+)(/v1)?", provider.api_base_url)
        assert match, provider.api_base_url
        simulated = simulator.provider(match.group(1))
        assert simulated is not None, provider.name
        assert simulated.protocol == provider.protocol
        # Anthropic clients append /v1/messages themselves; OpenAI ones need the /v1.
        assert bool(match.group(2)) == (provider.protocol == "openai")
        assert set(provider.models) <= {m.name for m in simulated.models}
        # `$NAME` keys: compose's default for NAME is the simulator's key.
        variable = keys[provider.name].removeprefix("$")
        assert environment[variable] == f"${{{variable}:-{simulated.api_key}}}"


# --------------------------------------------------------------------------- image


def _dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's matching for the patterns .dockerignore uses (no `!` exceptions)."""
    for pattern in patterns:
        if pattern.startswith("**/"):
            tail = pattern[3:]
            if any(fnmatch.fnmatch(part, tail) for part in relative.split("/")):
                return True
        elif (
            relative == pattern
            or relative.startswith(pattern + "/")
            or fnmatch.fnmatch(relative, pattern)
        ):
            return True
    return False


def test_dockerfile_shape() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", text, re.MULTILINE)
    assert re.search(r"^RUN pip install \.", text, re.MULTILINE)
    assert re.search(r'^ENTRYPOINT \["perfgen"\]$', text, re.MULTILINE)
    assert re.search(r"^USER (?!root)\w+$", text, re.MULTILINE)


def test_build_context_installs_perfgen(tmp_path: Path) -> None:
    """`pip install .` from the files .dockerignore lets through gives `perfgen`."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    readme = pyproject["project"].get("readme")
    if isinstance(readme, str) and not (ROOT / readme).exists():
        pytest.fail(
            f"pyproject.toml names readme {readme!r}, which does not exist: "
            "`pip install .` in the Dockerfile would fail"
        )
    patterns = _dockerignore_patterns()
    context = tmp_path / "context"
    for path in ROOT.rglob("*"):
        relative = path.relative_to(ROOT).as_posix()
        if path.is_file() and not _ignored(relative, patterns):
            (context / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, context / relative)
    package_dirs = pyproject["tool"]["setuptools"]["package-dir"]
    for package in pyproject["tool"]["setuptools"]["packages"]:
        assert (context / package_dirs[package] / "__init__.py").exists(), package
    # setuptools' egg_info, run in the context as the image build would run it, reads
    # pyproject.toml and the readme and lists the packages' files: what a .dockerignore
    # line can break. (A full wheel build needs the `wheel` package, which the image's
    # isolated build fetches but this machine need not have.)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from setuptools import setup; setup()",
            "egg_info",
            "--egg-base",
            str(tmp_path),
        ],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    egg_info = tmp_path / "perfgen.egg-info"
    entry_points = (egg_info / "entry_points.txt").read_text(encoding="utf-8")
    assert "perfgen = perfgen.cli:main" in entry_points
    sources = (egg_info / "SOURCES.txt").read_text(encoding="utf-8").split()
    for package in pyproject["tool"]["setuptools"]["packages"]:
        assert f"{package_dirs[package]}/__init__.py" in sources, package
