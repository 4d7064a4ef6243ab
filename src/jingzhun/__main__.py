"""``python -m jingzhun`` is the ``jingzhun`` command."""

from jingzhun.interrupt import console

console()
