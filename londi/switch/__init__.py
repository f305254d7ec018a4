"""The per-step switch: :class:`~londi.switch.env.SwitchEnv` (the switching decision as a
gymnasium env), its state features, the episode loop (:mod:`londi.switch.rollout`) and the
saved switch's self-description (:mod:`londi.switch.card`)."""
