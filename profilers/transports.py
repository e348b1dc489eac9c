"""How the host reaches an agent: a local subprocess (`agent://local`) or the system `ssh` (`ssh://[user@]host[:port]`).

Both run the same three files (agent.py, runners.py, trt_engine.py) copied into a folder named after their
content hash, so the target needs no hwnas install and an updated agent never mixes with an old one. Requests
time out instead of hanging; a dropped connection raises `TransportError` with what ssh or the agent said last.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import selectors
import shlex
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

from hwnas.errors import ConfigError, HwnasError

AGENT_FILES = ("agent.py", "runners.py", "trt_engine.py")
SSH_OPTIONS = ("-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=15",
               "-o", "ServerAliveCountMax=4")
HELLO_TIMEOUT_S = 120.0  # the first hello imports the runtime (Core ML and TensorRT take a while)


class TransportError(HwnasError):
    """The agent could not be started, or the connection to it broke."""


class AgentError(HwnasError):
    """The target answered, but refused or failed a request (a structured error from the agent)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"[{code}] {message}")
        self.code = code


def agent_bundle() -> dict[str, bytes]:
    """The agent's files as they ship to a target."""
    here = Path(__file__).parent / "target"
    return {name: (here / name).read_bytes() for name in AGENT_FILES}


def bundle_id(bundle: dict[str, bytes]) -> str:
    sha = hashlib.sha256()
    for name in sorted(bundle):
        sha.update(name.encode() + b"\0" + bundle[name])
    return sha.hexdigest()[:12]


def write_bundle(folder: Path) -> Path:
    """The agent's files in `folder` (for the local transport); returns the path of agent.py."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in agent_bundle().items():
        (folder / name).write_bytes(data)
    return folder / "agent.py"


def bundle_tar(bundle: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in sorted(bundle):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(bundle[name]), 0o644
            archive.addfile(info, io.BytesIO(bundle[name]))
    return buffer.getvalue()


def package_zip(folder: Path) -> bytes:
    """A folder artifact (.mlpackage) as a deterministic zip: sorted members, fixed timestamps."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(file.relative_to(folder).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, file.read_bytes(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


# -- ssh command lines ---------------------------------------------------------------------------------------
def check_transport(transport: str, where: str = "") -> None:
    """ConfigError when a transport's target (ssh user or host, adb serial) begins with '-', which a command would
    read as an option (`ssh://-oProxyCommand=...`); `where` prefixes the message (the device)."""
    target = transport.partition("://")[2]
    if re.search(r"(^|@)-", target):
        raise ConfigError(f"{where}transport '{transport}': '{target}' looks like a command-line option; a host, "
                          "user or serial may not begin with '-'")


def ssh_login(target: str) -> tuple[str, str]:
    """`[user@]host[:port]` (the part after ssh://) as its login `[user@]host` and its port ('' when not given)."""
    login, _, port = target.rpartition(":") if ":" in target else (target, "", "")
    return login, port


def ssh_command(target: str) -> list[str]:
    """`ssh` with batch-mode options for `[user@]host[:port]`; `--` ends the options, so the host is never one."""
    login, port = ssh_login(target)
    return ["ssh", *SSH_OPTIONS, *(["-p", port] if port else []), "--", login]


def remote_agent_dir(ident: str) -> str:
    return f"$HOME/.cache/hwnas/agent-{ident}"


def remote_install_script(ident: str) -> str:
    folder = remote_agent_dir(ident)
    return (f'D="{folder}"; test -f "$D/agent.py" && exit 0; rm -rf "$D.part" && mkdir -p "$D.part" && '
            f'tar -xf - -C "$D.part" && rm -rf "$D" && mv "$D.part" "$D"')


def remote_start_script(ident: str, python: str) -> str:
    return f'exec {shlex.quote(python)} "{remote_agent_dir(ident)}/agent.py" --cache "$HOME/.cache/hwnas/agent"'


def install_over_ssh(target: str, timeout: float = 120.0) -> str:
    """Copy the agent's files to the target once (content-addressed); returns the bundle id."""
    bundle = agent_bundle()
    ident = bundle_id(bundle)
    command = [*ssh_command(target), "sh -c " + shlex.quote(remote_install_script(ident))]
    try:
        result = subprocess.run(command, input=bundle_tar(bundle), capture_output=True, timeout=timeout)
    except FileNotFoundError:
        raise TransportError("the `ssh` command is not installed on this machine") from None
    except subprocess.TimeoutExpired:
        raise TransportError(f"ssh to {target} did not finish within {timeout:.0f} s") from None
    if result.returncode != 0:
        raise TransportError(_last_line(result.stderr.decode(errors="replace")) or f"ssh exit {result.returncode}")
    return ident


def agent_command(transport: str, python: str, workdir: Path) -> list[str]:
    """The command line that starts an agent for `agent://local` or `ssh://...`."""
    scheme, _, target = transport.partition("://")
    if scheme == "agent":
        agent = write_bundle(workdir / "agent")  # a clean folder: no sibling module shadows a runtime package
        return [sys.executable, str(agent), "--cache", str(workdir / "agent-cache")]
    if scheme == "ssh":
        check_transport(transport)
        ident = install_over_ssh(target)
        return [*ssh_command(target), "sh -c " + shlex.quote(remote_start_script(ident, python))]
    raise TransportError(f"no agent transport for '{transport}' (agent://local or ssh://[user@]host[:port])")


# -- the connection -------------------------------------------------------------------------------------------
class AgentConnection:
    """A running agent with a JSON-lines channel on its stdin/stdout; stderr goes to a log file."""

    def __init__(self, command: list[str], log_path: Path):
        self.log_path = log_path
        self._log = log_path.open("wb")
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                            start_new_session=True)
        except FileNotFoundError:
            self._log.close()
            raise TransportError(f"cannot start `{command[0]}`: not installed on this machine") from None
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.process.stdout, selectors.EVENT_READ)
        self._buffer = b""
        self._next_id = 0

    def request(self, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and wait for its reply; TransportError when the agent is gone or silent."""
        self._next_id += 1
        line = json.dumps({**payload, "id": self._next_id}).encode() + b"\n"
        try:
            self.process.stdin.write(line)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise self._lost("the connection closed") from None
        reply = self._read_line(timeout)
        try:
            decoded = json.loads(reply)
        except json.JSONDecodeError:
            raise self._lost(f"the agent answered something that is not JSON: {reply[:120]!r}") from None
        if decoded.get("id") != self._next_id:
            raise self._lost(f"reply to request {decoded.get('id')} while waiting for {self._next_id}")
        return decoded

    def _read_line(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise self._lost(f"no reply within {timeout:.0f} s")
            if not self._selector.select(remaining):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise self._lost("the connection closed")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _lost(self, reason: str) -> TransportError:
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        code = self.process.returncode
        said = self.stderr_tail()
        status = f", exit status {code}" if code is not None else ""
        return TransportError(f"{reason}{status}" + (f": {said}" if said else ""))

    def stderr_tail(self) -> str:
        """The last meaningful line the agent (or ssh) wrote to stderr."""
        self._log.flush()
        try:
            return _last_line(self.log_path.read_text(errors="replace"))
        except OSError:
            return ""

    def close(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(b'{"op": "bye"}\n')
                self.process.stdin.flush()
                self.process.stdin.close()
                self.process.wait(timeout=timeout)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self._selector.close()
        self._log.close()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("Warning: Permanently")]
    return lines[-1][:300] if lines else ""


def encode_artifact(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
