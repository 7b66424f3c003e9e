"""Static checks of the Docker deployment: no Docker engine needed.

docker-compose.yml is validated against the compose schema, then checked for
what the schema cannot see: dependencies that exist, one image for every Python
service, exactly one beat, commands that are real entry points of the package
(each is resolved the way the container would run it), and DIGEST_* variables
that the settings actually read. The Dockerfile and .dockerignore are parsed
line by line, and the package is built from exactly the files the Docker build
context would hold, then run from that build with the checkout out of reach.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from digest.config import ENV_VARS, Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENTRY_POINTS = ("digest", "celery", "gunicorn")
WEB_PORT = 8000


# --- parsing helpers ---------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    # The safe loader resolves anchors and `<<` merge keys, as docker compose does.
    return YAML(typ="safe", pure=True).load(COMPOSE.read_text())


def read_env_file(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(variables set, variables shown commented out) in a dotenv file."""
    assigned: dict[str, str] = {}
    commented: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        target = assigned
        if line.startswith("#"):
            line = line.lstrip("#").strip()
            target = commented
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line)
        if not match:
            continue
        name, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        target[name] = value
    return assigned, commented


_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


def interpolation_names(value: str) -> set[str]:
    return {m["name"] for m in _INTERPOLATION.finditer(value) if m["name"]}


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error} and $$."""

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"]
        present = name in env
        empty = not env.get(name)
        if op in (":-", ":?"):
            missing = empty
        elif op in ("-", "?"):
            missing = not present
        else:
            return env.get(name, "")
        if not missing:
            return env[name]
        if op.endswith("?"):
            raise AssertionError(f"compose would stop: ${{{name}}} unset: {arg}")
        return arg

    return _INTERPOLATION.sub(replace, value)


def compose_env() -> dict[str, str]:
    """What compose interpolates from once `cp .env.example .env` is done."""
    assigned, _ = read_env_file(ENV_EXAMPLE)
    return assigned


def command_of(service: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    command = service.get("command")
    if command is None:
        return []
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    return [interpolate(a, env) for a in argv]


def python_services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Services running our image: the one that builds it and those naming its tag."""
    services = compose["services"]
    built = {s["image"] for s in services.values() if "build" in s and "image" in s}
    return {name: s for name, s in services.items() if "build" in s or s.get("image") in built}


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM")
    return instructions[last_from:]


def dockerignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _glob_regex(pattern.lstrip("!").strip().strip("/"))
        if any(regex.fullmatch(p) for p in prefixes):
            excluded = not negate
    return excluded


def source_files(*tops: str) -> list[str]:
    files: list[str] = []
    for top in tops:
        path = ROOT / top
        if path.is_file():
            files.append(top)
            continue
        for file in sorted(path.rglob("*")):
            rel = file.relative_to(ROOT).as_posix()
            if file.is_file() and "__pycache__" not in rel and not rel.endswith(".pyc"):
                files.append(rel)
    return files


# --- entry points ------------------------------------------------------------------


def resolve_digest(args: list[str]) -> click.Command:
    """The click command `digest ARGS` runs, or AssertionError saying what is wrong."""
    from digest.cli import cli

    command: click.Command = cli
    ctx = click.Context(cli, info_name="digest")
    for arg in args:
        if arg.startswith("-") or not isinstance(command, click.Group):
            break
        sub = command.get_command(ctx, arg)
        assert sub is not None, f"`digest {' '.join(args)}`: no command {arg!r}"
        command = sub
        ctx = click.Context(command, parent=ctx, info_name=arg)
    result = CliRunner().invoke(cli, [*args, "--help"], prog_name="digest")
    assert result.exit_code == 0, f"`digest {' '.join(args)} --help` failed:\n{result.output}"
    return command


def declared_queues(app: Any) -> set[str]:
    queues = {q.name for q in (app.conf.task_queues or [])}
    queues.add(app.conf.task_default_queue)
    routes = app.conf.task_routes or {}
    for table in routes if isinstance(routes, list | tuple) else [routes]:
        if isinstance(table, Mapping):
            queues |= {
                r["queue"] for r in table.values() if isinstance(r, Mapping) and "queue" in r
            }
    return queues


def task_queues(app: Any) -> dict[str, str]:
    """Where the app's router sends each of our tasks."""
    return {
        name: app.amqp.router.route({}, name)["queue"].name
        for name in list(app.tasks)
        if not name.startswith("celery.")
    }


def celery_app_and_subcommand(args: list[str]) -> tuple[Any, str, list[str]]:
    from celery import Celery
    from celery.app.utils import find_app

    app_name = subcommand = None
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-A", "--app"):
            app_name = args[i + 1]
            i += 2
            continue
        if arg.startswith("--app="):
            app_name = arg.split("=", 1)[1]
        elif subcommand is None and not arg.startswith("-"):
            subcommand = arg
        else:
            rest.append(arg)
        i += 1
    assert app_name, f"`celery {' '.join(args)}`: no -A APP"
    assert subcommand in ("worker", "beat"), f"`celery {' '.join(args)}`: not worker or beat"
    app = find_app(app_name)
    assert isinstance(app, Celery), f"-A {app_name} is {app!r}, not a Celery app"
    return app, subcommand, rest


def option_value(args: list[str], *names: str) -> str | None:
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def resolve_celery(args: list[str], tmp_path: Path) -> tuple[Any, str, list[str]]:
    app, subcommand, rest = celery_app_and_subcommand(args)
    if subcommand == "worker":
        queues = option_value(rest, "-Q", "--queues")
        assert queues, "the worker consumes no explicit queues (-Q)"
        unknown = set(queues.split(",")) - declared_queues(app)
        assert not unknown, f"worker -Q names queues the app never routes to: {sorted(unknown)}"
    # Celery's own option parser has the last word on the flags.
    result = subprocess.run(
        [sys.executable, "-m", "celery", *args, "--help"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"`celery {' '.join(args)} --help`:\n{result.stderr}"
    return app, subcommand, rest


def resolve_gunicorn(args: list[str]) -> Any:
    from gunicorn.config import Config
    from gunicorn.util import import_app
    from werkzeug.test import Client

    try:
        options = Config().parser().parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"gunicorn rejects `{' '.join(args)}`") from exc
    assert len(options.args) == 1, f"gunicorn needs one APP_MODULE, got {options.args}"
    app = import_app(options.args[0])
    response = Client(app).get("/")
    assert response.status_code == 200, f"{options.args[0]} GET / -> {response.status}"
    return options


def check_entry_point(argv: list[str], tmp_path: Path) -> None:
    assert argv, "no command"
    program, args = argv[0], argv[1:]
    if program == "digest":
        resolve_digest(args)
    elif program == "celery":
        resolve_celery(args, tmp_path)
    elif program == "gunicorn":
        resolve_gunicorn(args)
    else:
        raise AssertionError(f"{program!r} is not an entry point of the image {ENTRY_POINTS}")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(extra)
    return env


# --- docker-compose.yml ------------------------------------------------------------


def test_compose_file_matches_the_compose_spec() -> None:
    tool = Path(sys.executable).with_name("check-jsonschema")
    executable = str(tool) if tool.exists() else shutil.which("check-jsonschema")
    assert executable, "check-jsonschema is a dev dependency: pip install -e '.[dev]'"
    result = subprocess.run(
        [executable, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_services_exist_and_start_in_order() -> None:
    compose = load_compose()
    services = compose["services"]
    assert {"redis", "postgres", "migrate", "worker", "beat", "web", "inbound", "mailpit"} <= set(
        services
    )
    for name, service in services.items():
        depends = service.get("depends_on", {})
        if isinstance(depends, list):
            depends = {d: {"condition": "service_started"} for d in depends}
        for target, spec in depends.items():
            assert target in services, f"{name} depends on {target!r}, which is not a service"
            # The default profile must start on its own: no dependency on a dev-only service.
            assert "profiles" not in services[target] or "profiles" in service, (
                f"{name} depends on {target}, which only exists in profiles "
                f"{services[target]['profiles']}"
            )
            condition = spec.get("condition")
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health"
            if target == "migrate":
                assert condition == "service_completed_successfully", name
    # Everything that touches the database waits for the migration; migrate for PostgreSQL.
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"
    for name in ("worker", "beat", "web", "inbound"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        if name != "inbound":  # the mail listener never talks to the broker
            assert depends["redis"]["condition"] == "service_healthy", name


def test_one_image_for_every_python_service() -> None:
    compose = load_compose()
    env = compose_env()
    services = python_services(compose)
    builders = [name for name, s in services.items() if "build" in s]
    assert len(builders) == 1, f"build the image once, not in {builders}"
    build = services[builders[0]]["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    assert (COMPOSE.parent / context / "Dockerfile").is_file()
    assert {s["image"] for s in services.values()} == {services[builders[0]]["image"]}
    # Conversely, nothing runs our entry points from another image.
    for name, service in compose["services"].items():
        argv = command_of(service, env)
        if argv and argv[0] in ENTRY_POINTS:
            assert name in services, f"{name} runs {argv[0]} but not from our image"
    assert set(services) == {"migrate", "worker", "beat", "web", "inbound"}
    for service in services.values():
        env_file = service["env_file"]
        assert ".env" in ([env_file] if isinstance(env_file, str) else env_file)


def test_workers_scale_and_beat_is_single() -> None:
    compose = load_compose()
    env = compose_env()
    services = compose["services"]
    beats = [
        name
        for name, service in services.items()
        if command_of(service, env)[:1] == ["celery"] and "beat" in command_of(service, env)
    ]
    assert beats == ["beat"]
    beat = services["beat"]
    assert beat.get("deploy", {}).get("replicas", 1) == 1
    assert "scale" not in beat
    # --scale worker=4 needs names and host ports that compose can multiply.
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert "--concurrency" in command_of(worker, env)
    assert "WORKER_CONCURRENCY" in interpolation_names(" ".join(map(str, worker["command"])))
    # beat keeps its schedule in a volume it can write (the image's user owns the path).
    schedule = option_value(command_of(beat, env), "-s", "--schedule")
    assert schedule, "beat needs an explicit, writable --schedule file"
    mounts = [v.split(":")[1] for v in beat.get("volumes", [])]
    assert str(Path(schedule).parent) in mounts, f"{schedule} is not on a volume: {mounts}"
    # A fresh named volume takes its owner from the image: the directory must exist there.
    runs = [r for kw, r in dockerfile_instructions(DOCKERFILE.read_text()) if kw == "RUN"]
    assert any(str(Path(schedule).parent) in r for r in runs), "the image lacks the beat dir"


def test_redis_postgres_and_web_are_configured_for_reliability() -> None:
    compose = load_compose()
    services = compose["services"]
    redis = services["redis"]
    command = command_of(redis, {})
    assert command[0] == "redis-server"
    assert option_value(command, "--appendonly") == "yes"
    assert option_value(command, "--maxmemory-policy") == "noeviction"
    assert "redis-cli" in redis["healthcheck"]["test"] and "ping" in redis["healthcheck"]["test"]
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert redis["image"].startswith("redis:7")

    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])

    web = services["web"]
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    assert f"127.0.0.1:{WEB_PORT}/healthz" in " ".join(web["healthcheck"]["test"])
    published = [interpolate(p, compose_env()) for p in web["ports"]]
    assert any(p.endswith(f":{WEB_PORT}") for p in published), published
    for volume in ("pg-data", "redis-data", "beat-schedule", "outbox"):
        assert volume in compose["volumes"]


def test_mail_defaults_to_the_outbox_and_mailpit_is_opt_in() -> None:
    """A plain `docker compose up` must not send to a mailpit that only the dev profile
    starts (every digest would sit in retry): no DIGEST_SMTP_URL means the outbox."""
    compose = load_compose()
    services = compose["services"]
    mailpit = services["mailpit"]
    assert mailpit["image"].split(":")[0] == "axllent/mailpit"
    assert mailpit["profiles"] == ["dev"]
    ports = {p.rsplit(":", 1)[1] for p in mailpit["ports"]}
    assert ports == {"8025", "1025"}
    env_set, _ = read_env_file(ENV_EXAMPLE)
    assert "DIGEST_SMTP_URL" not in env_set, "a fresh .env must leave mail in the outbox"
    dev = {**env_set, "DIGEST_SMTP_URL": "smtp://mailpit:1025"}
    for name, service in python_services(compose).items():
        raw = service["environment"]["DIGEST_SMTP_URL"]
        # Fresh .env, or set but empty: the outbox. A URL in .env: that server.
        assert interpolate(raw, env_set) == "", name
        assert interpolate(raw, {**env_set, "DIGEST_SMTP_URL": ""}) == "", name
        real = "smtp://u:p@smtp.example.org:587?starttls=1"
        assert interpolate(raw, {**env_set, "DIGEST_SMTP_URL": real}) == real, name
        fresh = Settings.from_env({**env_set, "DIGEST_SMTP_URL": interpolate(raw, env_set)})
        assert fresh.smtp_url == "" and fresh.mail_destination().startswith("outbox folder")
        assert "mailpit" not in fresh.mail_destination()
        # The dev lines .env.example describes: Mailpit, with links to localhost allowed.
        assert interpolate(raw, dev) == "smtp://mailpit:1025", name
        refused = Settings.from_env({**dev, "DIGEST_SMTP_URL": interpolate(raw, dev)})
        assert "DIGEST_ALLOW_INSECURE_LINKS=1" in (refused.insecure_links() or "")
        allowed = Settings.from_env({**dev, "DIGEST_ALLOW_INSECURE_LINKS": "1"})
        assert allowed.insecure_links() is None
        assert allowed.mail_destination() == "SMTP server mailpit:1025 (none)"
    text = ENV_EXAMPLE.read_text()
    assert "DIGEST_SMTP_URL=smtp://mailpit:1025" in text
    assert "DIGEST_ALLOW_INSECURE_LINKS=1" in text
    # The transport reads it as plain SMTP to Mailpit's port (Mailpit offers no TLS).
    from digest.config import parse_smtp_url

    transport = parse_smtp_url("smtp://mailpit:1025")
    assert (transport.host, transport.port, transport.security) == ("mailpit", 1025, "none")
    assert "mailpit" in services and transport.port in {int(p) for p in ports}
    # The production example in .env.example is a URL the transport accepts.
    _, commented = read_env_file(ENV_EXAMPLE)
    assert parse_smtp_url(commented["DIGEST_SMTP_URL"]).security == "starttls"


@pytest.mark.parametrize("service", ["migrate", "worker", "beat", "web", "inbound"])
def test_service_command_is_a_real_entry_point(service: str, tmp_path: Path) -> None:
    compose = load_compose()
    argv = command_of(compose["services"][service], compose_env())
    assert argv, f"{service} has no command (the image's CMD is only --help)"
    assert "--help" not in argv
    check_entry_point(argv, tmp_path)
    program, args = argv[0], argv[1:]
    if program == "digest":
        command = resolve_digest(args)
        # A bare group would print its help and exit 0: a "successful" no-op migrate.
        assert not isinstance(command, click.Group), f"{service}: `digest {args}` is a group"
        if args[:1] == ["inbound"]:
            run_inbound_for_real(compose["services"][service], args, tmp_path)
    if program == "celery":
        app, subcommand, _ = celery_app_and_subcommand(args)
        if subcommand == "worker":
            # Every task must land on a queue some worker service consumes.
            consumed: set[str] = set()
            for other in compose["services"].values():
                other_argv = command_of(other, compose_env())
                if other_argv[:1] == ["celery"] and "worker" in other_argv:
                    consumed |= set((option_value(other_argv, "-Q", "--queues") or "").split(","))
            stranded = {t: q for t, q in task_queues(app).items() if q not in consumed}
            assert not stranded, f"tasks routed to queues no worker consumes: {stranded}"
            assert {"digest.ingest", "digest.send_batch"} <= set(task_queues(app))
    if program == "gunicorn":
        options = resolve_gunicorn(args)
        assert options.bind == [f"0.0.0.0:{WEB_PORT}"]
        # One slow client must hold a thread, not the server (a sync worker with one
        # thread stalled for 30 s behind one client dripping its headers).
        assert options.worker_class == "gthread", options.worker_class
        assert options.threads >= 4, options.threads
        assert 0 < options.timeout <= 60, options.timeout
        assert options.limit_request_line and options.limit_request_fields


def run_inbound_for_real(service: Mapping[str, Any], args: list[str], tmp_path: Path) -> None:
    """`digest inbound` as compose runs it, on a free port: it speaks the protocol the
    MTA is told to use, on the port the service publishes and checks, and stops on
    SIGTERM (what `docker compose stop` sends)."""
    import smtplib
    import socket

    port = int(option_value(args, "--port") or 0)
    published = {
        p.rsplit(":", 1)[1] for p in (interpolate(x, compose_env()) for x in service["ports"])
    }
    assert published == {str(port)}, f"inbound listens on {port}, publishes {published}"
    assert f"{port})" in " ".join(service["healthcheck"]["test"])
    assert option_value(args, "--host") == "0.0.0.0", "inside a container: all interfaces"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    argv = [
        a if a not in ("0.0.0.0", str(port)) else {"0.0.0.0": "127.0.0.1"}.get(a, str(free))
        for a in args
    ]
    env = clean_env(DIGEST_DATABASE_URL=f"sqlite:///{tmp_path / 'inbound.db'}", HOME=str(tmp_path))
    log = tmp_path / "inbound.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("digest")), *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while b"digest inbound:" not in log.read_bytes():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        client = smtplib.LMTP if "--lmtp" in args else smtplib.SMTP
        with client("127.0.0.1", free, timeout=30) as smtp:
            code, _ = (
                smtp.ehlo() if client is smtplib.SMTP else smtp.docmd("LHLO", "mta.example.org")
            )
            assert code == 250
            assert smtp.docmd("MAIL FROM:<a@example.org>")[0] == 250
            assert smtp.docmd("RCPT TO:<nobody@localhost>")[0] == 550
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0, log.read_text()


def test_entry_point_checks_reject_broken_commands(tmp_path: Path) -> None:
    broken = [
        ["digest", "db", "upgrad"],
        ["digest", "db", "upgrade", "--no-such-option"],
        ["celery", "-A", "workers", "worker", "-Q", "ingest,no-such-queue"],
        ["celery", "-A", "no_such_module_xyz", "beat"],
        ["gunicorn", "--no-such-flag", "digest.web:create_app()"],
        ["gunicorn", "digest.web:no_such_app"],
        ["python", "-m", "digest"],
    ]
    for argv in broken:
        with pytest.raises(Exception):  # noqa: B017 - AssertionError or an import error
            check_entry_point(argv, tmp_path)


# --- variables ---------------------------------------------------------------------


def digest_variables_in_compose(compose: Mapping[str, Any]) -> set[str]:
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if str(key).startswith("DIGEST_"):
                    names.add(str(key))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, str):
            names.update(n for n in interpolation_names(node) if n.startswith("DIGEST_"))
            names.update(re.findall(r"\b(DIGEST_[A-Z0-9_]+)=", node))

    walk(compose)
    return names


def dockerfile_env_names() -> set[str]:
    names: set[str] = set()
    for keyword, rest in dockerfile_instructions(DOCKERFILE.read_text()):
        if keyword == "ENV":
            tokens = shlex.split(rest)
            if len(tokens) == 2 and "=" not in tokens[0]:
                names.add(tokens[0])  # the legacy `ENV NAME value` form
            else:
                names.update(t.split("=", 1)[0] for t in tokens)
    return names


def test_every_digest_variable_is_a_real_setting() -> None:
    assigned, commented = read_env_file(ENV_EXAMPLE)
    compose_names = digest_variables_in_compose(load_compose())
    assert "DIGEST_SMTP_URL" in compose_names  # the walk does see the variables
    sources = {
        "docker-compose.yml": compose_names,
        ".env.example": {n for n in {**assigned, **commented} if n.startswith("DIGEST_")},
        "Dockerfile": {n for n in dockerfile_env_names() if n.startswith("DIGEST_")},
    }
    for where, names in sources.items():
        unknown = names - set(ENV_VARS)
        assert not unknown, f"{where} sets variables digest.config does not read: {unknown}"


def test_env_example_documents_every_setting_with_valid_values() -> None:
    assigned, commented = read_env_file(ENV_EXAMPLE)
    documented = set(assigned) | set(commented)
    missing = set(ENV_VARS) - documented
    assert not missing, f".env.example does not document {sorted(missing)}"
    # The file as committed starts, and every commented example is a valid value.
    settings = Settings.from_env({k: v for k, v in assigned.items() if k.startswith("DIGEST_")})
    assert settings.database_url.startswith("postgresql+psycopg://")
    for name, value in commented.items():
        if name.startswith("DIGEST_"):
            Settings.from_env({name: value})


def test_env_example_points_at_the_compose_services() -> None:
    from sqlalchemy.engine import make_url

    services = load_compose()["services"]
    assigned, _ = read_env_file(ENV_EXAMPLE)
    database = make_url(Settings.from_env(assigned).database_url)
    assert database.host == "postgres" and database.host in services
    assert database.username == assigned["POSTGRES_USER"]
    assert database.password == assigned["POSTGRES_PASSWORD"]
    assert database.database == assigned["POSTGRES_DB"]
    broker = Settings.from_env(assigned).broker_url
    assert broker.startswith("redis://redis:6379"), broker
    # PostgreSQL gets only its own variables, interpolated from .env.
    postgres_env = {
        k: interpolate(v, assigned) for k, v in services["postgres"]["environment"].items()
    }
    assert postgres_env == {k: assigned[k] for k in postgres_env}
    with pytest.raises(AssertionError, match="POSTGRES_PASSWORD"):
        interpolate(services["postgres"]["environment"]["POSTGRES_PASSWORD"], {})


# --- Dockerfile and build context ----------------------------------------------------


def test_dockerfile_builds_a_non_root_python_311_image() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    stages: set[str] = set()
    for keyword, rest in instructions:
        if keyword != "FROM":
            continue
        parts = rest.split()
        image = next(p for p in parts if not p.startswith("--"))
        if image not in stages:
            match = re.fullmatch(r"python:3\.(\d+)(?:[.\d]*)(?:-[\w.-]+)?", image)
            assert match and int(match[1]) >= 11, f"base image {image} is not Python 3.11+"
        if len(parts) >= 3 and parts[-2].upper() == "AS":
            stages.add(parts[-1])

    final = final_stage(instructions)
    runs = [rest for keyword, rest in final if keyword == "RUN"]
    installs = [r for r in runs if re.search(r"\bpip install\b", r)]
    assert installs, "the image never installs the package"
    for run in installs:
        assert not re.search(r"(^|\s)(-e|--editable)\b", run), f"editable install: {run}"
    assert any(re.search(r"\bdigest\b|\s\.(\s|$)|\.whl\b", r) for r in installs)

    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    if user.isdigit():
        assert any(re.search(rf"--uid\s+{user}\b", r) for r in runs), f"uid {user} never created"

    exposed = {p.split("/")[0] for kw, rest in final if kw == "EXPOSE" for p in rest.split()}
    assert str(WEB_PORT) in exposed
    cmd = [rest for keyword, rest in final if keyword == "CMD"]
    assert cmd, "no CMD"
    argv = json.loads(cmd[-1])  # exec form: signals reach the process
    assert argv[0] == "digest"
    resolve_digest(argv[1:])


def test_dockerignore_keeps_the_sources_and_drops_secrets() -> None:
    patterns = dockerignore_patterns()
    needed = source_files("pyproject.toml", "README.md", "digest", "workers", "templates")
    dropped = [f for f in needed if dockerignored(f, patterns)]
    assert not dropped, f".dockerignore drops files the build needs: {dropped[:10]}"
    for secret_or_local in (
        ".env",
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "digest.db",
        "outbox/1.eml",
        "digest/__pycache__/cli.cpython-311.pyc",
    ):
        assert dockerignored(secret_or_local, patterns), f"{secret_or_local} would be sent"

    copies = [
        rest
        for keyword, rest in dockerfile_instructions(DOCKERFILE.read_text())
        if keyword == "COPY" and "--from" not in rest
    ]
    assert copies
    for rest in copies:
        sources = [t for t in shlex.split(rest) if not t.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            assert not dockerignored(source, patterns), f"COPY {source} is in .dockerignore"


def test_package_built_from_the_docker_context_runs_the_compose_commands(
    tmp_path: Path,
) -> None:
    """What `pip wheel .` in the image sees, built and run without the checkout."""
    patterns = dockerignore_patterns()
    context = tmp_path / "context"
    for rel in source_files("pyproject.toml", "README.md", "digest", "workers", "templates"):
        if not dockerignored(rel, patterns):
            (context / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, context / rel)
    lib = tmp_path / "lib"
    build = subprocess.run(
        [
            sys.executable,
            "-c",
            "from setuptools import setup; setup()",
            "-q",
            "build_py",
            "--build-lib",
            str(lib),
        ],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr

    # Every Python package of the source tree is in the build (not just importable
    # from the checkout, as with the editable install the tests usually run on).
    for source_dir in {p.parent for p in (context / "digest").rglob("*.py")} | {
        context / "workers"
    }:
        built = lib / source_dir.relative_to(context)
        for module in source_dir.glob("*.py"):
            assert (built / module.name).is_file(), f"{module.relative_to(context)} not shipped"
    for template in (context / "templates").rglob("*"):
        if template.is_file() and template.suffix in (
            ".html", ".css", ".mjml", ".txt", ".js", ".svg"
        ):  # fmt: skip
            rel = template.relative_to(context / "templates")
            assert (lib / "digest" / "templates" / rel).is_file(), f"template {rel} not shipped"

    # -S: no .pth files, so the editable install's finder cannot hand out the checkout.
    site_dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    env = clean_env(
        PYTHONPATH=os.pathsep.join([str(lib), *sorted(site_dirs)]),
        DIGEST_DATABASE_URL=f"sqlite:///{tmp_path / 'digest.db'}",
        HOME=str(tmp_path),
    )

    def run(*argv: str) -> str:
        result = subprocess.run(
            [sys.executable, "-S", *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    where = run("-c", "import digest, workers; print(digest.__file__, workers.__file__)")
    assert where.split() == [
        str(lib / "digest" / "__init__.py"),
        str(lib / "workers" / "__init__.py"),
    ]
    compose = load_compose()
    commands = [command_of(s, compose_env()) for s in python_services(compose).values()]
    commands.append(json.loads(final_stage_cmd()))
    digest_main = "import sys; from digest.cli import main; sys.argv[0] = 'digest'; main()"
    for argv in commands:
        program, args = argv[0], [a for a in argv[1:] if a != "--help"]
        if program == "digest":
            assert "Usage: digest" in run("-c", digest_main, *args, "--help")
        elif program == "celery":
            # --help loads -A's app first: a missing module exits with "Unable to load".
            usage = run("-m", "celery", *args, "--help")
            assert re.search(r"Usage: .*celery (worker|beat) ", usage), usage
        elif program == "gunicorn":
            spec = resolve_gunicorn(args).args[0]
            out = run(
                "-c",
                (
                    "from gunicorn.util import import_app; from werkzeug.test import Client\n"
                    f"client = Client(import_app({spec!r}))\n"
                    "for path in ('/', '/static/digest.css', '/static/tz.js'):\n"
                    "    r = client.get(path); assert r.status_code == 200, (path, r.status)\n"
                    "print(client.get('/').get_data(as_text=True))"
                ),
            )
            assert "<h1>Get trending papers in your email inbox!</h1>" in out
        else:
            raise AssertionError(argv)


def final_stage_cmd() -> str:
    final = final_stage(dockerfile_instructions(DOCKERFILE.read_text()))
    return [rest for keyword, rest in final if keyword == "CMD"][-1]


# --- the helpers themselves ------------------------------------------------------------


def test_helpers_follow_compose_and_docker_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d}|${EMPTY:-d}|${UNSET:-d}", env) == "x|d|d"
    assert interpolate("${SET-d}|${EMPTY-d}|${UNSET-d}", env) == "x||d"
    assert interpolate("$${HOME} ${SET}", env) == "${HOME} x"
    with pytest.raises(AssertionError):
        interpolate("${UNSET:?needed}", env)
    patterns = ["*", "!digest", "**/__pycache__"]
    assert not dockerignored("digest/cli.py", patterns)
    assert dockerignored("digest/__pycache__/x.pyc", patterns)
    assert dockerignored("tests/test_x.py", patterns)
    assert dockerignored("__pycache__", patterns)
    lines = dockerfile_instructions("# c\nFROM a AS b\nRUN x \\\n  # note\n  && y\nUSER 1\n")
    assert lines == [("FROM", "a AS b"), ("RUN", "x  && y"), ("USER", "1")]
