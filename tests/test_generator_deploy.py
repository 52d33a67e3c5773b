"""deploy/: the systemd units and the Kubernetes CronJob treat exit 3 (changed) as success."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "deploy" / "systemd"
CRONJOB = ROOT / "deploy" / "kubernetes" / "cronjob.yaml"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((SYSTEMD / name).read_text().replace("\\\n", " "))
    return parser


def test_service_is_oneshot_and_exit_3_is_success():
    service = unit("perfgen-generate.service")["Service"]
    assert service["Type"] == "oneshot"
    assert service["SuccessExitStatus"] == "3"
    assert "perfgen generate" in service["ExecStart"] and "--config" in service["ExecStart"]
    timer = unit("perfgen-generate.timer")
    assert timer["Timer"]["OnUnitActiveSec"] == "5min"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_systemd_analyze_accepts_the_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    fake = tmp_path / "perfgen"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    for name in ("perfgen-generate.service", "perfgen-generate.timer"):
        text = (SYSTEMD / name).read_text().replace("/usr/local/bin/perfgen", str(fake))
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [
            analyze,
            "verify",
            str(tmp_path / "perfgen-generate.service"),
            str(tmp_path / "perfgen-generate.timer"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("code, expected", [(0, 0), (3, 0), (1, 1), (2, 2)])
def test_cronjob_maps_changed_to_success(tmp_path, code, expected):
    job = yaml.safe_load(CRONJOB.read_text())
    assert job["kind"] == "CronJob" and job["spec"]["concurrencyPolicy"] == "Forbid"
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/bin/sh", "-c"]
    fake = tmp_path / "perfgen"
    fake.write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/args"\nexit {code}\n')
    fake.chmod(0o755)
    env = {
        "PATH": f"{tmp_path}:/usr/bin:/bin",
        "PERFGEN_PROMETHEUS_URL": "http://prom:9090",
        "PROXY_RELOAD_URL": "http://proxy:3456",
    }
    result = subprocess.run(["/bin/sh", "-c", container["args"][0]], env=env)
    assert result.returncode == expected
    args = (tmp_path / "args").read_text()
    assert args.startswith(
        "generate --config /etc/terraphim/config.toml --prometheus "
        "http://prom:9090 --reload-url http://proxy:3456"
    )
