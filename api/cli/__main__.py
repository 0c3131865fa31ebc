"""`python -m api.cli`: the same as `campopt`."""

from api.cli import main

main()
