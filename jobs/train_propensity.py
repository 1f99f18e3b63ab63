"""spark-submit entry point for `sparklift train-propensity`: takes the same arguments."""

import sys

from sparklift.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-propensity", *sys.argv[1:]]))
