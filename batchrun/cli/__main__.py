"""``python -m batchrun.cli``: the same as the ``batchrun`` command."""

from batchrun.cli import main

main()
