"""PPI's pieces: the model's targets and losses against hand-computed values, the step-by-step
model against the parallel one, and planning (Q̂, the improved policy) against exact values of
tabular co-players."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcoop import environment, strategies, train
from jaxcoop.algorithms import ppi
from jaxcoop.environment import START, C, D
from jaxcoop.networks import RoundInput
from jaxcoop.rollout import play
from jaxcoop.state import PlayMetrics

IPD = environment.PRISONERS_DILEMMA
MIRROR = np.array([0, 1, 3, 2, 4])  # a state seen by the other player (CD <-> DC)


def tiny_model(backbone="gru"):
    return ppi.WorldModel(
        backbone=backbone, embed_dim=8, hidden_dim=16, num_layers=1, num_heads=2, horizon=6
    )


def init(model, horizon=6, batch=3):
    t = ppi.targets(jnp.zeros((horizon, batch, 2), jnp.int32), jnp.zeros((horizon, batch)))
    z = jnp.zeros((batch, strategies.OPPONENT_ID_SIZE))
    return model.init(jax.random.key(0), t.inputs, t.action, t.next_obs, z)


# --- Targets and loss. -------------------------------------------------------------------------


def test_targets_are_the_rounds_seen_first_person():
    # One episode of three rounds: (C, D), (D, D), (D, C); own rewards -1, 0, 2.
    actions = jnp.array([[C, D], [D, D], [D, C]], jnp.int32)[:, None]
    rewards = jnp.array([-1.0, 0.0, 2.0])[:, None]
    t = ppi.targets(actions, rewards)
    cd, dd, dc = 2, 4, 3  # 1 + 2 * own + other
    np.testing.assert_array_equal(t.next_obs[:, 0], [cd, dd, dc])
    np.testing.assert_array_equal(t.inputs.obs[:, 0].argmax(-1), [START, cd, dd])
    np.testing.assert_array_equal(t.inputs.prev_action[:, 0], [-1, C, D])
    np.testing.assert_array_equal(t.inputs.prev_reward[:, 0], [0.0, -1.0, 0.0])
    np.testing.assert_array_equal(t.action[:, 0], [C, D, D])


def _zero_heads(params, reward_bias=0.0):
    p = jax.tree.map(lambda x: x, params)  # a copy
    inner = dict(p["params"])
    for head in ("policy", "next_obs", "next_reward"):
        inner[head] = jax.tree.map(jnp.zeros_like, inner[head])
    inner["next_reward"] = {**inner["next_reward"], "bias": jnp.array([reward_bias])}
    return {"params": inner}


@pytest.mark.parametrize("backbone", ["gru", "transformer"])
def test_loss_with_zeroed_heads_is_hand_computed(backbone):
    model = tiny_model(backbone)
    params = _zero_heads(init(model), reward_bias=0.5)
    # Two episodes of 2 rounds. Own rewards: (C, C) 1, (C, D) -1 | (D, C) 2, (D, D) 0.
    actions = jnp.array([[[C, C], [D, C]], [[C, D], [D, D]]], jnp.int32)  # [T, B, 2]
    rewards = jnp.array([[1.0, 2.0], [-1.0, 0.0]])
    loss = ppi.model_loss(model, params, ppi.targets(actions, rewards))
    # Uniform logits: -log(1/2) per action, -log(1/5) per next observation; the reward is
    # predicted as 0.5 everywhere: ((0.5)^2 + (1.5)^2 + (1.5)^2 + (0.5)^2) / 4 / 2 = 0.625.
    assert float(loss.action) == pytest.approx(np.log(2), abs=1e-6)
    assert float(loss.obs) == pytest.approx(np.log(5), abs=1e-6)
    assert float(loss.reward) == pytest.approx(0.625, abs=1e-6)
    assert float(loss.total) == pytest.approx(np.log(2) + np.log(5) + 0.625, abs=1e-5)
    # Weight 0 leaves episode 1 out: rewards 1 and -1 -> ((0.5)^2 + (1.5)^2) / 2 / 2 = 0.625,
    # episode 0 alone; with rewards changed in episode 1 nothing moves.
    weight = jnp.array([1.0, 0.0])
    alone = ppi.model_loss(model, params, ppi.targets(actions, rewards), weight)
    changed = ppi.model_loss(model, params, ppi.targets(actions, rewards.at[:, 1].set(9.0)), weight)
    assert float(alone.reward) == pytest.approx(0.625, abs=1e-6)
    assert float(changed.total) == pytest.approx(float(alone.total), abs=1e-6)


def test_loss_terms_are_the_negative_log_likelihoods_of_the_model_outputs():
    model = tiny_model()
    params = init(model)
    key = jax.random.key(1)
    actions = jax.random.bernoulli(key, 0.5, (6, 3, 2)).astype(jnp.int32)
    rewards = IPD[actions[..., 0], actions[..., 1], 0]
    t = ppi.targets(actions, rewards)
    z = jnp.zeros((3, strategies.OPPONENT_ID_SIZE))
    outputs = model.apply(params, t.inputs, t.action, t.next_obs, z)
    logits, obs_logits, reward = (np.asarray(v) for v in outputs)
    a, o, r = (np.asarray(v) for v in (t.action, t.next_obs, t.reward))
    log_pa = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    log_po = obs_logits - np.log(np.exp(obs_logits).sum(-1, keepdims=True))
    loss = ppi.model_loss(model, params, t)
    assert float(loss.action) == pytest.approx(
        -np.take_along_axis(log_pa, a[..., None], -1).mean(), rel=1e-5
    )
    assert float(loss.obs) == pytest.approx(
        -np.take_along_axis(log_po, o[..., None], -1).mean(), rel=1e-5
    )
    assert float(loss.reward) == pytest.approx((0.5 * (r - reward) ** 2).mean(), rel=1e-5)
    # The own-action term over episode 1 alone (ppi_prior_window); the others over all three.
    recent = ppi.model_loss(model, params, t, action_weight_B=jnp.array([0.0, 1.0, 0.0]))
    assert float(recent.action) == pytest.approx(
        -np.take_along_axis(log_pa, a[..., None], -1)[:, 1].mean(), rel=1e-5
    )
    assert (float(recent.obs), float(recent.reward)) == (float(loss.obs), float(loss.reward))


def test_reward_is_predicted_from_the_next_observation():
    # The paper's token order: the reward comes after the next observation, which fixes it.
    # Hidden unit k reads only observation k + 1's one-hot (x 10, where swish(10) = 9.9995) and
    # the output weighs it by that joint action's payoff, whatever the features are.
    model = tiny_model()
    params = _zero_heads(init(model))
    hidden, width = 16, 8  # GRU width, embed_dim (the hidden layer's width)
    w_hidden = np.zeros((hidden + 5, width), np.float32)
    w_hidden[hidden + 1 + np.arange(4), np.arange(4)] = 10.0
    w_out = np.zeros((width, 1), np.float32)
    w_out[:4, 0] = IPD[..., 0].reshape(4) / (10.0 * jax.nn.sigmoid(10.0))  # CC, CD, DC, DD
    params["params"]["next_reward_hidden"] = {"kernel": w_hidden, "bias": np.zeros(width)}
    params["params"]["next_reward"] = {"kernel": w_out, "bias": np.zeros(1)}
    m = ppi.network_model(model, params)
    y = jax.random.normal(jax.random.key(3), (4, hidden))
    np.testing.assert_allclose(m.reward(y, jnp.arange(1, 5)), [1.0, -1.0, 2.0, 0.0], atol=1e-5)
    actions = jnp.array([[C, C], [C, D], [D, C], [D, D]], jnp.int32)[None]  # [1, 4, 2]
    t = ppi.targets(actions, IPD[actions[..., 0], actions[..., 1], 0])
    assert float(ppi.model_loss(model, params, t).reward) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("backbone", ["gru", "transformer"])
def test_step_by_step_model_equals_the_parallel_forward(backbone):
    model = tiny_model(backbone)
    params = init(model)
    actions = jax.random.bernoulli(jax.random.key(2), 0.5, (6, 3, 2)).astype(jnp.int32)
    t = ppi.targets(actions, IPD[actions[..., 0], actions[..., 1], 0])
    z = jnp.zeros((3, strategies.OPPONENT_ID_SIZE))
    logits, obs_logits, reward = model.apply(params, t.inputs, t.action, t.next_obs, z)
    m = ppi.network_model(model, params)
    carry = m.initial_carry(3)
    for step in range(6):
        x = jax.tree.map(lambda v, s=step: v[s], t.inputs)
        carry, y = m.advance(carry, x)
        np.testing.assert_allclose(m.prior(y), logits[step], atol=1e-5)
        np.testing.assert_allclose(m.next_obs(y, t.action[step]), obs_logits[step], atol=1e-5)
        np.testing.assert_allclose(m.reward(y, t.next_obs[step]), reward[step], atol=1e-5)


# --- Planning against exact values. ------------------------------------------------------------


def tabular_model(theta_own, theta_coplayer) -> ppi.Model:
    """An exact model of a memory-1 co-player, with a memory-1 prior: the carry is the state."""
    theta_own = jnp.asarray(theta_own, jnp.float32)
    theta_co = jnp.asarray(theta_coplayer, jnp.float32)
    payoff_own = jnp.asarray(IPD[..., 0])  # [own, other]

    def advance(carry, x: RoundInput):
        state = jnp.argmax(x.obs, axis=-1)
        return state, jax.nn.one_hot(state, 5)

    def next_obs(y, action):
        state = jnp.argmax(y, axis=-1)
        p_c = theta_co[jnp.asarray(MIRROR)[state]]
        first = 1 + 2 * action
        log_p = jnp.full(y.shape, -jnp.inf)
        rows = jnp.arange(y.shape[0])
        return log_p.at[rows, first].set(jnp.log(p_c)).at[rows, first + 1].set(jnp.log1p(-p_c))

    def reward(y, obs):
        return payoff_own.reshape(4)[obs - 1]

    return ppi.Model(
        initial_carry=lambda n: jnp.zeros((n,), jnp.int32),
        advance=advance,
        prior=lambda y: strategies.logits(theta_own, y),
        next_obs=next_obs,
        reward=reward,
    )


def exact_q(theta_own, theta_co, state, action, depth, rounds_left, gamma=1.0):
    """Q of ``action`` in ``state`` by the Markov chain of joint actions (own view)."""
    theta_own, theta_co = np.asarray(theta_own, float), np.asarray(theta_co, float)
    payoff = IPD[..., 0].reshape(4)  # CC, CD, DC, DD
    p_b = theta_co[MIRROR[state]]
    dist = np.zeros(4)
    dist[2 * action] = p_b
    dist[2 * action + 1] = 1 - p_b
    transition = np.zeros((4, 4))
    for j in range(4):
        pa, pb = theta_own[1 + j], theta_co[MIRROR[1 + j]]
        transition[j] = np.outer([pa, 1 - pa], [pb, 1 - pb]).reshape(4)
    q = 0.0
    for h in range(min(depth, rounds_left)):
        q += gamma**h * dist @ payoff
        dist = dist @ transition
    return q


def _q(model, state, depth, rounds_left, rollouts, gamma=1.0, key=0):
    x = RoundInput(environment.one_hot_states(jnp.array([state])), jnp.array([-1]), jnp.zeros(1))
    carry, y = model.advance(model.initial_carry(1), x)
    q = ppi.q_values(model, carry, y, rounds_left, jax.random.key(key), rollouts, depth, gamma)
    return np.asarray(q[0])


@pytest.mark.parametrize("rounds_left, expected", [(10, (3.0, 2.0)), (1, (1.0, 2.0))])
def test_q_of_an_always_defect_prior_against_tit_for_tat_is_hand_computed(rounds_left, expected):
    # C first: (C, C) 1, then D against TFT's C 2, then (D, D) 0 ... -> 3 over 5 rounds.
    # D first: (D, C) 2, then (D, D) 0 ... -> 2. With one round left only the first counts.
    model = tabular_model(strategies.always_defect(), strategies.tit_for_tat())
    q = _q(model, START, depth=5, rounds_left=rounds_left, rollouts=3)
    np.testing.assert_allclose(q, expected, atol=1e-6)


@pytest.mark.parametrize("state", [START, 2, 4])
def test_monte_carlo_q_matches_the_exact_markov_chain(state):
    theta_own = np.array([0.6, 0.7, 0.2, 0.5, 0.4])
    theta_co = np.array([0.8, 0.9, 0.3, 0.6, 0.1])
    model = tabular_model(theta_own, theta_co)
    q = _q(model, state, depth=4, rounds_left=10, rollouts=20_000, gamma=0.9)
    exact = [exact_q(theta_own, theta_co, state, a, 4, 10, 0.9) for a in (C, D)]
    # Returns lie in [-4, 8]: a standard error below 6 / sqrt(20,000) = 0.042.
    np.testing.assert_allclose(q, exact, atol=0.1)
    assert abs(q[D] - q[C] - (exact[D] - exact[C])) < 0.1


def test_against_tabular_plays_the_models_prior_against_the_real_coplayer():
    # A model that believes its co-player always cooperates: C first earns 1, then its
    # always-defect prior 2 per round (9 over 5 rounds); D first 10. Replayed against
    # tit-for-tat the same prior gets the hand-computed values of the test above.
    believer = tabular_model(strategies.always_defect(), strategies.always_cooperate())
    np.testing.assert_allclose(_q(believer, START, 5, 10, 3), (9.0, 10.0), atol=1e-6)
    real = ppi.against_tabular(believer, strategies.tit_for_tat(), IPD)
    np.testing.assert_allclose(
        _q(real, START, 5, 10, 3), (3.0, 2.0), atol=1e-4
    )  # P(C) clipped at 1e-6
    # With a random prior and co-player, the exact Markov-chain Q (from CD, seen first-person).
    theta_own = np.array([0.6, 0.7, 0.2, 0.5, 0.4])
    theta_co = np.array([0.8, 0.9, 0.3, 0.6, 0.1])
    real = ppi.against_tabular(tabular_model(theta_own, [0.5] * 5), theta_co, IPD)
    q = _q(real, 2, depth=4, rounds_left=10, rollouts=20_000, gamma=0.9)
    np.testing.assert_allclose(
        q, [exact_q(theta_own, theta_co, 2, a, 4, 10, 0.9) for a in (C, D)], atol=0.1
    )


def test_improved_logits_are_the_prior_tilted_by_beta_q():
    prior = jnp.log(jnp.array([[0.8, 0.2]]))
    q = jnp.array([[1.0, 2.0]])
    np.testing.assert_allclose(jnp.exp(ppi.improved_logits(prior, q, 0.0)), [[0.8, 0.2]], atol=1e-6)
    # 0.8 e^1 : 0.2 e^2 -> 0.8e / (0.8e + 0.2e^2) = 0.8 / (0.8 + 0.2e).
    p_c = 0.8 / (0.8 + 0.2 * np.e)
    np.testing.assert_allclose(
        jnp.exp(ppi.improved_logits(prior, q, 1.0)), [[p_c, 1 - p_c]], atol=1e-6
    )


def test_improved_policy_turns_a_cooperative_prior_into_defection_against_always_cooperate():
    # Against ALLC the first round pays 2 for D and 1 for C; later rounds do not depend on it,
    # so Q(D) - Q(C) = 1 and pi(D) = 0.1 e^10 / (0.1 e^10 + 0.9) > 0.999 (up to planning noise).
    prior = jnp.full(5, 0.9)
    model = tabular_model(prior, strategies.always_cooperate())
    policy = ppi.improved_policy(model, jax.random.key(0), 6, num_rollouts=64, depth=3, beta=10.0)
    game = environment.make_game("ipd", 6)
    episodes = play(policy, strategies.always_cooperate(), jax.random.key(1), 64, game)
    assert float((episodes.actions[..., 0] == D).mean()) > 0.99
    # The prior alone cooperates 90% of the time.
    plain = ppi.improved_policy(model, jax.random.key(0), 6, num_rollouts=64, depth=3, beta=0.0)
    episodes = play(plain, strategies.always_cooperate(), jax.random.key(1), 512, game)
    assert float((episodes.actions[..., 0] == C).mean()) == pytest.approx(0.9, abs=0.02)


def test_improved_policy_of_a_network_model_is_reproducible_from_its_key():
    model = tiny_model()
    m = ppi.network_model(model, init(model))
    game = environment.make_game("ipd", 6)

    def run(plan_key):
        policy = ppi.improved_policy(
            m, jax.random.key(plan_key), 6, num_rollouts=2, depth=3, beta=1.0
        )
        return play(policy, strategies.tit_for_tat(), jax.random.key(5), 32, game)

    a, b, c = run(0), run(0), run(1)
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.rewards, b.rewards)
    assert a.actions.shape == (32, 6, 2)
    # Planning noise changes the improved policy's probabilities, so some actions differ.
    assert not np.array_equal(a.actions, c.actions)


# --- The phase loop at a tiny scale. -----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_ppi():
    from jaxcoop.presets import preset

    config = preset("tiny").replace(
        algo="ppi",
        num_learners=2,
        p_tabular=0.5,
        pool="always_cooperate",
        num_episodes=32,
        num_iterations=3,
        chunk_iterations=1,
        lr=3e-3,
        ppi_pretrain_episodes=256,
        ppi_epochs=20,  # 160 steps on D0: enough to learn the payoffs after the next observation
        ppi_batch_size=32,
        ppi_rollouts=4,
        ppi_depth=4,
        ppi_beta=3.0,
    )
    loop = train.make_trainer(config)  # algo="ppi": ppi.make_trainer
    init, phase = jax.jit(loop.init), jax.jit(loop.iteration)
    states, metrics = [init(jax.random.key(0))], []
    for _ in range(config.num_iterations):
        state, m = phase(states[-1])
        states.append(state)
        metrics.append(jax.device_get(m))
    return config, phase, states, metrics


def test_ppi_learns_to_defect_against_always_cooperate(tiny_ppi):
    _, _, _, metrics = tiny_ppi
    first, last = metrics[0], metrics[-1]
    # D0's random tabular agents cooperate half the time; the improved policy plans D, which
    # pays 2 instead of 1 against always-cooperate, and its prior follows over the phases.
    assert np.all(last.play.coop_vs_tabular < 0.15), [m.play.coop_vs_tabular for m in metrics]
    np.testing.assert_allclose(
        last.play.reward_vs_tabular, 2 - last.play.coop_vs_tabular, atol=1e-6
    )
    # Always-cooperate earns 1 against C and -1 against D.
    np.testing.assert_allclose(
        last.play.tabular_reward, 2 * last.play.coop_vs_tabular - 1, atol=1e-6
    )
    # The model's loss and its parts after the first phase's fit (160 steps on D0): the reward
    # is a function of the next observation, so its NLL is near 0 (about 0.5 untrained); the
    # next observation is one of the two states consistent with the own action, so its NLL
    # (the rest of the loss) is near log 2, far below the untrained log 5 but above 0 (D0's
    # random co-players cannot be predicted); the own action is D0's coin flip (NLL ~ log 2).
    fit = first.learning  # PPI reports its model's fit, not actor-critic losses
    assert set(fit._fields) == {"loss", "action_nll", "reward_nll", "grad_norm"}
    obs_nll = fit.loss - fit.action_nll - fit.reward_nll
    assert np.all(np.isfinite(fit.loss))
    assert np.all(fit.reward_nll < 0.01), fit.reward_nll
    assert np.all((obs_nll > 0.3) & (obs_nll < 1.0)), obs_nll
    assert np.all((fit.action_nll > 0.3) & (fit.action_nll < np.log(2) + 0.05))


def test_ppi_dataset_grows_by_each_phases_episodes_seen_from_both_seats(tiny_ppi):
    config, _, states, _ = tiny_ppi
    pretrain, per_phase = config.ppi_pretrain_episodes, config.num_episodes
    counts = [int(ppi.dataset_count(config, s.iteration)) for s in states]
    assert counts == [pretrain + k * per_phase for k in range(4)]
    data = [s.learner_state for s in states]  # PPI keeps its dataset there
    assert data[0].actions.shape == (2, ppi.dataset_size(config), config.horizon, 2)
    assert ppi.dataset_size(config) == pretrain + 3 * per_phase
    new = slice(pretrain, pretrain + per_phase)
    actions = np.asarray(data[1].actions[:, new]).astype(np.int32)  # [N, E, T, 2]
    assert data[1].actions.dtype == np.int8
    tabular, half = config.num_tabular_episodes, config.num_learner_episodes // 2
    # Tabular episodes against always-cooperate: the co-player always plays C.
    assert np.all(actions[:, :tabular, :, 1] == C)
    # Learner 0's row episodes (vs learner 1) are learner 1's column episodes, mirrored.
    row0 = actions[0, tabular : tabular + half]
    col1 = actions[1, tabular + half :]
    np.testing.assert_array_equal(col1, row0[..., ::-1])
    assert np.all(np.asarray(data[1].actions[:, pretrain + per_phase :]) == 0)  # not yet used


def test_ppi_phase_is_reproducible_from_the_state(tiny_ppi):
    _, phase, states, metrics = tiny_ppi
    again, m = phase(states[1])
    np.testing.assert_array_equal(again.learner_state.actions, states[2].learner_state.actions)
    np.testing.assert_array_equal(jax.device_get(m).learning.loss, metrics[1].learning.loss)


@pytest.fixture(scope="module")
def ppi_run(tmp_path_factory):
    """A finished tiny PPI run (2 phases, both checkpoints kept) and its config."""
    from jaxcoop import runner
    from jaxcoop.config import CheckpointSchedule
    from jaxcoop.presets import preset

    config = preset("tiny", algo="ppi")
    assert (config.algo, config.num_iterations, config.chunk_iterations) == ("ppi", 2, 1)
    run_dir = tmp_path_factory.mktemp("ppi") / "run"
    every_phase = CheckpointSchedule(every=0, keep=5)
    runner.run(
        config, run_dir, log=lambda line: None, evaluation_episodes=8, checkpointing=every_phase
    )
    return config, run_dir


@pytest.mark.slow  # about 70-130 CPU-s
def test_the_q_check_script_replays_the_run_against_the_real_coplayers(ppi_run):
    from experiments.q_check import q_table

    table = q_table(ppi_run[1], rollouts=512)
    assert list(table) == ["tit_for_tat", "always_cooperate", "always_defect"]
    for name in ("always_cooperate", "always_defect"):
        rounds, rows = table[name]
        assert rounds and rows.shape == (len(rounds), 4) and np.all(np.isfinite(rows))
        # An unconditional co-player's future does not depend on this round's action: defecting
        # earns exactly 1 more in expectation (2 - 1 against C, 0 - (-1) against D).
        np.testing.assert_allclose(rows[:, 3] - rows[:, 2], 1.0, atol=0.2)


def test_the_q_learner_script_branches_the_same_history(ppi_run):
    from experiments.q_learner import measure

    rows = measure(ppi_run[1], episodes=64, depth=1)["rows"]
    assert list(rows) == [0, 3]  # the tiny run's 8 rounds
    for row in rows.values():
        # Counting round t alone: both branches share the history and the keys, so the other
        # learner makes the same move against C and D, and D earns exactly 1 more (2 - 1 against
        # C, 0 - (-1) against D), whatever follows.
        for after in ("prior", "improved"):
            (value_c, coop_c), (value_d, coop_d) = row[f"{after}C"], row[f"{after}D"]
            assert value_d - value_c == pytest.approx(1.0, abs=1e-5)
            assert coop_c == coop_d
        assert np.all(np.isfinite(row["qhat"])) and np.all(np.isfinite(row["model_b_coops"]))
    # Tit-for-tat opens with C: in round 1 it is the C branch.
    assert rows[0]["tft"][0] == pytest.approx(rows[0]["priorC"][0], abs=1e-6)


def test_a_ppi_run_resumed_from_its_first_phase_writes_the_same_metrics(ppi_run, tmp_path):
    from jaxcoop import checkpoints, records, runner

    run_dir = tmp_path / "run"
    shutil.copytree(ppi_run[1], run_dir)
    whole = (run_dir / records.METRICS_FILE).read_bytes()
    assert checkpoints.steps(run_dir) == [1, 2]
    shutil.rmtree(checkpoints.directory(run_dir) / "2")  # as if killed during phase 2
    runner.resume(run_dir, log=lambda line: None, evaluation_episodes=8)
    assert (run_dir / records.METRICS_FILE).read_bytes() == whole
    # PPI's own columns: how it played, then its model's fit; no actor-critic columns.
    header = whole.decode().splitlines()[0].split(",")
    play = list(PlayMetrics._fields)
    assert header == ["iteration", "seed", "learner", *play, *ppi.LearningMetrics._fields]
    assert "entropy" not in header and "policy_loss" not in header


@pytest.mark.slow  # about 70-130 CPU-s
def test_a_ppi_run_resumed_with_more_phases_grows_its_dataset_and_repeats_its_phases(
    ppi_run, tmp_path
):
    """Phase 2 again, from checkpoint 1 into a dataset sized for 3 phases, then phase 3: the
    same numbers as the 2-phase run (a phase reads only its filled episodes), and a warm start
    from the longer run reads the 3-phase checkpoint."""
    from jaxcoop import checkpoints, records, runner, trained

    config, source = ppi_run
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    shutil.rmtree(checkpoints.directory(run_dir) / "2")
    runner.resume(run_dir, {"num_iterations": 3}, log=lambda line: None, evaluation_episodes=8)
    before = (source / records.METRICS_FILE).read_text().splitlines()
    after = (run_dir / records.METRICS_FILE).read_text().splitlines()
    assert after[: len(before)] == before and len(after) > len(before)
    longer = config.replace(num_iterations=3)
    ckpt = trained.restore_state(run_dir, 3, config)  # config.json still says 2 phases
    filled = int(ppi.dataset_count(longer, 3))
    assert ckpt.state.learner_state.actions.shape[2] == ppi.dataset_size(longer) == filled
    phase3 = ckpt.state.learner_state.actions[:, :, filled - config.num_episodes :]
    assert np.any(phase3 != 0)  # the third phase's episodes were written into the new room
    newest = trained.newest_episodes(run_dir, trained.load(run_dir), config.num_episodes)
    np.testing.assert_array_equal(newest, phase3)


def test_resize_dataset_pads_or_cuts_the_episode_axis_only():
    actions = jnp.arange(2 * 4 * 3 * 2, dtype=jnp.int8).reshape(2, 4, 3, 2)
    ids = jnp.arange(2 * 4 * 10, dtype=jnp.float32).reshape(2, 4, 10)
    grown = ppi.resize_dataset(ppi.Dataset(actions, ids), 6)
    assert grown.actions.shape == (2, 6, 3, 2) and grown.opponent_id.shape == (2, 6, 10)
    np.testing.assert_array_equal(grown.actions[:, :4], actions)
    np.testing.assert_array_equal(grown.actions[:, 4:], 0)
    np.testing.assert_array_equal(grown.opponent_id[:, :4], ids)
    cut = ppi.resize_dataset(ppi.Dataset(actions, None), 3)
    np.testing.assert_array_equal(cut.actions, actions[:, :3])
    assert cut.opponent_id is None


def test_with_initial_data_replaces_d0_and_nothing_else():
    actions = jnp.arange(2 * 5 * 3 * 2, dtype=jnp.int8).reshape(2, 5, 3, 2) % 2
    ids = jnp.ones((2, 5, strategies.OPPONENT_ID_SIZE))
    warm = jnp.ones((2, 2, 3, 2), jnp.int8)
    out = ppi.with_initial_data(ppi.Dataset(actions, ids), warm)
    np.testing.assert_array_equal(out.actions[:, :2], 1)
    np.testing.assert_array_equal(out.actions[:, 2:], actions[:, 2:])
    np.testing.assert_array_equal(out.opponent_id[:, :2], 0.0)  # the source's episodes: no ID
    np.testing.assert_array_equal(out.opponent_id[:, 2:], 1.0)
    assert out.actions.dtype == jnp.int8
    assert ppi.with_initial_data(ppi.Dataset(actions), warm).opponent_id is None


@pytest.mark.slow  # about 85 CPU-s
def test_ppi_warm_starts_take_the_sources_newest_episodes_and_its_planner(ppi_run, tmp_path):
    from jaxcoop import checkpoints, records, runner, trained

    config, source_dir = ppi_run
    source = trained.Source(source_dir)
    pretrain = 8
    new = config.replace(p_tabular=0.0, ppi_pretrain_episodes=pretrain, num_iterations=1)
    warm = trained.resolve_warm_start(new, [source], trained.Source(source_dir, 1))
    # The source's datasets after its 2 phases: D0 then 2 x num_episodes episodes per learner.
    shapes = trained.state_shapes(config, train.make_trainer(config))
    dataset = checkpoints.restore(source_dir, 2, shapes).state.learner_state.actions
    filled = config.ppi_pretrain_episodes + 2 * config.num_episodes
    np.testing.assert_array_equal(warm.data, dataset[:, :, filled - pretrain : filled])
    assert warm.params is None and warm.data.dtype == np.int8
    planner = warm.coplayer
    assert isinstance(planner, ppi.Planner)
    assert (planner.num_rollouts, planner.depth, planner.horizon) == (
        config.ppi_rollouts,
        config.ppi_depth,
        config.horizon,
    )
    assert warm.record["frozen_coplayer"]["algo"] == "ppi"

    # One phase against the frozen PPI learner, starting from the source's newest episodes.
    run_dir = tmp_path / "warm"
    runner.run(
        new,
        run_dir,
        log=lambda line: None,
        evaluation_episodes=8,
        init_from=[source],
        frozen_coplayer=trained.Source(source_dir, 1),
    )
    state = checkpoints.restore(
        run_dir, 1, trained.state_shapes(new, train.make_trainer(new, planner))
    ).state
    np.testing.assert_array_equal(state.learner_state.actions[:, :, :pretrain], warm.data)
    metrics = records.read_metrics(run_dir)
    assert np.all(np.isfinite(metrics["frozen_coop"])) and np.all(
        np.isnan(metrics["coop_vs_learner"])
    )
    # All its episodes were against the frozen learner: the metrics are those episodes' moves.
    played = np.asarray(state.learner_state.actions[:, :, pretrain : pretrain + new.num_episodes])
    np.testing.assert_allclose(
        metrics["coop_vs_frozen"][:, 0], (played[..., 0] == C).mean(axis=(2, 3)), atol=1e-4
    )
    np.testing.assert_allclose(
        metrics["frozen_coop"][:, 0], (played[..., 1] == C).mean(axis=(2, 3)), atol=1e-4
    )

    with pytest.raises(records.RunFolderError, match="PPI learners start from PPI runs' data"):
        trained.resolve_warm_start(new.replace(algo="a2c"), [source])
    with pytest.raises(records.RunFolderError, match="frozen co-player of PPI learners only"):
        trained.resolve_warm_start(new.replace(algo="a2c"), (), source)
    with pytest.raises(records.RunFolderError, match="lower --ppi-pretrain-episodes"):
        trained.resolve_warm_start(new.replace(ppi_pretrain_episodes=10**6), [source])


@pytest.mark.slow  # about 70-130 CPU-s
def test_ppi_with_opponent_id_keeps_each_episodes_identity():
    from jaxcoop.presets import preset

    config = preset("tiny", algo="ppi").replace(opponent_id=True, pool="always_cooperate")
    loop = train.make_trainer(config)
    state = jax.jit(loop.init)(jax.random.key(0))
    pretrain, tabular = config.ppi_pretrain_episodes, config.num_tabular_episodes
    ids = state.learner_state.opponent_id  # [N, M, 10]
    assert ids.shape == (2, ppi.dataset_size(config), strategies.OPPONENT_ID_SIZE)
    # D0's co-players are U(0, 1) draws: log-probabilities, all below 0.
    assert np.all(np.asarray(ids[:, :pretrain]) < 0)
    state, _ = jax.jit(loop.iteration)(state)
    new = np.asarray(state.learner_state.opponent_id[:, pretrain : pretrain + config.num_episodes])
    allc = np.asarray(strategies.opponent_id(strategies.always_cooperate()))
    np.testing.assert_allclose(new[:, :tabular], np.broadcast_to(allc, new[:, :tabular].shape))
    np.testing.assert_array_equal(new[:, tabular:], 0.0)  # against the other learner
    # The model reads the identity: its loss on the same episodes changes with it.
    params = jax.tree.map(lambda x: x[0], state.params)
    actions = jnp.swapaxes(state.learner_state.actions[0, pretrain : pretrain + tabular], 0, 1)
    actions = actions.astype(jnp.int32)
    t = ppi.targets(actions, IPD[actions[..., 0], actions[..., 1], 0])
    model = ppi.make_model(config)
    with_id = ppi.model_loss(model, params, t, opponent_id_BxZ=jnp.asarray(new[0, :tabular]))
    without = ppi.model_loss(model, params, t)
    assert float(with_id.total) != float(without.total)


def test_the_prior_window_starts_at_the_last_phases_episodes():
    from jaxcoop.presets import preset

    config = preset("tiny", algo="ppi").replace(ppi_pretrain_episodes=64, num_episodes=16)
    start = [int(ppi.prior_start(config, ppi.dataset_count(config, k))) for k in range(4)]
    assert start == [0, 0, 0, 0]  # window 0: all data, the paper's
    one = config.replace(ppi_prior_window=1)
    start = [int(ppi.prior_start(one, ppi.dataset_count(one, k))) for k in range(4)]
    assert start == [0, 64, 80, 96]  # D0 before the first phase, then the newest phase
    two = config.replace(ppi_prior_window=2)
    start = [int(ppi.prior_start(two, ppi.dataset_count(two, k))) for k in range(4)]
    assert start == [0, 64, 64, 80]  # never D0 once a phase has been collected


def _round0_prior(config, params):
    """Each learner's prior probability of cooperating in round 1 ``[N]``."""
    model = ppi.make_model(config)
    x = RoundInput(environment.one_hot_states(jnp.array([START])), jnp.array([-1]), jnp.zeros(1))

    def one(p):
        m = ppi.network_model(model, p)
        _, y = m.advance(m.initial_carry(1), x)
        return jax.nn.softmax(m.prior(y))[0, C]

    return np.asarray(jax.vmap(one)(params))


def test_with_a_prior_window_the_prior_follows_the_newest_phase(tiny_ppi):
    config, _, states, _ = tiny_ppi
    loop = train.make_trainer(config.replace(ppi_prior_window=1))
    state, phase = loop.init(jax.random.key(0)), jax.jit(loop.iteration)
    for _ in range(2):
        state, _ = phase(state)
    pretrain, per_phase = config.ppi_pretrain_episodes, config.num_episodes
    opening = np.asarray(state.learner_state.actions[:, :, 0, 0] == C)  # [N, M]: round 1, own
    d0 = opening[:, :pretrain].mean(axis=1)
    phase1 = opening[:, pretrain : pretrain + per_phase].mean(axis=1)
    # Phase 2's model (fitted on D0 and phase 1) learnt its prior from phase 1's own moves only:
    # it opens as the phase-1 planner did (measured 0.03 and 0.19; prior 0.10 and 0.15), not
    # as D0's random tabular agents (0.49, 0.51); with all data (window 0, the paper's) the
    # opening stays near D0's (0.42, 0.47).
    windowed = _round0_prior(config, state.params)
    everything = _round0_prior(config, states[2].params)
    assert np.all(np.abs(windowed - phase1) < 0.12), (windowed, phase1)
    assert np.all(np.abs(everything - d0) < 0.12), (everything, d0)
    assert np.all(everything - windowed > 0.2), (everything, windowed)


def test_episodes_collected_in_chunks_are_independent_pieces_of_the_same_kinds():
    from jaxcoop.presets import preset

    config = preset("tiny", algo="ppi").replace(
        opponent_id=True, pool="always_cooperate", ppi_collect_chunks=2
    )
    tabular, half = config.num_tabular_episodes, config.num_pair_slots
    assert (tabular, half) == (8, 4)  # pieces of 4 tabular episodes and 2 learner pairs
    loop = train.make_trainer(config)
    state = jax.jit(loop.init)(jax.random.key(0))
    phase = jax.jit(loop.iteration)
    after, _ = phase(state)
    pretrain = config.ppi_pretrain_episodes
    new = slice(pretrain, pretrain + config.num_episodes)
    actions = np.asarray(after.learner_state.actions[:, new]).astype(np.int32)  # [N, E, T, 2]
    ids = np.asarray(after.learner_state.opponent_id[:, new])
    assert np.all(actions[:, :tabular, :, 1] == C)  # the tabular co-player: always-cooperate
    allc = np.asarray(strategies.opponent_id(strategies.always_cooperate()))
    np.testing.assert_allclose(ids[:, :tabular], np.broadcast_to(allc, ids[:, :tabular].shape))
    np.testing.assert_array_equal(ids[:, tabular:], 0.0)
    # Learner 0's row episodes (vs learner 1) are learner 1's column episodes, mirrored.
    row0, col1 = actions[0, tabular : tabular + half], actions[1, tabular + half :]
    np.testing.assert_array_equal(col1, row0[..., ::-1])
    # The two pieces play with their own keys, not the same episodes twice.
    assert not np.array_equal(actions[:, :4], actions[:, 4:tabular])
    np.testing.assert_array_equal(
        phase(state)[0].learner_state.actions, after.learner_state.actions
    )


def test_episodes_against_a_frozen_planner_collected_in_chunks():
    from jaxcoop.presets import preset

    config = preset("tiny", algo="ppi").replace(p_tabular=0.0, ppi_collect_chunks=4)
    loop = ppi.make_trainer(config, coplayer=ppi.make_planner(config))
    state, metrics = jax.jit(loop.iteration)(jax.jit(loop.init)(jax.random.key(0)))
    frozen = np.asarray(metrics.play.frozen_coop)
    assert frozen.shape == (2,) and np.all((frozen >= 0) & (frozen <= 1))
    new = np.asarray(state.learner_state.actions[:, config.ppi_pretrain_episodes :][:, :16])
    assert not np.array_equal(new[:, :4], new[:, 4:8])


def test_consistent_pair_keeps_the_two_states_the_own_action_allows():
    """After C the next state is CC or CD (1, 2); after D it is DC or DD (3, 4)."""
    logits = jnp.array([[0.0, 1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0, 9.0]])
    states, pair = ppi.consistent_pair(logits, jnp.array([0, 1]))
    np.testing.assert_array_equal(states, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(pair, [[1.0, 2.0], [8.0, 9.0]])
