"""spark-submit entry point for `sparklift forecast`: takes the same arguments."""

import sys

from sparklift.cli import main

if __name__ == "__main__":
    sys.exit(main(["forecast", *sys.argv[1:]]))
