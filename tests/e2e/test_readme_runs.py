"""A newcomer's first hour, replayed: every grpcurl and curl command of the
README, in order, against one fresh sandbox with the default limits, each held
to the outcome the README states (success, or `# Fails with REASON` in the
comment above it; in a `text` block, the output shown below it); then each
example's README, its commands run in a copy of the example, against the same
sandbox."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import DEMO_EMAIL, DEMO_PASSWORD, ROOT, start_binary

EXAMPLES = ["python", "node", "php"]
FAILS = re.compile(r"^#\s*Fails with ([A-Z][A-Z_]+)\b")
STATUS_MARK = "__HTTP_STATUS__"


@dataclass
class Command:
    text: str
    fails_with: str | None
    line: int


def _complete(text: str) -> bool:
    if text.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return False
    return True


def commands(markdown: Path, tools: tuple[str, ...] = ("grpcurl", "curl")) -> list[Command]:
    """The commands of `markdown`'s `sh` and `text` blocks that start with one
    of `tools` (all commands when `tools` is empty), with the outcome stated."""
    text = markdown.read_text()
    found: list[Command] = []
    for block in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        language, body = block.group(1), block.group(2)
        first_line = text[: block.start(2)].count("\n") + 1
        lines = body.splitlines()
        if language == "text":
            for index, line in enumerate(lines):
                if line.startswith("$ ") and (not tools or line[2:].split()[0] in tools):
                    output = []
                    for following in lines[index + 1:]:
                        if following.startswith("$ "):
                            break
                        output.append(following)
                    shown = "\n".join(output)
                    reason = re.search(r'"reason":\s*"([A-Z_]+)"', shown)
                    failing = shown.lstrip().startswith("ERROR") and reason
                    found.append(Command(line[2:], reason.group(1) if failing else None, first_line + index))
            continue
        if language != "sh":
            continue
        comments: list[str] = []
        index = 0
        while index < len(lines):
            stripped = lines[index].strip()
            start = index
            if stripped.startswith("#"):
                comments.append(stripped)
            elif not stripped:
                comments = []
            else:
                command = lines[index]
                while not _complete(command) and index + 1 < len(lines):
                    index += 1
                    command += "\n" + lines[index]
                if not tools or stripped.split()[0] in tools:
                    stated = [m.group(1) for m in map(FAILS.match, comments) if m]
                    found.append(Command(command, stated[-1] if stated else None, first_line + start))
                comments = []
            index += 1
    return found


def reason_in(output: str) -> str | None:
    found = re.findall(r'"reason":\s*"([A-Z_]+)"', output)
    return found[-1] if found else None


class Newcomer:
    """Runs README commands as a newcomer would, with the README's addresses
    pointed at this sandbox and the pasted tokens taken from earlier answers."""

    def __init__(self, target: str, sandbox_url: str) -> None:
        self.target = target
        self.sandbox_port = sandbox_url.rstrip("/").rsplit(":", 1)[1]
        self.tokens = {"PASTE_REFRESH_TOKEN": None, "PASTE_ACCESS_TOKEN": None}
        self.env = dict(os.environ)
        # `python` and `pip` are this interpreter's; tools of the venv come first.
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}"
        self.env.update(
            MTR_SSO_TARGET=target,
            MTR_SSO_URL=f"http://{target}",
            PIP_DISABLE_PIP_VERSION_CHECK="1",
            npm_config_audit="false",
            npm_config_fund="false",
            npm_config_prefer_offline="true",
            npm_config_update_notifier="false",
        )

    def prepare(self, text: str) -> str:
        text = text.replace("localhost:50051", self.target).replace("127.0.0.1:50051", self.target)
        text = text.replace("SANDBOX_PORT", self.sandbox_port)
        for placeholder, token in self.tokens.items():
            if placeholder in text:
                assert token, f"{placeholder} is used before any answer carried one"
                text = text.replace(placeholder, token)
        if text.lstrip().startswith("curl "):
            text = text.replace("curl ", f"curl -w '\\n{STATUS_MARK}%{{http_code}}' --max-time 20 ", 1)
        return text

    def run(self, command: Command, cwd: Path = ROOT, timeout: int = 60) -> str:
        result = subprocess.run(
            ["bash", "-c", self.prepare(command.text)],
            cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout,
        )
        output = result.stdout + result.stderr
        where = f"line {command.line}: {command.text}\n{output[-3000:]}"
        http = re.search(STATUS_MARK + r"(\d{3})", output)
        succeeded = result.returncode == 0 and (http is None or http.group(1).startswith("2"))
        if command.fails_with:
            assert not succeeded, f"meant to fail with {command.fails_with}, it succeeded: {where}"
            assert reason_in(output) == command.fails_with, where
        else:
            assert succeeded, f"failed (exit {result.returncode}): {where}"
            for name, key in (("PASTE_REFRESH_TOKEN", "refreshToken"), ("PASTE_ACCESS_TOKEN", "accessToken")):
                seen = re.findall(rf'"{key}":\s*"([^"]+)"', output)
                if seen:
                    self.tokens[name] = seen[-1]
        return output


def example_copy(name: str, into: Path) -> Path:
    """The example as a newcomer's fresh clone has it (no installed packages,
    no generated stubs), beside the proto it reads."""
    shutil.copytree(ROOT / "proto", into / "proto")
    ignored = shutil.ignore_patterns("node_modules", "gen", "__pycache__")
    return Path(shutil.copytree(ROOT / "examples" / name, into / "examples" / name, ignore=ignored))


@pytest.fixture(scope="module")
def fresh_sandbox():
    """A sandbox of its own with every default limit, as the README starts it."""
    started = start_binary("--sandbox", "--listen", "127.0.0.1:0")
    yield started.events["grpc_addr"], started.events["sandbox_url"]
    assert started.stop() == 0


def test_the_readme_and_then_every_example_run_in_order_on_one_sandbox(fresh_sandbox, tmp_path):
    target, sandbox_url = fresh_sandbox
    newcomer = Newcomer(target, sandbox_url)
    readme = commands(ROOT / "README.md")
    assert len(readme) >= 20, [c.text for c in readme]
    stated_failures = [c.fails_with for c in readme if c.fails_with]
    assert {"INVALID_REQUEST", "ACCOUNT_ALREADY_EXISTS", "INVALID_JSON", "UPSTREAM_REJECTED_CREDENTIALS"} <= set(
        stated_failures), stated_failures
    for command in readme:
        newcomer.run(command)

    for name in EXAMPLES:
        example_readme = ROOT / "examples" / name / "README.md"
        steps = commands(example_readme, tools=())
        assert len(steps) == 2, f"{example_readme}: install and run, {[s.text for s in steps]}"
        folder = example_copy(name, tmp_path / name)
        outputs = [newcomer.run(step, cwd=folder, timeout=300) for step in steps]
        # The README says what the run prints; it does.
        promised = re.findall(r"`([a-z +-]+: ok)`", example_readme.read_text())
        assert promised, f"{example_readme} states no output"
        printed = [line.strip() for line in outputs[-1].splitlines()]
        assert [line for line in printed if line in promised] == promised, outputs[-1]
        if name == "python":
            assert (folder / "gen" / "matchtrader").is_dir(), "the stubs are generated on the first run"
    assert subprocess.run(["git", "check-ignore", "-q", "examples/python/gen/x.py"], cwd=ROOT).returncode == 0


def _login(target: str, email: str, password: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://{target}/v1/sessions:login",
        data=json.dumps({"email": email, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_the_demo_user_may_sign_in_far_more_often_than_other_emails():
    started = start_binary("--sandbox", "--listen", "127.0.0.1:0")
    try:
        target = started.events["grpc_addr"]
        for attempt in range(60):
            status, body = _login(target, DEMO_EMAIL, DEMO_PASSWORD)
            assert status == 200, (attempt, body)
        # Any other email keeps --email-limit-per-minute (20): the 21st sign-in is refused.
        statuses = [_login(target, "someone@example.com", "whatever")[0] for _ in range(20)]
        assert statuses[:20] == [401] * 20, statuses
        status, body = _login(target, "someone@example.com", "whatever")
        assert status == 429 and reason_in(json.dumps(body, separators=(",", ":"))) == "EMAIL_RATE_LIMITED", body
    finally:
        assert started.stop() == 0
