"""Setting up: only `init` creates a database, the files it makes are the owner's, and
`serve` says in one line what stops it (SPEC §2, §6; issue #18)."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlmodel import Session, select

from statusmail.cli import main
from statusmail.store.models import Post
from tests.conftest import make_mail, write_config
from tests.gateway.test_crash import free_port

NO_DB_COMMANDS = ("init", "hash-password")  # the two commands that need no database
EXTRA_ARGUMENTS = {("users", "set"): ["--name", "Someone"]}  # with nothing to set it is a usage error


def leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def sample_arguments(command: click.Command, tmp_path: Path) -> list[str]:
    """Values for the command's required arguments and options, so that it runs as far
    as opening the database."""
    csv = tmp_path / "people.csv"
    csv.write_text("email\nnew@corp.example\n")
    args: list[str] = []
    for param in command.params:
        if not param.required:
            continue
        if isinstance(param.type, click.Choice):
            value = str(param.type.choices[0])
        elif isinstance(param.type, click.types._NumberParamTypeBase):
            value = "1"
        elif isinstance(param.type, click.File):
            value = str(csv)
        else:
            value = "someone@corp.example"
        args += [value] if isinstance(param, click.Argument) else [param.opts[0], value]
    return args


def test_every_command_but_init_refuses_a_missing_database_in_one_line_and_creates_nothing(tmp_path):
    database = tmp_path / "state" / "statusmail.db"
    config = write_config(tmp_path, f"sqlite:///{database}")
    runner = CliRunner()
    expected = f"Error: no database at {database}; run `statusmail init` or pass --config\n"
    commands = [(path, cmd) for path, cmd in leaf_commands(main) if path[-1] not in NO_DB_COMMANDS]
    assert len(commands) > 20
    for path, command in commands:
        if path == ("check",):
            continue
        result = runner.invoke(main, [*path, "--config", str(config), *sample_arguments(command, tmp_path),
                                      *EXTRA_ARGUMENTS.get(path, [])],
                               input=make_mail().as_bytes(), catch_exceptions=False)
        assert (result.exit_code, result.stderr) == (1, expected), path
        assert not database.parent.exists(), path
    checked = runner.invoke(main, ["check", "--config", str(config)])
    assert checked.exit_code == 1
    assert f"FAIL  database: no database at {database}; run `statusmail init`" in checked.stdout
    assert not database.parent.exists()
    created = runner.invoke(main, ["init", "--config", str(config)])
    assert created.exit_code == 0 and created.stdout.startswith("database created at revision ")
    listed = runner.invoke(main, ["users", "list", "--config", str(config)])
    assert (listed.exit_code, listed.stdout) == (0, "(none)\n")


def test_without_a_configuration_no_var_folder_appears_where_the_command_runs(tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("STATUSMAIL_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["posts", "list"])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: no database at {tmp_path}/var/statusmail.db; "
                             "run `statusmail init` or pass --config\n")
    assert list(tmp_path.iterdir()) == []


def test_a_database_file_without_tables_is_not_a_database_either(tmp_path):
    database = tmp_path / "empty.db"
    database.touch()
    config = write_config(tmp_path, f"sqlite:///{database}")
    result = CliRunner().invoke(main, ["log", "--config", str(config)])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: no database at {database} (it has no tables); "
                             "run `statusmail init` or pass --config\n")


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The common default umask, under which files are created world-readable."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def test_init_creates_the_database_its_wal_and_shm_and_its_folders_owner_only(tmp_path, umask_022):
    from statusmail.store.db import make_engine, transaction
    from statusmail.store.users import register_user

    database = tmp_path / "var" / "statusmail.db"
    config = write_config(tmp_path, f"sqlite:///{database}")
    config.write_text(config.read_text().replace(f'secret_key_file = "{tmp_path}/secret.key"',
                                                 f'secret_key_file = "{tmp_path}/keys/secret.key"'))
    result = CliRunner().invoke(main, ["init", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert (mode(database), mode(database.parent)) == ("0o600", "0o700")
    assert (mode(tmp_path / "keys" / "secret.key"), mode(tmp_path / "keys")) == ("0o600", "0o700")
    engine = make_engine(f"sqlite:///{database}")
    try:
        with transaction(engine) as session:
            register_user(session, "ann@corp.example")
        # The pool still holds the connection: the write-ahead log and its index exist.
        assert mode(Path(f"{database}-wal")) == "0o600" and mode(Path(f"{database}-shm")) == "0o600"
    finally:
        engine.dispose()


def test_init_makes_a_world_readable_database_private(tmp_path, umask_022):
    database = tmp_path / "statusmail.db"
    config = write_config(tmp_path, f"sqlite:///{database}")
    CliRunner().invoke(main, ["init", "--config", str(config)])
    database.chmod(0o644)
    assert CliRunner().invoke(main, ["init", "--config", str(config)]).exit_code == 0
    assert mode(database) == "0o600"


def test_mail_written_to_the_maildir_outbox_is_owner_only(tmp_path, umask_022):
    from statusmail.outbound.transport import MaildirTransport

    box = tmp_path / "outbox"
    asyncio.run(MaildirTransport(str(box)).send("bounce@corp.example", "ann@corp.example", b"Subject: x\r\n\r\nhi\r\n"))
    [message] = list((box / "new").iterdir())
    assert (mode(message), mode(box), mode(box / "new")) == ("0o600", "0o700", "0o700")


# --- serve ----------------------------------------------------------------------------------


def statusmail(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    return subprocess.Popen([sys.executable, "-m", "statusmail", *args], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_serve_on_a_taken_port_is_one_line_naming_the_address_and_exit_1(tmp_path, sqlite_url):
    config = write_config(tmp_path, sqlite_url)
    assert CliRunner().invoke(main, ["init", "--config", str(config)]).exit_code == 0
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        process = statusmail("--config", str(config), "serve", env={"STATUSMAIL_SMTP_PORT": str(port)})
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert stderr == f"Error: cannot listen on 127.0.0.1:{port}: address already in use\n"
    assert stdout == ""


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_the_start_up_hint_is_a_command_that_posts_in_the_protocol_served(tmp_path, sqlite_url, lmtp):
    config = write_config(tmp_path, sqlite_url, smtp=f"lmtp = {str(lmtp).lower()}")
    assert CliRunner().invoke(main, ["init", "--config", str(config)]).exit_code == 0
    port = free_port()
    server = statusmail("--config", str(config), "serve", env={"STATUSMAIL_SMTP_PORT": str(port)})
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith(f"statusmail listening on 127.0.0.1:{port}; post a first update: python3 -c ")
        assert ("smtplib.LMTP(" if lmtp else "smtplib.SMTP(") in line
        command = line.split("post a first update: ", 1)[1]
        hint = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60)
        assert hint.returncode == 0, hint.stderr
    finally:
        server.terminate()
        server.communicate(timeout=60)
    assert server.returncode == 0
    from statusmail.store.db import make_engine

    engine = make_engine(sqlite_url)
    try:
        with Session(engine) as session:
            [post] = session.exec(select(Post)).all()
    finally:
        engine.dispose()
    assert (post.body, post.status) == ("Hello #team\n\nMy first update", "visible")
