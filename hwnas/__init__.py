"""hwnas: hardware-aware neural architecture search with measured latency lookup tables."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hwnas")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"
