"""The Dockerfile: hadolint-clean, the expected shape, and its build steps
really build here (no Docker engine exists, so the build stage's COPY and RUN
steps are replayed in a scratch directory)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def stages() -> list[list[str]]:
    """Instructions per stage, with continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    result: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        result[-1].append(line)
    return result


def test_hadolint_finds_nothing():
    result = subprocess.run(["hadolint", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_runtime_stage_is_minimal_non_root_and_exposes_the_grpc_port():
    build, runtime = stages()
    assert build[0].startswith("FROM rust:") and build[0].endswith(" AS build")
    assert runtime[0].startswith("FROM gcr.io/distroless/")
    copies = [i for i in runtime if i.startswith("COPY")]
    assert copies == ["COPY --from=build /src/target/release/mtr-sso /usr/local/bin/mtr-sso"], "only the binary"
    user = next(i for i in runtime if i.startswith("USER ")).split()[1]
    assert int(user.split(":")[0]) != 0, "non-root, numeric"
    assert "EXPOSE 50051" in runtime
    assert 'ENTRYPOINT ["/usr/local/bin/mtr-sso"]' in runtime


def test_the_build_stage_steps_build_the_binary_here(tmp_path):
    build, _ = stages()
    workdir = tmp_path / "src"
    workdir.mkdir()
    env = dict(os.environ, CARGO_TARGET_DIR=str(workdir / "target"))
    # Reuse a previous run's compiled dependencies when there is one; the
    # steps themselves still run from a copy holding only what COPY brings in.
    cache = ROOT / "target" / "dockerfile-check"
    # Moved, not copied, both ways: the compiled tree is most of a gigabyte.
    if cache.exists():
        shutil.move(cache, workdir / "target")
    for instruction in build[1:]:
        keyword, _, rest = instruction.partition(" ")
        if keyword == "WORKDIR":
            assert rest == "/src"
        elif keyword == "COPY":
            *sources, destination = rest.split()
            for source in sources:
                # Docker semantics: into a directory (trailing slash) under the source's own name.
                target = workdir / destination / Path(source).name if destination.endswith("/") else workdir / destination
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, target, dirs_exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / source, target)
        elif keyword == "RUN":
            result = subprocess.run(["bash", "-c", rest], cwd=workdir, env=env, capture_output=True, text=True, timeout=1500)
            assert result.returncode == 0, f"{rest}\n{result.stderr[-3000:]}"
        else:
            raise AssertionError(f"unexpected build instruction: {instruction}")
    binary = workdir / "target" / "release" / "mtr-sso"
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("mtr-sso ")
    shutil.rmtree(cache, ignore_errors=True)
    shutil.move(workdir / "target", cache)
