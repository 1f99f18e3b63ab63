"""spark-submit entry point for `sparklift allocate`: takes the same arguments."""

import sys

from sparklift.cli import main

if __name__ == "__main__":
    sys.exit(main(["allocate", *sys.argv[1:]]))
