"""Which packages the wheel holds: everything under batchrun/, and the top-level migrations/
folder as ``batchrun.migrations``, so an installed batchrun finds its migrations with
importlib.resources and never through a checkout's path. The rest is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["batchrun", "batchrun.*"]),
        "batchrun.migrations",
        "batchrun.migrations.versions",
    ],
    package_dir={"batchrun.migrations": "migrations"},
)
