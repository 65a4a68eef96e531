"""The fused training program: metric shapes, determinism, seeds under vmap, chunking without
recompilation, and the layout of the mixed-pool rollout. Every program is compiled once."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcoop
from jaxcoop import networks, rollout

CONFIG = jaxcoop.preset("tiny")  # 2 learners, 16 episodes (8 tabular), 6 iterations in chunks of 3
SEEDS = (0, 1)
NUM_CHUNKS = CONFIG.num_iterations // CONFIG.chunk_iterations


def _numpy(tree):
    return jax.tree.map(np.asarray, tree)


# --- Metric shapes and NaN semantics. -----------------------------------------------------------


@pytest.mark.parametrize("num_learners", [1, 2, 3])
@pytest.mark.parametrize("p_tabular", [0.0, 0.5, 1.0])
def test_every_metric_is_iterations_by_learners(num_learners, p_tabular):
    """Shapes only (traced, not compiled), so every combination is cheap."""
    config = CONFIG.replace(num_learners=num_learners, p_tabular=p_tabular)
    state, metrics = jax.eval_shape(jaxcoop.make_train(config), jax.random.key(0))
    for name, value in metrics.as_dict().items():
        assert value.shape == (config.num_iterations, num_learners), name
    assert jax.tree.leaves(state.params)[0].shape[0] == num_learners


@functools.cache
def _run(num_learners: int, p_tabular: float):
    config = CONFIG.replace(num_learners=num_learners, p_tabular=p_tabular)
    return _numpy(jax.jit(jaxcoop.make_train(config))(jax.random.key(0))[1])


VS_LEARNER = ("reward_vs_learner", "coop_vs_learner")
VS_TABULAR = ("reward_vs_tabular", "coop_vs_tabular", "tabular_reward")
VS_FROZEN = ("reward_vs_frozen", "coop_vs_frozen", "frozen_reward", "frozen_coop")
PPO_ONLY = ("approx_kl", "clip_fraction")  # NaN with A2C, the tiny preset's algorithm


@pytest.mark.parametrize(
    "num_learners, p_tabular, nan_fields",
    [(3, 0.0, VS_TABULAR + VS_FROZEN + PPO_ONLY), (1, 1.0, VS_LEARNER + VS_FROZEN + PPO_ONLY)],
    ids=["no-tabular-episodes", "no-learner-episodes"],
)
def test_metrics_of_an_absent_coplayer_type_are_nan_and_the_rest_finite(
    num_learners, p_tabular, nan_fields
):
    metrics = _run(num_learners, p_tabular)
    for name, value in metrics.as_dict().items():
        assert value.shape == (CONFIG.num_iterations, num_learners), name
        if name in nan_fields:
            assert np.isnan(value).all(), name
        else:
            assert np.isfinite(value).all(), name


# --- One config, two ways to run it: the host loop over chunks and vmap over seeds. ------------


@pytest.fixture(scope="module")
def host_loop():
    """``init`` then compiled chunks, as a host loop runs them; counts traces of ``chunk``."""
    trainer = jaxcoop.make_trainer(CONFIG)
    traces = []

    def counted_chunk(state):
        traces.append(state)  # runs only when jit traces (i.e. compiles) the function
        return trainer.chunk(state)

    init, chunk = jax.jit(trainer.init), jax.jit(counted_chunk)

    def run(key):
        state, per_chunk = init(key), []
        for _ in range(NUM_CHUNKS):
            state, metrics = chunk(state)
            per_chunk.append(metrics)
        metrics = jax.tree.map(lambda *m: np.concatenate(m), *per_chunk)
        return state, metrics

    return run, chunk, traces


@pytest.fixture(scope="module")
def vmapped_seeds():
    keys = jnp.stack([jax.random.key(s) for s in SEEDS])
    states, metrics = jax.jit(jax.vmap(jaxcoop.make_train(CONFIG)))(keys)
    return _numpy(states.params), _numpy(metrics)


def test_second_chunk_does_not_recompile(host_loop):
    run, chunk, traces = host_loop
    run(jax.random.key(0))  # chunk(init(key)), then chunk of that chunk's output
    assert NUM_CHUNKS == 2
    assert len(traces) == 1
    assert chunk._cache_size() == 1


def test_chunked_run_plays_every_iteration_with_finite_metrics(host_loop):
    run, _, _ = host_loop
    state, metrics = run(jax.random.key(0))
    assert int(state.iteration) == CONFIG.num_iterations
    for name, value in metrics.as_dict().items():
        assert value.shape == (CONFIG.num_iterations, CONFIG.num_learners), name
        # No frozen co-player; A2C has no approximate KL or clip fraction.
        assert np.isfinite(value).all() != (name in VS_FROZEN + PPO_ONLY), name
    assert ((metrics.play.coop_vs_learner >= 0) & (metrics.play.coop_vs_learner <= 1)).all()
    # Rewards per round of the IPD lie in [S, T] = [-1, 2].
    assert ((metrics.play.reward_vs_tabular >= -1) & (metrics.play.reward_vs_tabular <= 2)).all()


def test_same_key_gives_identical_metrics_and_another_key_does_not(host_loop):
    run, _, _ = host_loop
    _, first = run(jax.random.key(0))
    _, again = run(jax.random.key(0))
    _, other = run(jax.random.key(5))
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first.play.reward_vs_learner, other.play.reward_vs_learner)
    assert not np.allclose(first.learning.loss, other.learning.loss)


def test_vmap_over_seeds_matches_running_each_seed_alone(host_loop, vmapped_seeds):
    run, _, _ = host_loop
    params_S, metrics_SxIxN = vmapped_seeds
    shape = (len(SEEDS), CONFIG.num_iterations, CONFIG.num_learners)
    assert metrics_SxIxN.learning.loss.shape == shape
    for i, seed in enumerate(SEEDS):
        state, metrics = run(jax.random.key(seed))
        for name, value in metrics.as_dict().items():
            np.testing.assert_allclose(
                metrics_SxIxN.as_dict()[name][i], value, rtol=1e-4, atol=1e-5, err_msg=name
            )
        for a, b in zip(jax.tree.leaves(params_S), jax.tree.leaves(state.params), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-4, atol=1e-5)
    assert not np.allclose(metrics_SxIxN.learning.loss[0], metrics_SxIxN.learning.loss[1])


def test_make_train_runs_num_seeds_seeds_split_from_the_key_as_the_runner_does():
    config = CONFIG.replace(num_seeds=2, num_iterations=2, chunk_iterations=1)
    key = jax.random.key(config.seed)
    _, metrics = jax.jit(jaxcoop.make_train(config))(key)
    assert metrics.learning.loss.shape == (2, 2, config.num_learners)
    one = jax.vmap(jaxcoop.make_train(config.replace(num_seeds=1)))
    _, alone = jax.jit(one)(jax.random.split(key, 2))  # runner.init_seeds's keys
    for name, value in alone.as_dict().items():
        np.testing.assert_array_equal(metrics.as_dict()[name], value, err_msg=name)


# --- Rollout layout (rollout.py header): seats [tabular K | row S | column S]. -------------------


def test_pairing_draws_rings_without_self_play():
    succ, pred = (np.asarray(x) for x in rollout.pairing(4, 50, jax.random.key(0)))
    assert succ.shape == pred.shape == (4, 50)
    learners = np.arange(4)[:, None]
    assert (succ != learners).all()
    np.testing.assert_array_equal(
        np.take_along_axis(pred, succ, axis=0), np.broadcast_to(learners, succ.shape)
    )
    # One ring through all 4: following succ from learner 0 returns after exactly 4 steps.
    position, slots = np.zeros(50, int), np.arange(50)
    for steps in range(1, 5):
        position = succ[position, slots]
        assert ((position == 0) == (steps == 4)).all()
    assert len({tuple(column) for column in succ.T}) > 1  # pairings are re-drawn per slot


def test_single_learner_ring_is_self_play():
    for key in (jax.random.key(0), None):
        succ, pred = rollout.pairing(1, 3, key)
        np.testing.assert_array_equal(succ, 0)
        np.testing.assert_array_equal(pred, 0)


def test_pairing_without_a_key_is_the_fixed_ring():
    succ, pred = (np.asarray(x) for x in rollout.pairing(5, 2))
    np.testing.assert_array_equal(succ, [[1, 1], [2, 2], [3, 3], [4, 4], [0, 0]])
    np.testing.assert_array_equal(pred, [[4, 4], [0, 0], [1, 1], [2, 2], [3, 3]])


@pytest.fixture(scope="module")
def layout(tiny_rollout):
    r = tiny_rollout
    k, s = r.config.num_tabular_episodes, r.config.num_pair_slots
    t = _numpy(r.batch.transition)
    return r, k, s, t, np.asarray(r.succ), np.asarray(r.pred)


def test_batch_is_learners_by_rounds_by_seats(layout):
    r, k, s, t, _, _ = layout
    shape = (r.config.num_learners, r.config.horizon, k + 2 * s)
    for name, value in t._asdict().items():
        assert value.shape[:3] == shape, name
    assert t.obs.shape == (*shape, 5)
    # Seats: k tabular, then s row and s column learner seats (no frozen co-player); the
    # Batch no longer carries a per-seat kind (nothing read it), only the identity vectors.
    assert r.batch.opponent_id.shape == (r.config.num_learners, k + 2 * s, 10)
    assert rollout.Batch._fields == ("transition", "opponent_id")


def test_opponent_id_is_the_tabular_coplayers_and_zero_against_learners(layout):
    r, k, _, _, _, _ = layout
    np.testing.assert_allclose(
        r.batch.opponent_id[:, :k], jaxcoop.strategies.opponent_id(r.coplayers)
    )
    np.testing.assert_array_equal(r.batch.opponent_id[:, k:], 0.0)


def test_rewards_are_the_payoffs_of_own_and_coplayer_actions(layout):
    """Row seats are player 0 of the game, column seats player 1."""
    r, k, s, t, _, _ = layout
    payoffs = np.asarray(r.game.payoffs)
    own, co = t.action, t.coplayer_action
    row = np.s_[..., : k + s]  # tabular and row seats: the learner is player 0
    col = np.s_[..., k + s :]
    np.testing.assert_array_equal(t.reward[row], payoffs[own[row], co[row], 0])
    np.testing.assert_array_equal(t.coplayer_reward[row], payoffs[own[row], co[row], 1])
    np.testing.assert_array_equal(t.reward[col], payoffs[co[col], own[col], 1])
    np.testing.assert_array_equal(t.coplayer_reward[col], payoffs[co[col], own[col], 0])


def test_learner_pairs_see_each_others_actions_and_rewards(layout):
    """Learner i's row seat of slot j meets learner succ[i, j] in that learner's column seat."""
    r, k, s, t, succ, pred = layout
    for i in range(r.config.num_learners):
        for j in range(s):
            partner, row, col = succ[i, j], k + j, k + s + j
            assert pred[partner, j] == i
            np.testing.assert_array_equal(t.coplayer_action[i, :, row], t.action[partner, :, col])
            np.testing.assert_array_equal(t.action[i, :, row], t.coplayer_action[partner, :, col])
            np.testing.assert_array_equal(t.coplayer_reward[i, :, row], t.reward[partner, :, col])
    assert (succ != pred).any()  # 3 learners: row and column partners differ


def test_observations_are_first_person_from_start(layout):
    _, _, _, t, _, _ = layout
    state = t.obs.argmax(-1)
    np.testing.assert_array_equal(t.obs.sum(-1), 1.0)
    np.testing.assert_array_equal(state[:, 0], 0)  # START
    # After round t the learner sees (own, co-player) = 1 + 2 * own + co.
    own, co = t.action[:, :-1], t.coplayer_action[:, :-1]
    np.testing.assert_array_equal(state[:, 1:], 1 + 2 * own + co)


def test_tabular_coplayer_reacts_to_its_own_first_person_view(layout):
    """The tabular co-players are tit-for-tat: C first, then copy the learner's last move.
    (Had they read the learner's view, they would copy their own move instead.)"""
    _, k, _, t, _, _ = layout
    tabular_co, learner = t.coplayer_action[..., :k], t.action[..., :k]
    np.testing.assert_array_equal(tabular_co[:, 0], 0)
    np.testing.assert_array_equal(tabular_co[:, 1:], learner[:, :-1])
    assert (learner == 1).any() and (learner == 0).any()


def test_log_probs_and_values_are_those_of_the_acting_network(layout):
    """Replaying the rollout through the whole-sequence call reproduces what was recorded."""
    r, _, _, t, _, _ = layout
    apply = jax.vmap(lambda p, tr, z: r.agent.apply(p, rollout.round_inputs(tr), z))
    logits, values = apply(r.params, r.batch.transition, r.batch.opponent_id)
    log_pi = np.take_along_axis(
        np.asarray(jax.nn.log_softmax(logits)), t.action[..., None], axis=-1
    )[..., 0]
    np.testing.assert_allclose(log_pi, t.log_prob, atol=1e-5)
    np.testing.assert_allclose(values, t.value, atol=1e-5)


@pytest.mark.parametrize("algo", ["a2c", "ppo"])
def test_the_transformer_trains_with_both_algorithms(algo):
    """The whole fused program with the transformer backbone: finite metrics, parameters move,
    the key/value cache in the rollout and the parallel forward in the update agree (the
    log-probabilities stored at rollout time are those the update recomputes: PPO's first
    minibatch step starts at ratio 1, so its approximate KL is ~0 only if they agree)."""
    config = jaxcoop.preset("tiny", "transformer").replace(
        algo=algo, num_iterations=2, chunk_iterations=2, ppo_epochs=1, ppo_minibatches=1
    )
    trainer = jaxcoop.make_trainer(config)
    state = jax.jit(trainer.init)(jax.random.key(0))
    final, metrics = jax.jit(trainer.chunk)(state)
    metrics = _numpy(metrics)
    for name in ("loss", "coop_vs_learner", "coop_vs_tabular", "grad_norm"):
        assert np.isfinite(metrics.as_dict()[name]).all(), name
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), state.params, final.params)
    assert max(jax.tree.leaves(moved)) > 0
    if algo == "ppo":  # one epoch, one minibatch: the update sees exactly the rollout's policy
        np.testing.assert_allclose(metrics.learning.approx_kl, 0.0, atol=1e-6)
        np.testing.assert_array_equal(metrics.learning.clip_fraction, 0.0)


@pytest.mark.parametrize("algo", ["a2c", "ppo"])
@pytest.mark.parametrize("name", sorted(jaxcoop.PRESETS))
def test_every_preset_traces_with_the_transformer(name, algo):
    """Shapes only (traced, not compiled): every preset's program builds with the transformer,
    at its own scale (paper presets included)."""
    config = jaxcoop.preset(name, "transformer").replace(algo=algo)
    config = config.replace(num_iterations=config.chunk_iterations)
    state, metrics = jax.eval_shape(jaxcoop.make_train(config), jax.random.key(0))
    seeds = (config.num_seeds,) if config.num_seeds > 1 else ()  # the cpu preset's 3 seeds
    assert metrics.learning.loss.shape == (*seeds, config.num_iterations, config.num_learners)
    position = state.params["params"]["backbone"]["position"]
    rows = config.horizon + int(config.opponent_id)
    assert position.shape == (*seeds, config.num_learners, rows, config.hidden_dim)


# With a frozen co-player (about 18 CPU-s) is slow: CI runs the training layout (tabular and
# learner-vs-learner episodes); that a frozen co-player never changes is tested in test_runs.
@pytest.mark.parametrize("frozen", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_a2c_through_the_rollout_equals_a2c_on_a_second_forward_pass(monkeypatch, frozen):
    """The GRU's A2C gradient taken through the rollout itself gives the update of the
    recompute-then-differentiate path (same episodes: same key), up to float32 rounding; with a
    frozen co-player too (its parameters get no gradient)."""
    from jaxcoop import networks
    from jaxcoop.algorithms.actor_critic import train as actor_critic

    config = jaxcoop.preset("tiny").replace(num_learners=3)
    coplayer = networks.Agent(embed_dim=8, hidden_dim=16) if frozen else None
    assert actor_critic.differentiates_rollout(config)
    results = []
    for through in (True, False):
        monkeypatch.setattr(
            actor_critic, "differentiates_rollout", lambda c, through=through: through
        )
        trainer = actor_critic.make_trainer(config, coplayer)
        state = trainer.init(jax.random.key(3))
        state, metrics = jax.jit(trainer.iteration)(state)
        results.append((state, metrics))
    (a, ma), (b, mb) = results
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-6, rtol=1e-5)
    for name in ("loss", "policy_loss", "value_loss", "entropy", "grad_norm", "coop_vs_tabular"):
        np.testing.assert_allclose(
            ma.as_dict()[name], mb.as_dict()[name], rtol=1e-5, atol=1e-6, err_msg=name
        )
    assert float(jnp.min(ma.learning.grad_norm)) > 0  # the learners did get a gradient


def test_frozen_and_tabular_coplayers_draw_their_moves_independently(tiny_rollout):
    """Seat i against a tabular co-player and seat i against the frozen co-player sample with
    different keys: with both playing 50/50, their moves agree about half the time (with one
    key for both they would agree in every round)."""
    from jaxcoop import networks

    t = tiny_rollout
    n, k = t.config.num_learners, 64
    coplayers = jnp.full((n, k, 5), 0.5)  # every tabular co-player cooperates with p = 1/2
    frozen_agent = networks.Agent(embed_dim=8, hidden_dim=16)
    params = networks.init_params(frozen_agent, jax.random.key(0))
    params = jax.tree.map(jnp.zeros_like, params)  # logits 0: 50/50 in every round
    frozen = rollout.FrozenCoplayer(frozen_agent, params, num_episodes=k)
    none = jnp.zeros((n, 0), jnp.int32)
    batch = jax.jit(
        lambda p, key: rollout.collect(t.agent, p, key, t.game, coplayers, none, none, frozen)
    )(t.params, jax.random.key(5))
    moves = batch.transition.coplayer_action  # [N, T, K + F]
    agree = float(jnp.mean(moves[..., :k] == moves[..., k:]))
    assert 0.4 < agree < 0.6, agree


def test_sampling_with_noise_drawn_beforehand_is_categorical_sampling():
    """``sample_with_noise`` with ``gumbel(key)`` draws what ``jax.random.categorical(key)``
    draws, and ``gumbel_per_round`` gives each round's key the noise it would draw alone."""
    logits = jax.random.normal(jax.random.key(0), (3, 50, 2)) * 2.0
    key = jax.random.key(1)
    action, log_prob = rollout.sample_with_noise(jax.random.gumbel(key, logits.shape), logits)
    np.testing.assert_array_equal(action, jax.random.categorical(key, logits, axis=-1))
    x = np.asarray(logits, np.float64)  # the log-softmax in float64: exact to float32's rounding
    log_softmax = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    expected = np.take_along_axis(log_softmax, np.asarray(action)[..., None], axis=-1)[..., 0]
    np.testing.assert_allclose(log_prob, expected, rtol=1e-6)
    keys = jax.random.split(key, 4)
    noise = rollout.gumbel_per_round(keys, (3, 50, 2))
    for t in range(4):
        np.testing.assert_array_equal(noise[t], jax.random.gumbel(keys[t], (3, 50, 2)))


def _primitives(jaxpr) -> set[str]:
    """Names of every primitive in ``jaxpr`` and the jaxprs nested in it."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr's Jaxpr
                if hasattr(sub, "eqns"):
                    names |= _primitives(sub)
    return names


def test_the_rollouts_round_draws_no_random_numbers(tiny_rollout):
    """Speed structure: every round's noise is drawn before the rollout's scan (on a CPU each
    draw inside the round would be a random-bits loop of its own, 100 rounds over)."""
    t = tiny_rollout
    jaxpr = jax.make_jaxpr(
        lambda p, key: rollout.collect(t.agent, p, key, t.game, t.coplayers, t.succ, t.pred)
    )(t.params, jax.random.key(0)).jaxpr
    scans = [e for e in jaxpr.eqns if e.primitive.name == "scan"]
    assert len(scans) == 1 and scans[0].params["length"] == t.game.horizon
    inside = _primitives(scans[0].params["jaxpr"].jaxpr)
    assert "random_bits" not in inside and "threefry2x32" not in inside, inside
    assert "random_bits" in _primitives(jaxpr)  # drawn outside the scan instead


def _equations(jaxpr) -> list:
    """Every equation of ``jaxpr`` and of the jaxprs inside it (scan bodies, jits, ...)."""
    from benchmarks.sps import _sub_jaxprs

    found = []
    for eqn in jaxpr.eqns:
        found.append(eqn)
        for sub in _sub_jaxprs(eqn.params):
            found += _equations(sub)
    return found


@pytest.mark.parametrize("algo", ["a2c", "ppo"])
def test_the_transformers_update_is_one_parallel_forward_not_a_second_rollout(algo):
    """The transformer's update recomputes logits and values in one causal forward over
    ``[T, B]``: its program writes no key/value cache (a ``dynamic_update_slice``, or a
    ``scatter`` where it is batched over learners) and scans over the rounds only once (GAE's
    backward recursion), while the rollout it learns from writes the cache every round. A
    regression to differentiating the cached rollout, or to replaying it round by round, fails
    here."""
    writes = ("dynamic_update_slice", "scatter")
    from jaxcoop.algorithms import actor_critic

    config = jaxcoop.preset("tiny", "transformer").replace(algo=algo)
    trainer = jaxcoop.make_trainer(config)
    state = jax.eval_shape(trainer.init, jax.random.key(0))
    agent = networks.make_agent(config)
    assert not actor_critic.differentiates_rollout(config)

    def rollout_only(params):
        n, k = config.num_learners, config.num_tabular_episodes
        coplayers = jnp.full((n, k, 5), 0.5)
        succ, pred = rollout.pairing(n, config.num_pair_slots, jax.random.key(1))
        game = jaxcoop.make_game(config.game, config.horizon)
        return rollout.collect(agent, params, jax.random.key(2), game, coplayers, succ, pred)

    batch = jax.eval_shape(rollout_only, state.params)
    collected = _equations(jax.make_jaxpr(rollout_only)(state.params).jaxpr)
    assert any(e.primitive.name in writes for e in collected)

    update = actor_critic.make_update(config, agent, actor_critic.make_optimizer(config))
    one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), (state, batch))
    (s, b) = one
    jaxpr = jax.make_jaxpr(update)(s.params, s.learner_state, b, jax.random.key(3)).jaxpr
    eqns = _equations(jaxpr)
    assert not [e.primitive.name for e in eqns if e.primitive.name in writes]
    over_rounds = [
        e for e in eqns if e.primitive.name == "scan" and e.params["length"] == config.horizon
    ]
    assert len(over_rounds) == 1  # GAE
