"""The reference guide's training command: `python scripts/train.py --config configs/default.yaml`.

The same as `wronai train --config ...` (see nbs/06_training.ipynb); every option of `wronai train` works here too.
Under `accelerate launch --multi_gpu --num_processes N scripts/train.py --config ...` each process runs it (data
parallel).
"""
import sys

from wronai.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
