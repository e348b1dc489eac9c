"""`python -m hwnas.cli` runs the `hwnas` command."""

from hwnas.cli import main

main()
