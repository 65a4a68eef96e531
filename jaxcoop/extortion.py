"""Measuring extortion: a player's empirical memory-1 behaviour from played episodes, and how close
it is to a zero-determinant (ZD) extortion strategy (Press & Dyson 2012).

A memory-1 strategy ``p`` over (CC, CD, DC, DD), own previous move first, is a ZD extortioner
with extortion factor ``chi >= 1`` and scale ``phi > 0`` iff

    p - (1, 1, 0, 0) = phi * [(S_X - P) - chi * (S_Y - P)],

where ``S_X`` and ``S_Y`` are the player's and the co-player's payoffs in the four states and
``P`` the mutual-defection payoff; it then enforces ``s_X - P = chi * (s_Y - P)`` on the long-run
mean rewards against any co-player. Plain numpy post-processing: nothing here is traced.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from jaxcoop import environment
from jaxcoop.environment import NUM_STATES, START, C
from jaxcoop.rollout import Episodes

#: ``p - _REPEAT`` is Press & Dyson's ``p~`` (cooperating again after one's own C is the baseline).
_REPEAT = np.array([1.0, 1.0, 0.0, 0.0])
_FAIR_TOLERANCE = 1e-9


class Memory1(NamedTuple):
    """A player's empirical memory-1 strategy over ``[START, CC, CD, DC, DD]`` (own move first).

    p_cooperate: float64 ``[5]``, P(C | state); NaN where the state never occurred.
    counts: int64 ``[5]``, how many decisions were observed in each state.
    """

    p_cooperate: np.ndarray
    counts: np.ndarray


class ZDFit(NamedTuple):
    """Weighted least-squares fit of a memory-1 strategy to the ZD extortion family.

    chi: extortion factor (NaN if the fitted ``phi`` is 0). phi: scale.
    residual: weighted RMS distance of ``p`` from the fitted extortion strategy (used states).
    zd_residual: weighted RMS distance of ``p`` from the nearest ZD strategy of any kind.
    fitted: float64 ``[4]``, the fitted extortion strategy's P(C) over (CC, CD, DC, DD).
    states_used: how many of the 4 states entered the fit.
    """

    chi: float
    phi: float
    residual: float
    zd_residual: float
    fitted: np.ndarray
    states_used: int

    @property
    def is_extortion(self) -> bool:
        """``chi > 1`` and ``phi > 0``; ``chi = 1`` is a fair strategy such as tit-for-tat (a fitted
        ``chi`` within ``1e-9`` of 1, rounding error, counts as fair)."""
        return bool(self.chi > 1.0 + _FAIR_TOLERANCE and self.phi > 0.0)


def memory1_behaviour(episodes: Episodes, player: int = 0) -> Memory1:
    """The empirical memory-1 strategy of ``player`` in ``episodes``.

    Round 0 of every episode is decided in START; round ``t > 0`` in the joint action of round
    ``t - 1`` as the player sees it (its own action first, so player 1's view is mirrored).

    Args:
      episodes: ``Episodes`` with int ``actions`` ``[E, T, 2]`` (numpy or jax arrays).
      player: 0 or 1.

    Returns:
      ``Memory1`` with ``p_cooperate`` float64 ``[5]`` and ``counts`` int64 ``[5]``.
    """
    if player not in (0, 1):
        raise ValueError(f"player={player} must be 0 or 1")
    actions_ExTx2 = np.asarray(episodes.actions)
    if actions_ExTx2.ndim != 3 or actions_ExTx2.shape[-1] != 2:
        raise ValueError(f"episodes.actions has shape {actions_ExTx2.shape}; expected [E, T, 2]")
    own_ExT, other_ExT = actions_ExTx2[..., player], actions_ExTx2[..., 1 - player]
    previous_ExT = 1 + 2 * own_ExT[:, :-1] + other_ExT[:, :-1]
    states_ExT = np.concatenate([np.full_like(own_ExT[:, :1], START), previous_ExT], axis=1)
    counts = np.bincount(states_ExT.ravel(), minlength=NUM_STATES).astype(np.int64)
    cooperations = np.bincount(
        states_ExT.ravel(), weights=(own_ExT == C).ravel(), minlength=NUM_STATES
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        p_cooperate = np.where(counts > 0, cooperations / counts, np.nan)
    return Memory1(p_cooperate, counts)


def _weighted_lstsq(
    design_Sxk: np.ndarray, target_S: np.ndarray, weight_S: np.ndarray
) -> tuple[np.ndarray, float]:
    """Coefficients ``[k]`` minimizing ``sum w (target - design @ c)^2``, and the weighted RMS
    residual ``sqrt(sum w r^2 / sum w)``."""
    root_S = np.sqrt(weight_S)
    coef = np.linalg.lstsq(design_Sxk * root_S[:, None], target_S * root_S, rcond=None)[0]
    error_S = target_S - design_Sxk @ coef
    return coef, float(np.sqrt(np.sum(weight_S * error_S**2) / np.sum(weight_S)))


def fit_extortion(
    p_cooperate: np.ndarray,
    counts: np.ndarray | None = None,
    payoffs: np.ndarray = environment.PRISONERS_DILEMMA,
) -> ZDFit:
    """Fit a memory-1 strategy to the ZD extortioners ``p~ = phi [(S_X - P) - chi (S_Y - P)]``.

    Weighted least squares ``p~ ≈ a (S_X - P) + b (S_Y - P)`` with ``phi = a``, ``chi = -b / a``;
    states with count 0 or NaN ``p`` are dropped. ``zd_residual`` comes from the same fit to the
    whole ZD family ``p~ ≈ alpha S_X + beta S_Y + gamma``: with fewer than 3 usable states that
    fit is exact, so ``zd_residual`` is 0 by construction (up to rounding).

    Args:
      p_cooperate: float ``[5]``, P(C) over ``[START, CC, CD, DC, DD]`` (START is ignored).
      counts: int ``[5]``, decisions observed per state, the fit's weights; ``None``: all 1.
      payoffs: ``[2, 2, 2]`` payoff table ``[own, other, (own, other's) reward]`` from the
        fitted player's view.

    Returns:
      ``ZDFit``; ``is_extortion`` is true for ``chi > 1`` and ``phi > 0``.

    Raises:
      ValueError: if fewer than 2 of the states CC, CD, DC, DD are usable.
    """
    p_S = np.asarray(p_cooperate, dtype=np.float64)
    if p_S.shape != (NUM_STATES,):
        raise ValueError(f"p_cooperate has shape {p_S.shape}; expected [{NUM_STATES}]")
    weight_S = np.ones(NUM_STATES) if counts is None else np.asarray(counts, dtype=np.float64)
    p_4, weight_4 = p_S[1:], weight_S[1:]
    used_4 = (weight_4 > 0) & np.isfinite(p_4)
    states_used = int(used_4.sum())
    if states_used < 2:
        observed = [environment.STATE_NAMES[1 + i] for i in np.flatnonzero(used_4)]
        raise ValueError(
            f"only {states_used} of the states CC, CD, DC, DD observed {observed}; "
            "fitting an extortion strategy needs at least 2"
        )

    table = np.asarray(payoffs, dtype=np.float64)
    s_x, s_y, punishment = table[:, :, 0].reshape(4), table[:, :, 1].reshape(4), table[1, 1, 0]
    target_4 = p_4 - _REPEAT
    extortion_4x2 = np.stack([s_x - punishment, s_y - punishment], axis=-1)
    (a, b), residual = _weighted_lstsq(extortion_4x2[used_4], target_4[used_4], weight_4[used_4])
    zd_4x3 = np.stack([s_x, s_y, np.ones(4)], axis=-1)
    _, zd_residual = _weighted_lstsq(zd_4x3[used_4], target_4[used_4], weight_4[used_4])
    return ZDFit(
        chi=float(-b / a) if a != 0 else float("nan"),
        phi=float(a),
        residual=residual,
        zd_residual=zd_residual,
        fitted=extortion_4x2 @ np.array([a, b]) + _REPEAT,
        states_used=states_used,
    )


def _json_list(x: np.ndarray) -> list[Any]:
    return [None if np.isnan(v) else float(v) for v in np.asarray(x, dtype=np.float64)]


def extortion_report(
    episodes: Episodes, player: int = 0, payoffs: np.ndarray = environment.PRISONERS_DILEMMA
) -> dict[str, Any]:
    """How much ``player`` extorts its co-player in ``episodes``: a JSON-ready summary.

    Args:
      episodes: ``Episodes`` (numpy or jax arrays), ``actions`` and ``rewards`` ``[E, T, 2]``.
      player: 0 or 1.
      payoffs: ``[2, 2, 2]`` payoff table ``payoffs[a_0, a_1]`` of the game played (mirrored
        internally for player 1).

    Returns:
      ``p_cooperate`` and ``counts`` (``memory1_behaviour``; NaN as ``None``); ``chi``, ``phi``,
      ``residual``, ``zd_residual``, ``fitted``, ``is_extortion`` (``fit_extortion``); the mean
      reward per round of the player (``reward``) and its co-player (``coplayer_reward``), and
      ``reward_ratio = (reward - P) / (coplayer_reward - P)`` (``None`` if the denominator is 0),
      which tends to ``chi`` for an exact extortioner against any co-player.
    """
    table = np.asarray(payoffs, dtype=np.float64)
    if player == 1:  # the player's own action first, its own reward first
        table = table.transpose(1, 0, 2)[..., ::-1]
    behaviour = memory1_behaviour(episodes, player)
    fit = fit_extortion(behaviour.p_cooperate, behaviour.counts, table)
    rewards_ExTx2 = np.asarray(episodes.rewards, dtype=np.float64)
    reward = float(rewards_ExTx2[..., player].mean())
    coplayer_reward = float(rewards_ExTx2[..., 1 - player].mean())
    punishment = table[1, 1, 0]
    denominator = coplayer_reward - punishment
    return {
        "p_cooperate": _json_list(behaviour.p_cooperate),
        "counts": [int(n) for n in behaviour.counts],
        "chi": None if np.isnan(fit.chi) else fit.chi,
        "phi": fit.phi,
        "residual": fit.residual,
        "zd_residual": fit.zd_residual,
        "fitted": _json_list(fit.fitted),
        "is_extortion": fit.is_extortion,
        "reward": reward,
        "coplayer_reward": coplayer_reward,
        "reward_ratio": None if denominator == 0 else float((reward - punishment) / denominator),
    }
