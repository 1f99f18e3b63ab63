"""spark-submit entry point for `sparklift user-history`: takes the same arguments."""

import sys

from sparklift.cli import main

if __name__ == "__main__":
    sys.exit(main(["user-history", *sys.argv[1:]]))
