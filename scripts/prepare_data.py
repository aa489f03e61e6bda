"""Build the polish-instruct dataset (the reference guide's data preparation step).

Same as `wronai data build`: python scripts/prepare_data.py [--out DIR] [--seed 42]
"""
import sys

from wronai.cli import main

if __name__ == "__main__":
    sys.exit(main(["data", "build", *sys.argv[1:]]))
