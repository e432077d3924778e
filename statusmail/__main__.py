"""`python -m statusmail` is the `statusmail` command."""

from statusmail.cli import main

main()
