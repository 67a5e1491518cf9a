"""``python -m shadow`` runs the CLI."""

from shadow.cli import main

main()
