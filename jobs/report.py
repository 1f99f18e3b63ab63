"""spark-submit entry point for `sparklift report`: takes the same arguments."""

import sys

from sparklift.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
