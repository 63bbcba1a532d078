"""``python -m l2dynamics``: the command line (same as the ``l2dynamics`` script)."""

from l2dynamics.cli import main

main()
