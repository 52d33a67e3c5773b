"""perfgen: measure LLM providers the Prometheus way and keep the proxy's routes fast.

The parts live in their own folders of the repository and are installed under this one
namespace: `perfgen.exporter`, `perfgen.simulator`, `perfgen.rules`, `perfgen.generator`,
`perfgen.stack`, `perfgen.grafana`. This package holds what several parts share: the
config model (`perfgen.config`) and the `perfgen` command (`perfgen.cli`).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    # The version lives in pyproject.toml only; this reads it from the installed metadata.
    __version__ = version("perfgen")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
