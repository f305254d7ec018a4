"""The stable-baselines3 side: :class:`~londi.learn.dqn.LondiDQN` (reward and cost values),
its replay buffer, switch ensembles, and training runs (:mod:`londi.learn.train`, with
checkpoint, progress and selection callbacks)."""
