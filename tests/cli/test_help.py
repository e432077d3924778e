"""Every command explains itself (issue #18, Datasette-style): help on every option, an
example on every option that takes a value, and $STATUSMAIL_CONFIG shown in --help."""

from __future__ import annotations

from collections.abc import Iterator

import click
from click.testing import CliRunner

from statusmail.cli import main


def every_command(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, group
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from every_command(command, (*path, name))
        else:
            yield (*path, name), command


def test_every_command_and_option_has_help_with_an_example_and_names_statusmail_config():
    runner = CliRunner()
    seen = 0
    for path, command in every_command(main):
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, path
        text = " ".join(result.stdout.split())
        assert (command.help or "").strip(), f"{' '.join(path)} has no help text"
        assert "[env var: STATUSMAIL_CONFIG]" in text, path
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            seen += 1
            where = f"{' '.join(('statusmail', *path))} {param.opts[0]}"
            assert param.help, f"{where} has no help"
            assert " ".join(param.help.split())[:30] in text, where
            takes_value = not param.is_flag and not param.prompt
            assert not takes_value or "e.g." in param.help, f"{where} has no example (e.g. ...)"
    assert seen > 40


def test_statusmail_config_is_used_and_an_explicit_config_wins_over_it(config_file, engine, tmp_path):
    runner = CliRunner()
    missing = tmp_path / "nowhere.toml"
    from_env = runner.invoke(main, ["users", "list"], env={"STATUSMAIL_CONFIG": str(config_file)})
    assert (from_env.exit_code, from_env.stdout) == (0, "(none)\n")
    for args in (["--config", str(config_file), "users", "list"], ["users", "--config", str(config_file), "list"],
                 ["users", "list", "--config", str(config_file)]):
        result = runner.invoke(main, args, env={"STATUSMAIL_CONFIG": str(missing)})
        assert (result.exit_code, result.stdout) == (0, "(none)\n"), args
