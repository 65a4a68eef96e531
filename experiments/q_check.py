"""How well a trained PPI model plans: its Q̂ against the value of the same actions, followed by
the same prior, against the real co-player (``ppi.against_tabular``), along one scripted history
(own moves D, C, C, ...) against tit-for-tat, always-cooperate and always-defect.

Run from the repository root on a PPI run that has checkpoints, e.g. the step-1 run of
`python -m experiments.mechanism --preset cpu --algo ppi --out runs/mechanism-cpu-ppi-gru`:
python -m experiments.q_check runs/mechanism-cpu-ppi-gru/step1-tabular
(its outputs: docs/ppi-cpu-gru/q-check/).
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxcoop import environment, records, strategies, trained
from jaxcoop.algorithms import ppi
from jaxcoop.environment import START
from jaxcoop.networks import RoundInput

ROLLOUTS, ROUNDS = 256, (0, 1, 3, 7, 12)
OWN = [1] + [0] * 19  # D, then C
COPLAYERS = {
    "tit_for_tat": strategies.tit_for_tat(),
    "always_cooperate": strategies.always_cooperate(),
    "always_defect": strategies.always_defect(),
}


def rounds_of(theta, horizon):
    """The scripted history against ``theta``: first-person states before each round."""
    states, mine, theirs = [START], None, None
    for t in range(horizon - 1):
        seen = START if t == 0 else 1 + 2 * theirs + mine  # the co-player's view
        theirs = int(np.random.default_rng(t).random() >= float(theta[seen]))  # D = 1
        mine = OWN[t]
        states.append(1 + 2 * mine + theirs)
    return states


def q_table(run_dir: Path, learner: int = 0, rollouts: int = ROLLOUTS) -> dict:
    """Per co-player: the rounds checked and, per round, the mean over seeds of Q̂(C), Q̂(D)
    and the real Q(C), Q(D) ``[R, 4]``."""
    loaded = trained.load(run_dir)
    config = loaded.config
    model, payoffs = ppi.make_model(config), environment.PRISONERS_DILEMMA
    rounds = [t for t in ROUNDS if t < config.horizon - 1]
    table = {}
    for name, theta in COPLAYERS.items():
        states = rounds_of(np.asarray(theta), config.horizon)
        rows = np.zeros((len(rounds), 4))
        for seed in range(config.num_seeds):
            params = jax.tree.map(lambda x, s=seed: jnp.asarray(x[s, learner]), loaded.params)
            net = ppi.network_model(model, params)
            for kind, m in enumerate((net, ppi.against_tabular(net, theta, payoffs))):
                carry = m.initial_carry(1)
                prev_action, prev_reward = -1, 0.0
                for t in range(max(rounds) + 1):
                    x = RoundInput(
                        environment.one_hot_states(jnp.array([states[t]])),
                        jnp.array([prev_action]),
                        jnp.array([prev_reward]),
                    )
                    carry, y = m.advance(carry, x)
                    if t in rounds:
                        key = jax.random.key(t)
                        left = config.horizon - t
                        depth, gamma = config.ppi_depth, config.gamma
                        q = ppi.q_values(m, carry, y, left, key, rollouts, depth, gamma)
                        rows[rounds.index(t), 2 * kind : 2 * kind + 2] += np.asarray(q[0])
                    prev_action = OWN[t]
                    prev_reward = float(payoffs[OWN[t], (states[t + 1] - 1) % 2, 0])
        table[name] = (rounds, rows / config.num_seeds)
    return table


def main(run_dir: Path, learner: int = 0) -> None:
    config, _ = records.read_config(run_dir)  # q_table restores the parameters
    print(
        f"{run_dir}; learner {learner}; {ROLLOUTS} rollouts of {config.ppi_depth} rounds; own "
        f"moves D, C, C, ...; Q̂(D) - Q̂(C) against the real value's difference, mean over "
        f"{config.num_seeds} seeds"
    )
    print(
        f"{'co-player':18s} {'round':>5s} {'Qhat(C)':>8s} {'Qhat(D)':>8s} {'dQhat':>7s} "
        f"{'real Q(C)':>9s} {'real Q(D)':>9s} {'real dQ':>8s}"
    )
    for name, (rounds, rows) in q_table(run_dir, learner).items():
        for t, (qc, qd, rc, rd) in zip(rounds, rows, strict=True):
            print(
                f"{name:18s} {t:5d} {qc:8.2f} {qd:8.2f} {qd - qc:+7.2f} {rc:9.2f} {rd:9.2f} "
                f"{rd - rc:+8.2f}"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]), *(int(a) for a in sys.argv[2:]))
