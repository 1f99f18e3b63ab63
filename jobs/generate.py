"""spark-submit entry point for `sparklift generate`: takes the same arguments."""

import sys

from sparklift.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
