"""Deployment files: the Dockerfile, docker-compose.yml, its config and the systemd unit.

No Docker engine is needed: the compose files are validated against the Compose
Specification's JSON schema (the copy that the check-jsonschema package ships), the
Dockerfile is read instruction by instruction and its health check is run against a
real daemon, and the systemd unit is checked by ``systemd-analyze``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request
from importlib.resources import files
from pathlib import Path, PurePosixPath
from typing import Any

import apprise
import jsonschema
import pytest
import yaml
from sqlalchemy.engine import make_url

from monitor.config import load_config
from tests.support.net import free_port, wait_until
from tests.support.smtp import SmtpSink

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
COMPOSE_CONFIG = REPO / "deploy" / "monitor.compose.yaml"
EXAMPLE_CONFIG = REPO / "config" / "monitor.yaml"
UNIT = REPO / "deploy" / "feed-monitor.service"
COMPOSE_ENV = {"POSTGRES_PASSWORD": "pg-Secret-4242", "ALERT_EMAIL_TO": "ops@example.org"}


# -- Compose ----------------------------------------------------------------------------


def compose_files() -> list[Path]:
    found = {
        p
        for pattern in ("docker-compose*.y*ml", "compose*.y*ml")
        for folder in (REPO, REPO / "deploy")
        for p in folder.glob(pattern)
    }
    return sorted(found)


def compose_validator() -> jsonschema.protocols.Validator:
    text = files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    schema = json.loads(text.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_compose_files_are_found() -> None:
    assert COMPOSE in compose_files()


@pytest.mark.parametrize("path", compose_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_compose_file_matches_the_compose_specification(path: Path) -> None:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = [
        f"{'.'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}"
        for e in compose_validator().iter_errors(doc)
    ]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize(
    "key, value",
    [
        ("stop_grace_period", 30),
        ("depends_on", {"postgres": {"condition": "healthy"}}),
        ("restart", ["always"]),
        ("helthcheck", {}),
    ],
)
def test_compose_schema_rejects_a_broken_file(key: str, value: object) -> None:
    doc = compose()
    assert not list(compose_validator().iter_errors(doc))
    doc["services"]["monitor"][key] = value
    assert list(compose_validator().iter_errors(doc)), f"{key}: {value!r} was accepted"


def test_compose_wiring() -> None:
    doc = compose()
    services = doc["services"]
    assert {"monitor", "postgres", "mailpit", "monitor-sqlite"} <= set(services)
    monitor, sqlite, pg, mailpit = (
        services[n] for n in ("monitor", "monitor-sqlite", "postgres", "mailpit")
    )

    assert pg["image"].startswith("postgres:16-alpine")
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert monitor["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert mailpit["image"].split(":")[0] == "axllent/mailpit"
    assert any(str(p).endswith(":8025") for p in mailpit["ports"])

    # Both monitor services are built from the Dockerfile; SQLite-only runs only when named.
    for svc in (monitor, sqlite):
        assert svc["build"] == "."
        assert _seconds(svc["stop_grace_period"]) > _default_grace()
    assert sqlite["profiles"] == ["sqlite"] and "profiles" not in monitor

    # Named volumes are declared; the config folders exist and hold the configs used.
    for svc in services.values():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).is_dir(), vol
            else:
                assert source in doc["volumes"], vol
    assert "./deploy:/config:ro" in monitor["volumes"]
    assert monitor["command"] == ["run", "-c", "/config/monitor.compose.yaml"]
    assert monitor["environment"]["FEED_MONITOR_CONFIG"] == "/config/monitor.compose.yaml"
    assert "./config:/config:ro" in sqlite["volumes"]
    assert "monitor-data:/data" in sqlite["volumes"]
    assert "command" not in sqlite  # the image's: run -c /config/monitor.yaml

    # Every ${NAME} without a default in the compose config is passed to the container.
    needed = set(re.findall(r"\$\{(\w+)\}", COMPOSE_CONFIG.read_text(encoding="utf-8")))
    assert needed and needed <= set(monitor["environment"])
    # ... and the database password is the one PostgreSQL is given.
    assert monitor["environment"]["POSTGRES_PASSWORD"] == pg["environment"]["POSTGRES_PASSWORD"]


def _default_grace() -> float:
    from monitor.cli import _parser

    return float(_parser().parse_args(["run"]).grace)


def _seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|min)?", str(value))
    assert m, value
    return float(m[1]) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60}[m[2]]


# -- the compose config ----------------------------------------------------------------


def test_compose_config_passes_check(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**os.environ, **COMPOSE_ENV}
    out = subprocess.run(
        [sys.executable, "-m", "monitor", "check", "-c", str(COMPOSE_CONFIG)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    # One masking policy: a password shows as **** in every output.
    assert "postgresql+psycopg://feed_monitor:****@postgres:5432/feed_monitor" in out.stdout
    assert COMPOSE_ENV["POSTGRES_PASSWORD"] not in out.stdout + out.stderr

    # Without the password it is refused, naming the variable.
    env.pop("POSTGRES_PASSWORD")
    out = subprocess.run(
        [sys.executable, "-m", "monitor", "check", "-c", str(COMPOSE_CONFIG)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "POSTGRES_PASSWORD" in out.stderr


def test_compose_config_has_the_example_feeds_and_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in COMPOSE_ENV.items():
        monkeypatch.setenv(k, v)
    example = load_config(EXAMPLE_CONFIG).config
    cfg = load_config(COMPOSE_CONFIG).config
    assert cfg.feeds == example.feeds
    assert cfg.defaults == example.defaults
    assert [r.model_copy(update={"notify": []}) for r in cfg.rules] == [
        r.model_copy(update={"notify": []}) for r in example.rules
    ]
    assert all(set(r.notify) == {"console", "email"} for r in cfg.rules)
    assert cfg.http.host_port() == ("0.0.0.0", 9321)
    url = make_url(cfg.database)
    assert (url.drivername, url.host, url.password) == (
        "postgresql+psycopg",
        "postgres",
        COMPOSE_ENV["POSTGRES_PASSWORD"],
    )
    pg_env = compose()["services"]["postgres"]["environment"]
    assert (url.username, url.database) == (pg_env["POSTGRES_USER"], pg_env["POSTGRES_DB"])


def test_compose_email_channel_speaks_plain_smtp(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Mailpit URL sends without TLS and without a login, to the address configured."""
    for k, v in COMPOSE_ENV.items():
        monkeypatch.setenv(k, v)
    [url] = load_config(COMPOSE_CONFIG).config.channels["email"].urls
    assert url.startswith("mailto://mailpit:1025?")
    plugin = apprise.Apprise.instantiate(url)
    assert plugin is not None and plugin.secure_mode == "insecure" and not plugin.secure

    with SmtpSink() as sink:
        local = url.replace("mailpit:1025", f"127.0.0.1:{sink.port}", 1)
        sender = apprise.Apprise()
        assert sender.add(local)
        assert sender.notify(title="中俄 test", body="乌克兰 body")
        [mail] = sink.wait_for(1)
    assert mail.login is None
    assert mail.rcpt_tos == (COMPOSE_ENV["ALERT_EMAIL_TO"],)
    assert "中俄 test" in mail.subject and "乌克兰 body" in mail.text


# -- Dockerfile ------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        out.append((keyword.upper(), " ".join(rest.split())))
        current = ""
    assert not current, "Dockerfile ends inside a continuation line"
    return out


def readme_install_steps() -> list[str]:
    """The README's quick-start run command, up to the `feed-monitor run` step."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    commands = [
        line
        for block in re.findall(r"```sh\n(.*?)```", readme, re.S)
        for line in block.splitlines()
        if re.search(r"feed-monitor run -c\b", line) and " && " in line
    ]
    assert commands, "README has no `... && .venv/bin/feed-monitor run -c ...` command"
    steps = [s.strip() for s in commands[0].split(" && ")]
    run = next(i for i, s in enumerate(steps) if "feed-monitor run" in s)
    assert run > 0, "README's run command has no install steps"
    return steps[:run]


def test_dockerfile_installs_with_the_readme_command() -> None:
    instructions = dockerfile()
    runs = [(i, args) for i, (kw, args) in enumerate(instructions) if kw == "RUN"]
    install = readme_install_steps()
    assert install[0].startswith("python3 -m venv .venv")
    matching = [
        (i, args.split(" && ")) for i, args in runs if args.split(" && ")[: len(install)] == install
    ]
    assert matching, f"no RUN starts with the README's install steps {install}"
    [(index, steps)] = matching

    # Anything after them only adds documented extras the same way, or checks the result.
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    for step in steps[len(install) :]:
        extra = re.fullmatch(r"\.venv/bin/pip install -e '\.\[(\w+)\]'", step)
        if extra:
            assert f"pip install -e '.[{extra[1]}]'" in readme
            assert re.search(rf"^{extra[1]} = \[", pyproject, re.M)
        else:
            assert step == ".venv/bin/feed-monitor --version", step
    assert any("[postgres]" in s for s in steps), "the image needs the PostgreSQL driver"

    # ... run in /app, on a copy of the repository.
    before = instructions[:index]
    assert [a for kw, a in before if kw == "WORKDIR"][-1] == "/app"
    assert ("COPY", ". /app") in before


def test_dockerfile_runtime() -> None:
    instructions = dockerfile()
    kws = [kw for kw, _ in instructions]
    args = {kw: a for kw, a in instructions}  # the last of each
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", instructions[0][1]), instructions[0]

    assert args["USER"] not in ("root", "0")
    assert kws.index("USER") > max(i for i, k in enumerate(kws) if k == "RUN")
    assert set(json.loads(args["VOLUME"])) == {"/config", "/data"}
    assert args["STOPSIGNAL"] == "SIGTERM"
    assert json.loads(args["ENTRYPOINT"]) + json.loads(args["CMD"]) == [
        "feed-monitor",
        "run",
        "-c",
        "/config/monitor.yaml",
    ]

    # From the final working directory the example config's relative paths land in
    # the volumes: the default -c config/monitor.yaml and the SQLite file.
    workdir = PurePosixPath(args["WORKDIR"])
    db = make_url(load_config(EXAMPLE_CONFIG).config.database).database
    assert workdir / db == PurePosixPath("/data/feed-monitor.db")
    from monitor.cli import DEFAULT_CONFIG

    assert workdir / DEFAULT_CONFIG == PurePosixPath("/config/monitor.yaml")
    env = dockerfile_env()
    assert env["FEED_MONITOR_CONFIG"] == "/config/monitor.yaml"
    assert env["PATH"].startswith("/app/.venv/bin:")


def test_dockerignore_keeps_what_the_install_needs() -> None:
    patterns = [
        ln.strip()
        for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    for needed in ("pyproject.toml", "README.md", "monitor", "monitor/store/migrations"):
        assert not any(
            PurePosixPath(needed).match(p) or needed == p or needed.startswith(p.rstrip("/") + "/")
            for p in patterns
        ), needed
    for unwanted in (".venv", ".git", "data", "tests"):
        assert unwanted in patterns


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for kw, args in dockerfile():
        if kw == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def healthcheck_command() -> list[str]:
    [args] = [a for kw, a in dockerfile() if kw == "HEALTHCHECK"]
    options, _, cmd = args.partition(" CMD ")
    assert re.search(r"--timeout=\d+s", options)
    command = json.loads(cmd)
    assert command[0] == "python3"  # no curl or wget in a slim image
    return [sys.executable, *command[1:]]


def test_healthcheck_and_sigterm_against_a_running_daemon(tmp_path: Path) -> None:
    """The image's health check passes on a running daemon, fails once it has stopped;
    SIGTERM stops it with exit 0; a relative SQLite path lands in the working directory."""
    port = free_port()
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "monitor.yaml").write_text(
        f"database: sqlite:///data/feed-monitor.db\nhttp:\n  listen: 127.0.0.1:{port}\n",
        encoding="utf-8",
    )
    health_url = dockerfile_env()["FEED_MONITOR_HEALTH_URL"]
    assert health_url == "http://127.0.0.1:9321/healthz"
    env = {**os.environ, "FEED_MONITOR_HEALTH_URL": health_url.replace("9321", str(port))}
    env.pop("FEED_MONITOR_CONFIG", None)

    daemon = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--grace", "5"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def healthy() -> bool:
            assert daemon.poll() is None, daemon.stdout.read() if daemon.stdout else ""
            return (
                subprocess.run(
                    healthcheck_command(), env=env, capture_output=True, timeout=10
                ).returncode
                == 0
            )

        wait_until(healthy, timeout=30, interval=0.2, message="health check never passed")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert json.load(r)["status"] == "ok"
        assert (tmp_path / "data" / "feed-monitor.db").is_file()

        # Stopped within the harness's wait (grace 5 s), and by the signal: it says so.
        daemon.send_signal(signal.SIGTERM)
        output, _ = daemon.communicate(timeout=15)
        assert daemon.returncode == 0, output
        assert "received SIGTERM, stopping" in output, output
        assert re.search(r"\bstopped$", output, re.M), output
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    failed = subprocess.run(healthcheck_command(), env=env, capture_output=True, timeout=10)
    assert failed.returncode != 0


# -- systemd ---------------------------------------------------------------------------


def unit() -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, line
        key, sep, value = line.partition("=")
        assert sep, line
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemd_unit_hardening() -> None:
    service = unit()["Service"]

    def one(key: str) -> str:
        assert key in service, f"{key}= missing"
        return service[key][-1]

    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "StateDirectory": "feed-monitor",
        "ConfigurationDirectory": "feed-monitor",
        "KillSignal": "SIGTERM",
        "Restart": "on-failure",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "ReadWritePaths": "/var/lib/feed-monitor",
        "WorkingDirectory": "/var/lib/feed-monitor",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet": "",
    }.items():
        assert one(key) == value, key
    assert "@system-service" in service["SystemCallFilter"]
    assert "MemoryDenyWriteExecute" not in service  # see the comment in the unit
    assert one("User") not in ("root", "0") or one("DynamicUser") == "yes"
    assert one("EnvironmentFile").lstrip("-").startswith("/etc/feed-monitor/")

    # Stopping waits longer than the daemon's grace period.
    exec_start = shlex.split(one("ExecStart"))
    assert exec_start[0].endswith("/.venv/bin/feed-monitor") and exec_start[1] == "run"
    grace = (
        float(exec_start[exec_start.index("--grace") + 1])
        if "--grace" in exec_start
        else _default_grace()
    )
    assert _seconds(one("TimeoutStopSec")) > grace
    config = exec_start[exec_start.index("-c") + 1]
    assert config.startswith("/etc/feed-monitor/")
    # The example config's relative SQLite path lands in the state directory.
    db = make_url(load_config(EXAMPLE_CONFIG).config.database).database
    assert (PurePosixPath(one("WorkingDirectory")) / db).is_relative_to(
        "/var/lib/" + one("StateDirectory")
    )


def _unit_for_verify(tmp_path: Path) -> Path:
    """The unit with ExecStart's program pointed at this checkout's, which exists here."""
    program = Path(sys.executable).parent / "feed-monitor"
    assert program.exists(), program
    text = UNIT.read_text(encoding="utf-8")
    installed = shlex.split(unit()["Service"]["ExecStart"][-1])[0]
    path = tmp_path / UNIT.name
    path.write_text(text.replace(installed, str(program)), encoding="utf-8")
    return path


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze not found (Debian package systemd)"
    path = _unit_for_verify(tmp_path)
    out = subprocess.run(
        [tool, "verify", "--man=no", str(path)], capture_output=True, text=True, timeout=60
    )
    # Unknown keys and bad values are only warnings: any output is a failure here.
    assert out.returncode == 0 and not out.stderr.strip() and not out.stdout.strip(), (
        out.stdout + out.stderr
    )

    out = subprocess.run(
        [tool, "security", "--offline=yes", "--no-pager", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", out.stdout + out.stderr)
    assert m, out.stdout + out.stderr
    assert float(m[1]) <= 2.0, out.stdout
