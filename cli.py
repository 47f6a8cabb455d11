"""Run tlswatch's CLI from a checkout: ``python cli.py …`` is the same as ``tlswatch …``."""

from tlswatch.cli.main import main

if __name__ == "__main__":
    main()
