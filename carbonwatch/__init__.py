"""carbonwatch: real-time energy and CO2 monitoring for key energy-using enterprises."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("carbonwatch")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+local"
