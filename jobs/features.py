"""spark-submit entry point for `sparklift features`: takes the same arguments."""

import sys

from sparklift.cli import main

if __name__ == "__main__":
    sys.exit(main(["features", *sys.argv[1:]]))
