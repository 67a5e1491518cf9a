"""``python -m shadow`` runs the CLI."""

from shadow.cli import main

if __name__ == "__main__":  # not when a worker process imports it (multiprocessing)
    main()
