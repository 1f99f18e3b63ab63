"""spark-submit entry point for `sparklift feedback`: takes the same arguments."""

import sys

from sparklift.cli import main

if __name__ == "__main__":
    sys.exit(main(["feedback", *sys.argv[1:]]))
