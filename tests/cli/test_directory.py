"""The directory: CSV import with org-chart follows, users set, follows (SPEC §6)."""

from __future__ import annotations

import json


def write_csv(tmp_path, text: str):
    path = tmp_path / "people.csv"
    path.write_text(text)
    return str(path)


PEOPLE = """email,name,role,team,manager,timezone
ann@corp.example,Ann CEO,leader,exec,,America/New_York
ben@corp.example,Ben,staff,billing,cara@corp.example,Europe/Berlin
cara@corp.example,Cara,leader,billing,ann@corp.example,Asia/Tokyo
dan@corp.example,Dan,staff,billing,cara@corp.example,
"""


def targets(cli, email: str) -> list[str]:
    return [f["target"] for f in json.loads(cli("follows", "list", email, "--json").stdout)]


def test_import_creates_users_and_org_chart_follows_with_a_manager_further_down(cli, tmp_path):
    result = cli("users", "import", write_csv(tmp_path, PEOPLE), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sorted(report["created"]) == ["ann@corp.example", "ben@corp.example", "cara@corp.example", "dan@corp.example"]
    cara = json.loads(cli("users", "show", "cara@corp.example", "--json").stdout)
    assert (cara["manager"], cara["timezone"], cara["role"]) == ("ann@corp.example", "Asia/Tokyo", "leader")
    assert sorted(targets(cli, "cara@corp.example")) == ["ann@corp.example", "ben@corp.example", "dan@corp.example"]
    assert sorted(targets(cli, "ben@corp.example")) == ["cara@corp.example", "dan@corp.example"]
    assert targets(cli, "ann@corp.example") == ["cara@corp.example"]


def test_a_reimport_updates_and_never_revives_an_unfollow(cli, tmp_path):
    path = write_csv(tmp_path, PEOPLE)
    cli("users", "import", path)
    assert cli("follows", "remove", "ben@corp.example", "dan@corp.example").exit_code == 0
    changed = PEOPLE.replace("ben@corp.example,Ben,staff", "ben@corp.example,Benjamin,staff")
    report = json.loads(cli("users", "import", write_csv(tmp_path, changed), "--json").stdout)
    assert report["updated"] == ["ben@corp.example"] and report["created"] == []
    assert targets(cli, "ben@corp.example") == ["cara@corp.example"]
    assert json.loads(cli("users", "show", "ben@corp.example", "--json").stdout)["name"] == "Benjamin"


def test_a_bad_row_is_reported_by_line_and_nothing_is_imported(cli, tmp_path):
    bad = PEOPLE + "eve@corp.example,Eve,overlord,,,\n"
    result = cli("users", "import", write_csv(tmp_path, bad))
    assert result.exit_code == 1 and "line 6" in result.stderr and "overlord" in result.stderr
    assert json.loads(cli("users", "list", "--json").stdout) == []


def test_an_unknown_manager_is_reported_by_line(cli, tmp_path):
    result = cli("users", "import", write_csv(tmp_path, "email,manager\nx@corp.example,ghost@corp.example\n"))
    assert result.exit_code == 1 and "line 2" in result.stderr and "ghost@corp.example" in result.stderr


def test_users_set_changes_role_digest_timezone_and_handle(cli):
    cli("users", "add", "eve@corp.example")
    cli("users", "add", "fay@corp.example")
    assert cli("users", "set", "eve@corp.example", "--role", "admin", "--digest", "weekly", "--timezone",
               "Europe/Paris", "--handle", "@Evie").exit_code == 0
    eve = json.loads(cli("users", "show", "eve@corp.example", "--json").stdout)
    assert (eve["role"], eve["digest"], eve["timezone"], eve["handle"]) == ("admin", "weekly", "Europe/Paris", "evie")
    assert cli("users", "set", "fay@corp.example", "--handle", "evie").exit_code == 1  # taken
    assert cli("users", "set", "fay@corp.example", "--timezone", "Nowhere/Land").exit_code == 2
    assert cli("users", "set", "fay@corp.example", "--digest", "hourly").exit_code == 2


def test_follows_add_and_remove_by_handle_and_tag(cli):
    cli("users", "add", "eve@corp.example")
    cli("users", "add", "fay@corp.example")
    assert cli("follows", "add", "eve@corp.example", "@fay").exit_code == 0
    assert cli("follows", "add", "eve@corp.example", "#Billing").exit_code == 0
    assert targets(cli, "eve@corp.example") == ["fay@corp.example", "#billing"]
    assert cli("follows", "remove", "eve@corp.example", "#billing").exit_code == 0
    assert targets(cli, "eve@corp.example") == ["fay@corp.example"]
    assert cli("follows", "add", "eve@corp.example", "@nobody").exit_code == 1


def test_one_new_hire_is_imported_alone_under_a_manager_who_is_already_a_user(cli, tmp_path):
    cli("users", "import", write_csv(tmp_path, PEOPLE))
    hire = write_csv(tmp_path, "email,name,role,team,manager,timezone\n"
                               "eli@corp.example,Eli,staff,billing,cara@corp.example,\n")
    result = cli("users", "import", hire)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("1 created, 0 updated, 0 unchanged, ")
    eli = json.loads(cli("users", "show", "eli@corp.example", "--json").stdout)
    assert eli["manager"] == "cara@corp.example"
    assert "cara@corp.example" in targets(cli, "eli@corp.example")
    assert "eli@corp.example" in targets(cli, "cara@corp.example")


def test_a_manager_neither_in_the_file_nor_a_user_is_named(cli, tmp_path):
    result = cli("users", "import", write_csv(tmp_path, "email,manager\nx@corp.example,ghost@corp.example\n"))
    assert result.exit_code == 1
    assert result.stderr == "Error: line 2: manager ghost@corp.example is neither in the file nor a user\n"


def test_an_address_with_no_local_part_no_domain_or_two_ats_is_no_user(cli, tmp_path):
    # `users add` is bad usage (exit 2), a CSV row a failed import (exit 1, by line);
    # neither leaves a user nobody can ever mail.
    for address in ("x@", "@corp.example", "a@b@corp.example", "al ice@corp.example", "alice@corp example"):
        result = cli("users", "add", address)
        assert result.exit_code == 2 and "not a mail address" in result.stderr, address
        result = cli("users", "import", write_csv(tmp_path, f"email,name\n{address},X\n"))
        assert result.exit_code == 1 and "line 2: not a mail address" in result.stderr, address
    assert json.loads(cli("users", "list", "--json").stdout) == []


def test_a_csv_that_is_not_utf8_is_one_line_and_exit_1(cli, tmp_path):
    path = tmp_path / "people.csv"
    path.write_bytes("email,name\nbjörn@corp.example,Björn\n".encode("latin-1"))
    result = cli("users", "import", str(path))
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert "not UTF-8" in line
