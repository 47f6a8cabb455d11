"""``python -m tlswatch …`` runs the CLI (used to start the lab as a child process)."""

from tlswatch.cli.main import main

main()
