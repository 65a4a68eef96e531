"""The training algorithms, as peers. Each family is a package that owns its trainer, its
per-learner state and its losses, and shares the environment, co-players, networks and rollout;
neither imports the other:

* ``actor_critic``: A2C and PPO (``algo="a2c"``, ``"ppo"``);
* ``ppi``: predictive policy improvement (``algo="ppi"``).

``jaxcoop.train.ALGORITHMS`` is the one place that maps an algorithm's name to its family.
"""
