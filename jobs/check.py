"""spark-submit entry point for `sparklift check`: takes the same arguments."""

import sys

from sparklift.cli import main

if __name__ == "__main__":
    sys.exit(main(["check", *sys.argv[1:]]))
