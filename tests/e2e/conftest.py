"""Fixtures for the end-to-end checks: the real binary in sandbox mode, and
Python stubs generated from proto/ at test time."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("MTR_SSO_BIN", ROOT / "target" / "debug" / "mtr-sso"))
DEMO_EMAIL = "test@match-trade.com"
DEMO_PASSWORD = "abcd1234"


@dataclass
class Gateway:
    target: str
    sandbox_url: str
    process: subprocess.Popen
    # The audit trail of the whole run, one JSON event per line (see test_audit.py).
    audit_file: Path
    metrics_url: str


def _read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)


@dataclass
class Started:
    """A running mtr-sso and what its startup lines told."""

    process: subprocess.Popen
    events: dict

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)


def start_binary(*arguments: str) -> Started:
    """Starts the binary with `arguments` and `--log-format json`, and waits for
    its listening line. The returned events hold the last value of every field
    the startup lines carried (`grpc_addr`, `sandbox_url`, `metrics_addr`)."""
    assert BINARY.exists(), f"build the binary first: {BINARY}"
    process = subprocess.Popen(
        [str(BINARY), *arguments, "--log-format", "json", "--shutdown-grace", "5s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
    events: dict = {}
    seen = []
    while "grpc_addr" not in events:
        try:
            line = lines.get(timeout=20)
        except queue.Empty:
            process.kill()
            pytest.fail(f"mtr-sso did not start; output: {seen}")
        seen.append(line)
        try:
            events.update(json.loads(line))
        except json.JSONDecodeError:
            continue
    return Started(process=process, events=events)


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    """mtr-sso --sandbox on OS-picked ports; stopped with SIGTERM at the end, after which the
    audit trail of the whole run is checked (test_audit.check_whole_run)."""
    audit_file = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    # The suite signs many users in more often than a real user would in a minute.
    started = start_binary("--sandbox", "--listen", "127.0.0.1:0", "--email-limit-per-minute", "200",
                           "--metrics-addr", "127.0.0.1:0", "--audit-file", str(audit_file))
    running = Gateway(target=started.events["grpc_addr"], sandbox_url=started.events["sandbox_url"],
                      process=started.process, audit_file=audit_file,
                      metrics_url=f"http://{started.events['metrics_addr']}/metrics")
    yield running
    from test_audit import check_whole_run, rpc_counts

    counts = rpc_counts(running)
    assert started.stop() == 0
    check_whole_run(running, counts)


@pytest.fixture(scope="session")
def python_stubs(tmp_path_factory):
    """Generates the Python stubs from proto/ with grpcio-tools and imports them."""
    import grpc_tools
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("gen")
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    code = protoc.main(
        [
            "protoc",
            f"-I{ROOT / 'proto'}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(ROOT / "proto" / "matchtrader" / "sso" / "v1" / "sso_service.proto"),
        ]
    )
    assert code == 0, "protoc failed"
    sys.path.insert(0, str(out))
    sys.path.insert(0, str(ROOT / "examples" / "python"))
    return out
