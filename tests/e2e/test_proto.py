"""buf: the STANDARD (and COMMENTS) lint rules, and no breaking change against
the last tagged revision of the proto, or main when there is no tag."""

from __future__ import annotations

import re
import shutil
import subprocess

from conftest import ROOT


def run(*command: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, timeout=120)


def baseline() -> str:
    tag = run("git", "describe", "--tags", "--abbrev=0")
    if tag.returncode == 0:
        return f".git#tag={tag.stdout.strip()}"
    return ".git#ref=main"


def test_buf_lint_passes_the_standard_rules():
    result = run("buf", "lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_finds_no_breaking_change_against_the_baseline():
    result = run("buf", "breaking", "--against", baseline())
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_would_catch_a_removed_field(tmp_path):
    changed = tmp_path / "changed"
    shutil.copytree(ROOT / "proto", changed / "proto")
    shutil.copy(ROOT / "buf.yaml", changed / "buf.yaml")
    proto = changed / "proto" / "matchtrader" / "sso" / "v1" / "sso_service.proto"
    text = proto.read_text()
    field = re.compile(r"^  string broker_id = 4\b.*;\n", re.MULTILINE)
    assert field.search(text)
    proto.write_text(field.sub("", text))
    result = run("buf", "breaking", str(changed), "--against", str(ROOT))
    assert result.returncode != 0
    assert "broker_id" in result.stdout
