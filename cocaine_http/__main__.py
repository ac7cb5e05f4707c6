"""`python -m cocaine_http ...`: the same as the `cocaine-http` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
