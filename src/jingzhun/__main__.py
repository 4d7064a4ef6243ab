"""``python -m jingzhun`` is the ``jingzhun`` command."""

from jingzhun.cli import main

main()
