"""Entry point of the `cloudservice` provider plugin: the Python language host runs this."""

import sys

from cloudservice.resources.server import main

if __name__ == "__main__":
    main(sys.argv[1:])
