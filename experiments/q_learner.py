"""Does cooperating pay against the other PPI learner? Q̂ of a trained learner against the real
value of its actions when the co-player is the other trained learner, planning as in training.

For each seed, learner 0 (A) plays learner 1 (B), both with their improved policies, as in the
phases' learner-vs-learner episodes. At round t every episode branches, with the same keys so
that the history before t is the same in each branch: A plays C or D at round t and then
follows its prior (what ``Q̂`` assumes), or its improved policy (the policy it really plays),
or tit-for-tat from round t on (a conditional policy the planner cannot reach in one step).
The value of a branch is A's reward summed over the ``ppi_depth`` rounds from t (within the
episode), averaged over episodes; ``Q̂`` is A's model's estimate in the same histories (mean
over ``ROLLOUTS`` rollouts per action). B's cooperation over those rounds shows how B answers.

Run from the repository root on a mixed-pool PPI run with checkpoints, e.g.
python -m experiments.q_learner runs/ppi-e40
or with B another run's learner (same seed index; e.g. step 2 against its frozen co-player):
python -m experiments.q_learner runs/mechanism/step2-extort runs/mechanism/step1-tabular:0
(its outputs: docs/ppi-cpu-gru/q-learner/).
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxcoop import environment, trained
from jaxcoop.algorithms import ppi
from jaxcoop.rollout import Policy, play

EPISODES, ROLLOUTS, ROUNDS = 1024, 16, (0, 3, 7, 12, 25, 40)
AFTER = ("prior", "improved", "tft")


def branch_policy(planner: ppi.Planner, params, key, t, action, after: str) -> Policy:
    """A's improved policy before round ``t``; at ``t`` the forced ``action`` (``after`` prior
    or improved) or tit-for-tat (``after`` tft); after ``t`` its prior, its improved policy or
    tit-for-tat."""
    model = ppi.network_model(planner.model, params)
    base = planner.policy(params, key)

    def step(state, x):
        carry, y = model.advance(state.carry, x)
        key, k_plan = jax.random.split(state.key)
        left = planner.horizon - state.round
        prior = jax.nn.log_softmax(model.prior(y))
        q = ppi.q_values(
            model, carry, y, left, k_plan, planner.num_rollouts, planner.depth, planner.gamma
        )
        improved = ppi.improved_logits(prior, q, planner.beta)
        theirs = jnp.argmax(x.obs, axis=-1) - 1  # first-person state 1 + 2 * own + theirs
        tft = jnp.where(
            (x.prev_action < 0)[:, None] | (theirs % 2 == 0)[:, None],
            jnp.array([[0.0, -1e9]]),
            jnp.array([[-1e9, 0.0]]),
        )
        forced = jnp.where(jnp.arange(2) == action, 0.0, -1e9)[None]
        later = {"prior": prior, "improved": improved, "tft": tft}[after]
        at_t = tft if after == "tft" else jnp.broadcast_to(forced, prior.shape)
        r = state.round
        logits = jnp.where(r < t, improved, jnp.where(r == t, at_t, later))
        return ppi.PlannerState(carry, r + 1, key), logits

    return Policy(base.initial_state, step)


def coplayer_counter(model: ppi.Model, payoffs) -> ppi.Model:
    """``model`` with the co-player's cooperation (1 or 0) in place of the counted reward, so
    ``q_values`` counts the co-player's expected cooperations inside the model; its tokens
    read the game's payoff (the trained reward head's prediction, up to its small error)."""
    own_payoff = jnp.asarray(payoffs, jnp.float32)[..., 0].reshape(-1)

    def advance(carry, x):
        state = jnp.argmax(x.obs, axis=-1)
        reward = jnp.where(state > 0, own_payoff[jnp.maximum(state - 1, 0)], 0.0)
        return model.advance(carry, x._replace(prev_reward=reward))

    def cooperations(y, next_obs):
        return ((next_obs - 1) % 2 == 0).astype(jnp.float32)

    return model._replace(advance=advance, reward=cooperations)


def q_hat(planner: ppi.Planner, params, episodes, t, key, payoffs):
    """A's model's ``Q̂`` ``[E, 2]`` at round ``t`` of ``episodes`` (its first ``t`` rounds),
    and the co-player's cooperations it expects over the same rollouts ``[E, 2]``."""
    model = ppi.network_model(planner.model, params)
    actions = jnp.swapaxes(episodes.actions, 0, 1)
    inputs = ppi.targets(actions, jnp.swapaxes(episodes.rewards[..., 0], 0, 1)).inputs
    num = actions.shape[1]

    def body(i, state):
        carry, _ = state
        x = jax.tree.map(lambda a: a[i], inputs)
        return model.advance(carry, x)

    carry, y = model.advance(model.initial_carry(num), jax.tree.map(lambda a: a[0], inputs))
    carry, y = jax.lax.fori_loop(1, t + 1, body, (carry, y))
    left, depth, gamma = planner.horizon - t, planner.depth, planner.gamma
    q = ppi.q_values(model, carry, y, left, key, ROLLOUTS, depth, gamma)
    coops = ppi.q_values(coplayer_counter(model, payoffs), carry, y, left, key, ROLLOUTS, depth)
    return q, coops


def calibration(planner: ppi.Planner, params, episodes):
    """Per round ``[T]``: A's model's predicted probability that the co-player cooperates
    (given the history and A's move) and how often it did, in ``episodes``."""
    actions = jnp.swapaxes(episodes.actions, 0, 1)
    t = ppi.targets(actions, jnp.swapaxes(episodes.rewards[..., 0], 0, 1))
    z = jnp.zeros((actions.shape[1], 10))
    _, obs_logits, _ = planner.model.apply(params, t.inputs, t.action, t.next_obs, z)
    _, pair = ppi.consistent_pair(obs_logits.reshape(-1, 5), t.action.reshape(-1))
    predicted = jax.nn.softmax(pair)[:, 0].reshape(t.action.shape)
    return predicted.mean(axis=1), (actions[..., 1] == 0).mean(axis=1)


def measure(
    run_dir: Path,
    coplayer: trained.Source | None = None,
    episodes: int = EPISODES,
    depth: int | None = None,
) -> dict:
    """Per round t: the mean over seeds of every branch's value and the other learner's
    cooperation, ``Q̂`` and the model's expected cooperations of the co-player, and the
    on-policy calibration. ``coplayer``: B (default: learner 1 of ``run_dir``); ``depth``: the
    rounds counted from t (default ``ppi_depth``)."""
    loaded = trained.load(run_dir)
    config = loaded.config
    planner, game = ppi.make_planner(config), environment.make_game(config.game, config.horizon)
    depth = config.ppi_depth if depth is None else depth
    co_loaded, co_learner = loaded, 1
    if coplayer is not None:
        co_loaded, co_learner = trained.load(coplayer.run_dir), coplayer.learner or 0
    co_planner = ppi.make_planner(co_loaded.config)

    @jax.jit
    def branch_values(params_a, params_b, key, t):
        k_a, k_b, k_play, k_q = jax.random.split(key, 4)
        b = co_planner.policy(params_b, k_b)
        window = (jnp.arange(config.horizon) >= t) & (jnp.arange(config.horizon) < t + depth)
        out = {}
        for after in AFTER:
            for action in (0, 1) if after != "tft" else (0,):
                a = branch_policy(planner, params_a, k_a, t, action, after)
                e = play(a, b, k_play, episodes, game)
                value = (e.rewards[..., 0] * window[None]).sum(axis=1)
                b_coop = ((e.actions[..., 1] == 0) * window[None]).sum(axis=1) / window.sum()
                out[f"{after}{'CD'[action] if after != 'tft' else ''}"] = (value, b_coop)
                if after == "prior" and action == 0:
                    out["qhat"], out["model_b_coops"] = q_hat(
                        planner, params_a, e, t, k_q, game.payoffs
                    )
                if after == "improved" and action == 0:
                    out["calibration"] = calibration(planner, params_a, e)
        calibrated = out.pop("calibration")
        return {**jax.tree.map(lambda v: v.mean(axis=0), out), "calibration": calibrated}

    rows = {}
    for t in ROUNDS:
        if t >= config.horizon - 1:
            continue
        per_seed = []
        for seed in range(config.num_seeds):
            params = [
                jax.tree.map(lambda x, s=seed, n=n: jnp.asarray(x[s, n]), tree.params)
                for tree, n in ((loaded, 0), (co_loaded, co_learner))
            ]
            key = jax.random.fold_in(jax.random.key(seed), t)
            per_seed.append(jax.device_get(branch_values(*params, key, t)))
        rows[t] = jax.tree.map(lambda *v: np.mean(v, axis=0), *per_seed)
    return {"config": config, "rows": rows}


def main(run_dir: Path, coplayer: str | None = None) -> None:
    source = None if coplayer is None else trained.Source.parse(coplayer)
    result = measure(run_dir, source)
    config = result["config"]
    b = "learner 1" if source is None else str(source)
    print(
        f"{run_dir}: learner 0 (A) against {b} (B), both planning; {EPISODES} episodes "
        f"per branch, mean over {config.num_seeds} seeds; values: A's reward over the "
        f"{config.ppi_depth} rounds from round t; Qhat: A's model, {ROLLOUTS} rollouts per action"
    )
    head = (
        f"{'round':>5s} {'Qhat(C)':>8s} {'Qhat(D)':>8s} {'dQhat':>6s} | {'prior: Q(C)':>11s} "
        f"{'Q(D)':>6s} {'dQ':>6s} | {'improved: Q(C)':>14s} {'Q(D)':>6s} {'dQ':>6s} | "
        f"{'tft':>5s} | {'B coop after C / D / tft':>24s} | {'model: after C / D':>18s}"
    )
    print(head)
    for t, row in result["rows"].items():
        qc, qd = row["qhat"]
        (pc, bc), (pd, bd) = row["priorC"], row["priorD"]
        (ic, _), (id_, _) = row["improvedC"], row["improvedD"]
        tft, bt = row["tft"]
        window = min(config.ppi_depth, config.horizon - t)
        mc, md = row["model_b_coops"] / window
        print(
            f"{t:5d} {qc:8.2f} {qd:8.2f} {qd - qc:+6.2f} | {pc:11.2f} {pd:6.2f} {pd - pc:+6.2f} | "
            f"{ic:14.2f} {id_:6.2f} {id_ - ic:+6.2f} | {tft:5.2f} | "
            f"{bc:10.2f} / {bd:.2f} / {bt:.2f} | {mc:11.2f} / {md:.2f}"
        )
    last = max(result["rows"])
    predicted, real = result["rows"][last]["calibration"]
    print(
        f"on-policy (both planning, rounds before {last}): B's cooperation per round as A's "
        f"model predicts it / as it was"
    )
    pairs = zip(predicted[:last], real[:last], strict=True)
    print("  " + " ".join(f"{p:.2f}/{r:.2f}" for p, r in pairs))


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:3])
