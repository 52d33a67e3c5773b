"""perfgen.listen: the one HOST:PORT reader every server's --listen goes through."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from perfgen.generator.generate_cli import generate
from perfgen.listen import ListenError, display_host, parse_listen


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9470", ("127.0.0.1", 9470)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("localhost:65535", ("localhost", 65535)),
        ("[::1]:9", ("::1", 9)),
        ("[::]:8700", ("::", 8700)),
        ("[fe80::1%eth0]:80", ("fe80::1%eth0", 80)),
    ],
)
def test_good_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("nowhere", "no ':' before the port"),
        ("127.0.0.1:", "port '' is not a number"),
        ("127.0.0.1:http", "port 'http' is not a number"),
        ("127.0.0.1:-1", "port '-1' is not a number"),
        ("127.0.0.1:٣", "port '٣' is not a number"),  # a digit, but not ASCII
        ("127.0.0.1:65536", "port 65536 is above 65535"),
        (":9470", "no host"),
        ("[]:9470", "unbalanced brackets"),
        ("[::1:9470", "unbalanced brackets"),
        ("::1]:9470", "unbalanced brackets"),
        ("[[::1]]:9470", "unbalanced brackets"),
        ("::1:9470", "an IPv6 host needs brackets"),
        ("local host:80", "whitespace in the host"),
    ],
)
def test_bad_addresses_say_why(text: str, why: str) -> None:
    with pytest.raises(ListenError) as caught:
        parse_listen(text)
    assert str(caught.value).startswith(f"{text!r} is not HOST:PORT")
    assert why in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_display_host_brackets_ipv6_only() -> None:
    assert display_host("::1") == "[::1]"
    assert display_host("127.0.0.1") == "127.0.0.1"
    host, port = parse_listen("[::1]:9")
    assert f"{display_host(host)}:{port}" == "[::1]:9"


def test_generator_metrics_listen_uses_the_same_rules(tmp_path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("")
    result = CliRunner().invoke(
        generate,
        [
            "--config",
            str(config),
            "--prometheus",
            "http://127.0.0.1:1",
            "--every",
            "1m",
            "--metrics-listen",
            ":9471",
        ],
    )
    assert result.exit_code == 2
    assert "':9471' is not HOST:PORT" in result.output and "--metrics-listen" in result.output


def test_webhook_receiver_refuses_a_bad_listen() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "perfgen.stack.webhook", "--listen", "::1:5001"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "an IPv6 host needs brackets" in result.stderr
