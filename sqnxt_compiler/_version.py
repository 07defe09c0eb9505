"""The package version, apart from the package API so that its modules can read it without importing it."""

__version__ = "0.1.0"
