"""``python -m jingzhun`` and the ``jingzhun`` console script."""

import sys

from jingzhun import interrupt


def console() -> None:
    """Catch Ctrl-C first, then import the command line (1-2 s a Ctrl-C may land in)."""
    interrupt.catch()
    try:
        from jingzhun.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    console()
