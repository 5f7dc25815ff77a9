"""deploy/systemd/: the units parse (``systemd-analyze verify`` where it is installed) and carry
the hardening the deployment promises."""

from __future__ import annotations

import ipaddress
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.support import (
    DEPLOY,
    ENV_EXAMPLE,
    INSTALLED_BIN,
    VENV_BIN,
    parse_environment_file,
    relocate,
)

UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
#: The command each unit runs (after the installed script).
COMMANDS = {"mappa-gateway.service": "serve", "mappa-gateway-relay.service": "relay"}
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "PrivateTmp": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "ProtectHome": "yes",
    "PrivateDevices": "yes",
    "RestrictSUIDSGID": "yes",
    "SystemCallArchitectures": "native",
}


def _service(unit: Path) -> dict[str, list[str]]:
    """The [Service] section; a key given several times keeps every value."""
    values: dict[str, list[str]] = {}
    section = None
    for line in unit.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("["):
            section = stripped.strip("[]")
            continue
        if section == "Service":
            name, _, value = stripped.partition("=")
            values.setdefault(name.strip(), []).append(value.strip())
    return values


def test_there_is_a_unit_for_the_gateway_and_one_for_the_relay() -> None:
    assert {unit.name for unit in UNITS} == set(COMMANDS)


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_hardening(unit: Path) -> None:
    service = _service(unit)
    for name, value in HARDENING.items():
        assert service.get(name) == [value], name
    assert service["User"] == ["mappa"] and service["Group"] == ["mappa"]
    assert service["EnvironmentFile"] == ["/etc/mappa-gateway/gateway.env"]
    assert service["UMask"] == ["0077"]
    # Only the checkpoint witness's folder is writable, and only by the gateway.
    writable = service.get("ReadWritePaths", [])
    if unit.name == "mappa-gateway.service":
        witness = _environment_value("MAPPA_AUDIT_CHECKPOINT_FILE")
        assert writable == [str(Path(witness).parent)]
        assert not Path(_environment_value("MAPPA_KEYS_DIR")).is_relative_to(writable[0])
    else:
        assert writable == []


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_the_unit_runs_the_installed_command_without_migrating(unit: Path) -> None:
    (command,) = _service(unit)["ExecStart"]
    words = shlex.split(command)
    assert words[0] == f"{INSTALLED_BIN}/mappa-gateway"
    assert words[1] == COMMANDS[unit.name]
    assert "--no-migrate" in words  # the application's database role cannot migrate


def test_the_relay_serves_its_metrics_on_a_private_address_haproxy_never_forwards_to() -> None:
    """The relay unit opens its metrics listener on a private address of its own (set in the
    unit: a value in gateway.env would win over it), a port the HAProxy backends do not name."""
    relay = _service(DEPLOY / "systemd" / "mappa-gateway-relay.service")
    values = dict(entry.split("=", 1) for entry in relay.get("Environment", []))
    host = ipaddress.ip_address(values["MAPPA_RELAY_METRICS_HOST"])
    assert host.is_private and not host.is_loopback and not host.is_unspecified
    port = int(values["MAPPA_RELAY_METRICS_PORT"])
    assert 1024 < port < 65536
    declared = parse_environment_file(ENV_EXAMPLE.read_text())
    assert not [name for name in declared if name.startswith("MAPPA_RELAY_METRICS_")]
    haproxy = (DEPLOY / "haproxy" / "haproxy.cfg").read_text()
    assert f"{host}" not in haproxy and f":{port}" not in haproxy


def _environment_value(name: str) -> str:
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.startswith(name + "="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{name} not set in {ENV_EXAMPLE.name}")


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_analyze_verify(unit: Path, tmp_path: Path) -> None:
    """systemd's own parser: no unknown key, no bad value. The installed script's path and the
    site's folders are pointed at this checkout and a temporary directory, so that what is
    checked is the unit itself."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the parser tests above stand in for it")
    text = relocate(unit.read_text().replace(INSTALLED_BIN, str(VENV_BIN)), tmp_path)
    for folder in ("etc/mappa-gateway", "var/lib/mappa-gateway/audit"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / "etc/mappa-gateway/gateway.env").write_text(ENV_EXAMPLE.read_text())
    copy = tmp_path / unit.name
    copy.write_text(text)
    checked = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60
    )
    output = (checked.stdout + checked.stderr).strip()
    assert checked.returncode == 0, output
    assert unit.name not in output and "Unknown" not in output, output
