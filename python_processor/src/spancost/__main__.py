"""``python -m spancost``: the same as the ``spancost`` command."""

from spancost.cli import main

main()
