"""spark-submit entry point for `sparklift simulate-outcomes`: takes the same arguments."""

import sys

from sparklift.cli import main

if __name__ == "__main__":
    sys.exit(main(["simulate-outcomes", *sys.argv[1:]]))
