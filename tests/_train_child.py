"""Child process for the resume test: trains a switch on the controlled pair into argv[1]."""
import sys

import torch

torch.set_num_threads(1)
sys.path.insert(0, __file__.rsplit("/", 1)[0])

from conftest import ControlledPolicy  # noqa: E402

from londi.learn.train import TrainConfig, train_switch  # noqa: E402

if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO)
    # optional argv[3], argv[4]: select_every and select_episodes (default: no selection)
    select = {"select_every": int(sys.argv[3]), "select_episodes": int(sys.argv[4])} if len(sys.argv) > 4 else {
        "select_every": 0}
    config = TrainConfig(steps=int(sys.argv[2]), learning_starts=100, checkpoint_every=200, cost=0.1, seed=3, **select)
    quick = ControlledPolicy(name="controlled-quick", fail_on_hard=True)
    deep = ControlledPolicy(name="controlled-deepthink", fail_on_hard=False)
    train_switch(config, sys.argv[1], quick=quick, deepthink=deep, progress=False)
