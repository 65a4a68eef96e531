"""Tabular memory-1 co-players: 5 cooperation probabilities ``[START, CC, CD, DC, DD]``.

States are from the tabular player's own view (its own previous action first). A strategy is
just a float32 array ``[..., 5]``; the pool samples them i.i.d. U(0, 1), fresh every episode.
Named strategies are constructors returning such arrays: ``jaxcoop.strategies.tit_for_tat()``;
``from_axelrod`` converts a memory-one strategy of the Axelrod library (optional dependency), and a
pool or panel name ``"axelrod:ZDExtort2"`` names one (``named``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxcoop.environment import NUM_STATES, PRISONERS_DILEMMA

OPPONENT_ID_SIZE = 2 * NUM_STATES
_LOG_EPS = 1e-6


def cooperate_probability(theta: jax.Array, obs: jax.Array) -> jax.Array:
    """P(C) of strategies ``theta`` float ``[..., 5]`` given one-hot observations ``[..., 5]``
    (a single strategy ``[5]`` is broadcast over the observations' leading axes)."""
    theta = jnp.broadcast_to(theta, jnp.broadcast_shapes(theta.shape, obs.shape))
    return jnp.sum(theta * obs, axis=-1)


def logits(theta: jax.Array, obs: jax.Array) -> jax.Array:
    """Action logits float32 ``[..., 2]`` (log P(C), log P(D)) of a tabular strategy."""
    p = jnp.clip(cooperate_probability(theta, obs), _LOG_EPS, 1.0 - _LOG_EPS)
    return jnp.stack([jnp.log(p), jnp.log1p(-p)], axis=-1)


def sample_pool(key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    """Random pool co-players: float32 ``[*shape, 5]`` with entries i.i.d. U(0, 1)."""
    return jax.random.uniform(key, (*shape, NUM_STATES), dtype=jnp.float32)


def opponent_id(theta: jax.Array) -> jax.Array:
    """The paper's conditioning vector ``[..., 10]``: per state, log P(C) and log P(D)."""
    p = jnp.clip(theta, _LOG_EPS, 1.0 - _LOG_EPS)
    return jnp.stack([jnp.log(p), jnp.log1p(-p)], axis=-1).reshape(
        *theta.shape[:-1], OPPONENT_ID_SIZE
    )


def _strategy(*probs: float) -> jax.Array:
    return jnp.asarray(probs, dtype=jnp.float32)


def always_cooperate() -> jax.Array:
    """Cooperate in every state."""
    return _strategy(1, 1, 1, 1, 1)


def always_defect() -> jax.Array:
    """Defect in every state."""
    return _strategy(0, 0, 0, 0, 0)


def tit_for_tat() -> jax.Array:
    """Cooperate first, then copy the co-player's previous move."""
    return _strategy(1, 1, 0, 1, 0)


def win_stay_lose_shift() -> jax.Array:
    """Pavlov: cooperate first; repeat own move after CC or DC, switch after CD or DD."""
    return _strategy(1, 1, 0, 0, 1)


def generous_tit_for_tat(generosity: float = 1.0 / 3.0) -> jax.Array:
    """Tit-for-tat that forgives a defection with probability ``generosity``."""
    return _strategy(1, 1, generosity, 1, generosity)


def cooperate_then_defect() -> jax.Array:
    """Cooperate in the first round, defect ever after (not in ``NAMED``: a reference player of
    ``experiments.reference``, pricing an opening C)."""
    return _strategy(1, 0, 0, 0, 0)


def uniform_random() -> jax.Array:
    """Cooperate with probability 1/2 in every state (the pool's average strategy)."""
    return _strategy(0.5, 0.5, 0.5, 0.5, 0.5)


def zd_extortioner(
    chi: float = 3.0,
    phi_fraction: float = 0.5,
    start: float = 1.0,
    payoffs: np.ndarray = PRISONERS_DILEMMA,
) -> jax.Array:
    """Press-Dyson zero-determinant extortioner: ``s_X - P = chi * (s_Y - P)`` for any co-player.

    ``p = (1, 1, 0, 0) + phi * [(S_X - P) - chi (S_Y - P)]`` over (CC, CD, DC, DD), with ``phi``
    a fraction ``phi_fraction`` of the largest value keeping every probability in [0, 1].

    Args:
      chi: extortion factor (>= 1).
      phi_fraction: in (0, 1].
      start: P(C) in the first round (the long-run payoffs do not depend on it).
      payoffs: ``[2, 2, 2]`` payoff table of a prisoner's dilemma.
    """
    if chi < 1.0:
        raise ValueError(f"chi={chi} must be >= 1")
    if not 0.0 < phi_fraction <= 1.0:
        raise ValueError(f"phi_fraction={phi_fraction} must be in (0, 1]")
    table = np.asarray(payoffs, dtype=np.float64)
    s_x = table[:, :, 0].reshape(4)
    s_y = table[:, :, 1].reshape(4)
    punishment = table[1, 1, 0]
    base = np.array([1.0, 1.0, 0.0, 0.0])
    direction = (s_x - punishment) - chi * (s_y - punishment)
    bounds = [
        (1.0 - b) / d if d > 0 else b / -d for b, d in zip(base, direction, strict=True) if d != 0
    ]
    phi = phi_fraction * min(bounds)
    p = np.clip(base + phi * direction, 0.0, 1.0)
    return _strategy(start, *p)


NAMED = {
    "always_cooperate": always_cooperate,
    "always_defect": always_defect,
    "tit_for_tat": tit_for_tat,
    "win_stay_lose_shift": win_stay_lose_shift,
    "generous_tit_for_tat": generous_tit_for_tat,
    "zd_extortioner": zd_extortioner,
    "uniform_random": uniform_random,
}


POOLS = ("uniform", "named", "uniform+named", *NAMED)
#: The prefix of a co-player name that names a strategy of the Axelrod library: ``axelrod:GTFT``.
AXELROD_PREFIX = "axelrod:"


def is_named(name: str) -> bool:
    """Whether ``name`` names one fixed strategy: a key of ``NAMED`` or ``axelrod:<Class>``."""
    return name in NAMED or name.startswith(AXELROD_PREFIX)


def named(name: str) -> jax.Array:
    """The strategy ``[5]`` of a name of ``NAMED`` or of ``axelrod:<Class>`` (an Axelrod
    memory-one strategy as it plays the paper's game, ``from_axelrod``). Raises ``ValueError``
    naming what is unknown or not memory-one."""
    if name in NAMED:
        return NAMED[name]()
    if not name.startswith(AXELROD_PREFIX):
        raise ValueError(
            f"strategy {name!r} is unknown; allowed: {sorted(NAMED)} or axelrod:<Class>"
        )
    axl = import_axelrod()
    class_name = name[len(AXELROD_PREFIX) :]
    player_class = getattr(axl, class_name, None)
    if not (isinstance(player_class, type) and issubclass(player_class, axl.Player)):
        raise ValueError(f"{name!r}: the Axelrod library has no strategy {class_name!r}")
    return from_axelrod(player_class())


def import_axelrod():
    """The ``axelrod`` package, or ``ImportError`` saying how to install it."""
    try:
        import axelrod
    except ImportError as e:
        raise ImportError(
            'the Axelrod library is not installed: pip install -e ".[axelrod]" (or pip install '
            "axelrod)"
        ) from e
    return axelrod


def axelrod_game(payoffs: np.ndarray = PRISONERS_DILEMMA):
    """A symmetric ``[2, 2, 2]`` payoff table as an ``axelrod.Game`` (the paper's:
    ``Game(r=1, s=-1, t=2, p=0)``)."""
    axl = import_axelrod()
    table = np.asarray(payoffs, np.float64)
    if not np.array_equal(table[:, :, 1], table[:, :, 0].T):
        raise ValueError("an Axelrod game is symmetric; this payoff table is not")
    return axl.Game(r=table[0, 0, 0], s=table[0, 1, 0], t=table[1, 0, 0], p=table[1, 1, 0])


class _DrawRecorder:
    """Stands in for a player's ``axelrod.RandomGenerator`` while it is probed: records the
    probability of every ``random_choice(p)`` and answers ``forced`` where ``0 < p < 1``."""

    def __init__(self, forced):
        self.forced, self.probabilities = forced, []

    def random_choice(self, p: float = 0.5):
        from axelrod import Action

        self.probabilities.append(float(p))
        return Action.C if p == 1 else Action.D if p == 0 else self.forced

    def __getattr__(self, name: str):
        raise ValueError(
            f"it draws with RandomGenerator.{name}(); only random_choice(p) draws have a fixed "
            "probability per state"
        )


#: A probe's rounds, as indices into (CC, CD, DC, DD): a de Bruijn sequence (every ordered pair
#: of rounds once), twice over (17 rounds, odd: each pair also at the other parity of the turn).
_PROBE_ROUNDS = (0, 0, 1, 0, 2, 0, 3, 1, 1, 2, 1, 3, 2, 2, 3, 3, 0) * 2


def _probe(prototype, rounds) -> list[float]:
    """P(C) of a clone of Axelrod player ``prototype`` before each of ``rounds`` ((own, other)
    action pairs, fed in order as in a match) and after the last: read off its one
    ``random_choice`` draw per move, or 0 / 1 where it does not draw."""
    from axelrod import Action, Cooperator

    probes = []
    for forced in (Action.C, Action.D):  # two clones in step; their draws answer C, then D
        me = prototype.clone()
        me.set_match_attributes(**prototype.match_attributes)
        me._random = _DrawRecorder(forced)
        probes.append((me, Cooperator()))
    out = []
    for t in range(len(rounds) + 1):
        moves = []
        for me, other in probes:
            me._random.probabilities.clear()
            moves.append(me.strategy(other))
        draws = probes[0][0]._random.probabilities
        if len(draws) > 1:
            raise ValueError(f"it draws {len(draws)} times in one move")
        if draws and moves[0] != moves[1]:  # the move follows the draw (or its opposite)
            out.append(draws[0] if moves[0] == Action.C else 1.0 - draws[0])
        else:
            out.append(float(moves[0] == Action.C))
        if t < len(rounds):
            for me, other in probes:
                me.update_history(*rounds[t])
                other.update_history(*reversed(rounds[t]))
    return out


def from_axelrod(player, payoffs: np.ndarray | None = PRISONERS_DILEMMA) -> jax.Array:
    """An Axelrod memory-one strategy as the tabular ``[START, CC, CD, DC, DD]`` form (float32
    ``[5]``, its own previous move first; ``START`` is its first move's P(C)).

    Args:
      player: an ``axelrod.Player`` (or its class) with memory depth 0 or 1: the
        ``axelrod.MemoryOnePlayer`` s (``_initial`` and ``_four_vector``: the same numbers) and
        the others Axelrod classifies so (``TitForTat``, ``Random``, ``Alternator``, ...).
      payoffs: the game it plays (default the paper's), given to it first as its match's
        ``axelrod.Game``: Axelrod's zero-determinant strategies compute their probabilities from
        it. ``None``: as the player is.

    Each state is probed on a clone: its move, or the probability of its one
    ``random_choice(p)`` draw. Raises ``ValueError`` if it is not memory-one (its classifier,
    or a move that depends on more than the last round, e.g. on the turn number), draws in
    another way, or cannot play in the game.
    """
    axl = import_axelrod()
    if isinstance(player, type):
        player = player()
    if not isinstance(player, axl.Player):
        raise ValueError(f"{player!r} is not an axelrod.Player")
    depth = axl.Classifiers["memory_depth"](player)
    if depth > 1:
        raise ValueError(
            f"{player} has memory depth {depth}: only memory-one strategies (depth 0 or 1) have "
            "the 5-probability form"
        )
    prototype = player.clone()
    if payoffs is not None:
        try:
            prototype.set_match_attributes(game=axelrod_game(payoffs))
        except ValueError as e:  # e.g. a zero-determinant strategy with no solution there
            raise ValueError(
                f"{player} cannot play this game ({str(e) or 'Axelrod refuses'})"
            ) from e
    actions = (axl.Action.C, axl.Action.D)
    pairs = [(own, theirs) for own in actions for theirs in actions]  # CC, CD, DC, DD
    try:
        answers = _probe(prototype, [pairs[i] for i in _PROBE_ROUNDS])
        probabilities = [answers[0]]
        for state in range(4):  # every answer after a round of that state must agree
            seen = {p for i, p in zip(_PROBE_ROUNDS, answers[1:], strict=True) if i == state}
            if len(seen) > 1:
                name = "".join(a.name for a in pairs[state])
                raise ValueError(f"its move after {name} depends on earlier rounds or the turn")
            probabilities.append(seen.pop())
    except ValueError as e:
        raise ValueError(f"{player} has no memory-one form: {e}") from e
    return _strategy(*probabilities)


def sample_coplayers(key: jax.Array, shape: tuple[int, ...], pool: str = "uniform") -> jax.Array:
    """Tabular co-players ``[*shape, 5]``.

    ``pool``: ``"uniform"`` (the paper's pool: fresh U(0, 1) draws), ``"named"`` (each episode
    one of the named strategies, uniformly at random), ``"uniform+named"`` (each episode one or
    the other with probability 1/2), or a name of ``NAMED`` or ``axelrod:<Class>`` (``named``:
    that strategy in every episode).
    """
    if pool == "uniform":
        return sample_pool(key, shape)
    if pool == "named":
        table = jnp.stack([make() for make in NAMED.values()])
        return table[jax.random.randint(key, shape, 0, len(NAMED))]
    if pool == "uniform+named":
        key_uniform, key_named, key_choice = jax.random.split(key, 3)
        pick_named = jax.random.bernoulli(key_choice, 0.5, shape)[..., None]
        uniform = sample_pool(key_uniform, shape)
        drawn = sample_coplayers(key_named, shape, "named")
        return jnp.where(pick_named, drawn, uniform)
    return jnp.broadcast_to(named(pool), (*shape, NUM_STATES))


def markov_chain(theta_a: jax.Array, theta_b: jax.Array, horizon: int) -> jax.Array:
    """Exact distribution of the joint action in every round ``[T, 4]`` of two tabular strategies.

    Joint actions in a's view: CC, CD, DC, DD (a's own action first); b sees the mirrored state.
    """
    theta_a, theta_b = (jnp.asarray(x, jnp.float32) for x in (theta_a, theta_b))
    mirror = jnp.array([0, 2, 1, 3])

    def joint(p_a, p_b):  # distribution over (a, b) in order CC, CD, DC, DD
        pa = jnp.stack([p_a, 1 - p_a], -1)
        pb = jnp.stack([p_b, 1 - p_b], -1)
        return (pa[..., :, None] * pb[..., None, :]).reshape(*pa.shape[:-1], 4)

    transition_4x4 = joint(theta_a[1:], theta_b[1:][mirror])

    def round_(dist_4, _):
        return dist_4 @ transition_4x4, dist_4

    _, dist_Tx4 = jax.lax.scan(round_, joint(theta_a[0], theta_b[0]), None, length=horizon)
    return dist_Tx4


def expected_rewards(
    theta_a: jax.Array, theta_b: jax.Array, payoffs: jax.Array, horizon: int
) -> jax.Array:
    """Exact expected reward per round ``[2]`` of two tabular strategies over ``horizon`` rounds
    (the mean over rounds of ``markov_chain``'s distributions times the payoffs)."""
    reward_4x2 = jnp.asarray(payoffs, jnp.float32).reshape(4, 2)
    return (markov_chain(theta_a, theta_b, horizon) @ reward_4x2).mean(axis=0)
