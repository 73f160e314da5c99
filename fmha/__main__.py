"""``python -m fmha``: time and verify fmha.attention on one configuration.

The work is done by :mod:`fmha.runner`; ``python -m fmha --help`` lists the flags.
"""
import sys


def main() -> int:
    from fmha.runner import main as run_cli

    return run_cli()


if __name__ == "__main__":
    sys.exit(main())
