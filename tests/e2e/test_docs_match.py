"""The docs match the binary: every ErrorInfo reason the code can produce is in
the README's reason tables and every reason there exists in the code; every
metric docs/operations.md names is exported by `/metrics` once calls have
made it appear; every path in the README's layout table exists."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from conftest import DEMO_EMAIL, DEMO_PASSWORD, ROOT, start_binary

# Reasons written in the code that no caller can receive, each with why.
NEVER_SENT = {
    # The JSON router's guard for a proto route without a handler; every route
    # has one, and `json_api`'s tests call each.
    "RPC_NOT_SERVED",
}
# A reason beside its gRPC code: `(Code::NotFound, "ACCOUNT_NOT_FOUND")`,
# `(upstream_code_and_reason(…).0, "ACCOUNT_CREATION_OUTCOME_UNKNOWN")`,
# `refused(StatusCode::…, Code::Unimplemented, "METHOD_NOT_ALLOWED", …)`, or
# `reason: "INVALID_JSON"` in a refusal, or a constant such as
# `OUTCOME_UNKNOWN_REASON: &str = "TRADING_ACCOUNT_OUTCOME_UNKNOWN"`.
REASON_IN_CODE = re.compile(
    r'(?:(?:(?<![A-Za-z])Code::\w+|\)\.0)\s*,\s*|\breason:\s*|\b[A-Z_]*REASON:\s*&str\s*=\s*)"([A-Z][A-Z0-9_]+)"'
)


def reasons_in_code() -> dict[str, str]:
    """Every reason the service's source can send, with a file that has it.
    Test modules (`tests.rs`, and whatever follows `#[cfg(test)]`) are left out."""
    found: dict[str, str] = {}
    for source in sorted((ROOT / "src").rglob("*.rs")):
        if source.name == "tests.rs":
            continue
        code = source.read_text().split("#[cfg(test)]")[0]
        for match in REASON_IN_CODE.finditer(code):
            found.setdefault(match.group(1), str(source.relative_to(ROOT)))
    return {reason: where for reason, where in found.items() if reason not in NEVER_SENT}


def markdown_tables(text: str, first_header: str) -> list[list[list[str]]]:
    """The rows (cells) of every table whose first header cell is `first_header`."""
    tables, current, inside = [], [], False
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not inside and cells[0] == first_header:
                inside, current = True, []
            elif inside and not set(cells[0]) <= set("-: "):
                current.append(cells)
            continue
        if inside:
            tables.append(current)
            inside = False
    if inside:
        tables.append(current)
    return tables


def reasons_in_readme() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    tables = markdown_tables(readme, "reason")
    assert len(tables) >= 2, "the reason table and the JSON/HTTP one"
    return {name for table in tables for row in table for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row[0])}


def test_every_reason_the_code_sends_is_in_the_readme_and_every_listed_reason_exists():
    in_code = reasons_in_code()
    assert len(in_code) >= 30, in_code
    listed = reasons_in_readme()
    missing = {reason: where for reason, where in in_code.items() if reason not in listed}
    assert not missing, f"reasons the code sends but the README's tables lack: {missing}"
    stale = listed - set(in_code)
    assert not stale, f"reasons in the README that no code sends: {stale}"


def test_every_path_in_the_readme_layout_table_exists():
    readme = (ROOT / "README.md").read_text()
    (layout,) = markdown_tables(readme, "path")
    paths = [path for row in layout for path in re.findall(r"`([^`]+)`", row[0])]
    assert len(paths) >= 30, paths
    for path in paths:
        if "*" in path:
            assert list(ROOT.glob(path)), f"nothing matches {path}"
        elif path.endswith("/"):
            assert (ROOT / path).is_dir(), f"{path} is not a folder"
        else:
            assert (ROOT / path).is_file(), f"{path} is not a file"


def documented_metrics() -> list[str]:
    operations = (ROOT / "docs" / "operations.md").read_text()
    (table,) = markdown_tables(operations, "metric")
    return [re.fullmatch(r"`([a-z_]+)`", row[0]).group(1) for row in table]


def exported_names(metrics_addr: str) -> set[str]:
    with urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


def post(target: str, path: str, body: dict, timeout: float = 15) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://{target}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_every_metric_in_operations_md_is_exported_after_the_calls_that_make_it_appear(tmp_path):
    documented = documented_metrics()
    assert len(documented) >= 14, documented
    exported: set[str] = set()

    # The sandbox, with a quota of 3 calls per API in a 2 s window (a slot frees 3 s after its
    # call), so that a fourth call to the Broker-API 1.5 s later waits for a slot.
    sandbox = start_binary("--sandbox", "--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
                           "--upstream-quota-per-minute", "3", "--limit-window", "2s", "--quota-max-wait", "2s")
    try:
        target = sandbox.events["grpc_addr"]
        status, login = post(target, "/v1/sessions:login", {"email": DEMO_EMAIL, "password": DEMO_PASSWORD})
        assert status == 200, login
        token = login["session"]["refreshToken"]
        assert post(target, "/v1/sessions:refresh", {"refreshToken": token})[0] == 200
        assert post(target, "/v1/sessions:refresh", {"refreshToken": token})[0] == 200, "reused in the window"
        assert post(target, "/v1/sessions:login", {"email": DEMO_EMAIL, "password": "wrong"})[0] == 401
        for _ in range(3):
            status, answer = post(target, "/v1/oneTimeTokens:issue", {"email": DEMO_EMAIL})
            assert status == 200, answer
        time.sleep(1.5)
        started = time.monotonic()
        status, answer = post(target, "/v1/oneTimeTokens:issue", {"email": DEMO_EMAIL})
        assert status == 200, answer
        assert time.monotonic() - started > 0.5, "the fourth call waited for a quota slot"
        exported |= exported_names(sandbox.events["metrics_addr"])
    finally:
        assert sandbox.stop() == 0

    # A vendor that refuses connections: retries, then an open circuit. Its key is read from a
    # file, which is watched for rotation: the reload series are there from the start.
    port = closed_port()
    key_file = tmp_path / "api-key"
    key_file.write_text("key-of-a-vendor-that-is-down\n")
    broken = start_binary("--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
                          "--broker-api-url", f"http://127.0.0.1:{port}", "--platform-url", f"http://127.0.0.1:{port}",
                          "--api-key-file", str(key_file), "--broker-id", "1")
    try:
        target = broken.events["grpc_addr"]
        for _ in range(7):
            status, answer = post(target, "/v1/sessions:login", {"email": "a@example.com", "password": "pw"})
            assert status == 503, answer
        exported |= exported_names(broken.events["metrics_addr"])
    finally:
        assert broken.stop() == 0

    # With Redis: its gauge and outage counter exist only when Redis is configured.
    port = closed_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        shared = start_binary("--sandbox", "--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
                              "--redis-url", f"redis://127.0.0.1:{port}")
        try:
            exported |= exported_names(shared.events["metrics_addr"])
        finally:
            assert shared.stop() == 0
    finally:
        redis.kill()
        redis.wait()

    def appears(name: str) -> bool:
        return any(candidate in exported for candidate in (name, name.removesuffix("_total"), f"{name}_bucket"))

    missing = [name for name in documented if not appears(name)]
    assert not missing, f"documented but not exported: {missing}; exported: {sorted(exported)}"
