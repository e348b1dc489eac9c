"""User-facing errors: the CLI prints each as one line and exits 1, never a traceback."""

from __future__ import annotations


class HwnasError(Exception):
    """A mistake or missing piece the user can fix; its message is one complete line."""


class ConfigError(HwnasError):
    """A configuration file, key or value is wrong (devices.yaml, config.yaml, a flag)."""


class RuntimeUnavailable(HwnasError):
    """A runtime or its hardware is not reachable from here; the message says how to get it."""


class MissingLatencyError(HwnasError):
    """A latency table lacks keys a prediction needs."""

    def __init__(self, table: str, missing: list[str], command: str = "hwnas profile"):
        self.missing = list(missing)
        shown = ", ".join(self.missing[:5]) + (f" (+{len(self.missing) - 5} more)" if len(self.missing) > 5 else "")
        super().__init__(f"{table}: {len(self.missing)} block(s) not measured: {shown}; run `{command}` first")
