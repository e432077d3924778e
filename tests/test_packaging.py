"""Installing statusmail prints no build warnings: ``project.license`` is an SPDX string
(PEP 639), not the deprecated table that made setuptools print ~40 lines (issue #18)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_license_is_an_spdx_expression_and_the_backend_can_read_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    assert "setuptools>=77" in project["build-system"]["requires"]  # the first to read PEP 639 licenses


@pytest.mark.slow
def test_building_the_package_prints_no_warning_and_records_the_license(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "statusmail", source / "statusmail", ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", str(source), "-w", str(tmp_path)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    output = [line for line in (built.stdout + built.stderr).splitlines() if "is ignored" not in line]
    assert [line for line in output if "warning" in line.lower() or "deprecat" in line.lower()] == []
    [wheel] = tmp_path.glob("statusmail-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in metadata.splitlines()


def readme_block(heading: str, language: str) -> str:
    """The first ``language`` code block after ``heading`` in the README."""
    text = (ROOT / "README.md").read_text()
    after = text[text.index(heading):]
    start = after.index(f"```{language}\n") + len(f"```{language}\n")
    return after[start:after.index("```", start)]


def test_the_readme_quick_start_runs_make_test_before_make_run_and_says_run_does_not_return():
    commands = readme_block("## Quick start", "sh").splitlines()
    assert [line.split("#")[0].strip() for line in commands] == ["make test", "make run"]
    assert "does not return" in commands[1]


def test_the_readme_example_for_a_real_domain_is_a_valid_configuration(tmp_path):
    from statusmail.config import load_settings

    config = tmp_path / "statusmail.toml"
    config.write_text(readme_block("### Your own domain", "toml"))
    settings = load_settings(str(config), environ={})
    assert (settings.gateway.address, settings.domain) == ("status@example.com", "example.com")
    assert list(settings.policy.allowed_domains) == ["example.com"]
    assert settings.outbound.transport == "smtp://mail.example.com:25"
