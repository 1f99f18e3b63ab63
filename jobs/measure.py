"""spark-submit entry point for `sparklift measure`: takes the same arguments."""

import sys

from sparklift.cli import main

if __name__ == "__main__":
    sys.exit(main(["measure", *sys.argv[1:]]))
