"""``python -m mini_mlflow`` runs the command line."""

from .cli import main

main()
