"""spark-submit entry point for `sparklift design`: takes the same arguments."""

import sys

from sparklift.cli import main

if __name__ == "__main__":
    sys.exit(main(["design", *sys.argv[1:]]))
