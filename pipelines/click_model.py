"""How much a hit's position alone draws clicks, measured from the answers users clicked on.

The position-based model (PBM; Richardson et al. 2007, Craswell et al. 2008): a hit at position
p is clicked with probability θ_p · ε, where θ_p is the chance that a user looks at position p at
all and ε the chance that a user who looks clicks it: ε+ for a relevant hit, ε− for another (users
click what turns out useless too). `fit_click_noise` fits ε+, ε− and the share of relevant hits
at each rank of the ranker's own order by EM over every (query, document) shown, so that a
document's clicks and rank give the probability that it is relevant. (Clicks divided by θ_p,
inverse propensity weighting as in Joachims et al. 2017, was tried first: one noise click deep in
a list counted five to ten times.)

θ cannot be told apart from ε in answers that always show one query's hits in one order: a hit
clicked less at position 5 may be less relevant or seen less. Sluice measures θ from answers in
which two adjacent hits traded places at random (`SLUICE_FEEDBACK_EXPLORATION`, RandPair): the
same hits, seen at the other position. θ_p = p^-η, a power law with one parameter (as Joachims et
al. measured on search logs), fitted by maximum likelihood; each original rank j has its own mean
attractiveness ρ_j, so only the swapped answers decide η. Too few swapped answers, and η is not
measured: it is taken as 1 and the report says so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

MIN_EXPLORED = 30
"""Swapped answers below which η is assumed, not fitted."""
ASSUMED_ETA = 1.0
DEPTH = 10
MIN_PROPENSITY = 0.1
"""θ is floored here, so that one click deep in a list weighs at most ten times one at the top."""


@dataclass(frozen=True)
class Observation:
    """One shown hit: where it was shown, where the ranker put it, whether it was clicked."""

    position: int
    original_rank: int
    clicked: bool


@dataclass(frozen=True)
class ClickModel:
    eta: float
    measured: bool
    """False: too few swapped answers, and `eta` is the assumed value."""
    explored_answers: int
    answers: int

    def propensity(self, position: int) -> float:
        """θ_position, the chance that a user examines a hit shown there (floored)."""
        theta: float = position**-self.eta
        return max(MIN_PROPENSITY, theta)

    def describe(self) -> str:
        how = (
            f"fitted on {self.explored_answers} answers with two hits swapped"
            if self.measured
            else f"assumed: only {self.explored_answers} answers with two hits swapped "
            f"(at least {MIN_EXPLORED} measure it; set SLUICE_FEEDBACK_EXPLORATION)"
        )
        return f"position-based model, examination θ_p = p^-{self.eta:.2f} ({how})"


def observations(positions: int, explored_swap: int | None, clicked: set[int]) -> list[Observation]:
    """The first `DEPTH` positions of one answer as observations (positions from 1)."""
    found = []
    for position in range(1, min(positions, DEPTH) + 1):
        original = position
        if explored_swap is not None and position in (explored_swap, explored_swap + 1):
            original = 2 * explored_swap + 1 - position
        found.append(Observation(position, original, position in clicked))
    return found


def fit_click_model(answers: Iterable[tuple[list[Observation], bool]]) -> ClickModel:
    """The PBM's η from answers (their observations, and whether they were swapped)."""
    kept = list(answers)
    explored = sum(1 for _, swapped in kept if swapped)
    if explored < MIN_EXPLORED:
        return ClickModel(ASSUMED_ETA, False, explored, len(kept))
    counts: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for found, _ in kept:
        for o in found:
            cell = counts[(o.position, o.original_rank)]
            cell[0] += 1
            cell[1] += int(o.clicked)
    cells = np.array([(p, j, n, c) for (p, j), (n, c) in counts.items()], dtype=float)
    best = max(np.arange(0.0, 3.001, 0.01), key=lambda eta: _log_likelihood(cells, eta))
    return ClickModel(round(float(best), 2), True, explored, len(kept))


def _log_likelihood(cells: np.ndarray, eta: float) -> float:
    """Bernoulli log-likelihood of the clicks with θ_p = p^-η and each original rank's ρ_j at
    its estimate given θ (clicks over expected examinations)."""
    positions, ranks, shown, clicks = cells.T
    theta = positions**-eta
    rho = {}
    for rank in np.unique(ranks):
        at = ranks == rank
        rho[rank] = float(np.clip(clicks[at].sum() / (theta[at] * shown[at]).sum(), 1e-6, 1 - 1e-6))
    p = np.clip(theta * np.array([rho[r] for r in ranks]), 1e-9, 1 - 1e-9)
    total = float((clicks * np.log(p) + (shown - clicks) * np.log(1 - p)).sum())
    return total if math.isfinite(total) else -math.inf


@dataclass(frozen=True)
class ClickNoise:
    """How users click what they look at, fitted on the log: a looked-at hit is clicked with
    probability `relevant` when relevant and `other` when not (noise). Before its clicks are
    seen, a hit the ranker put at rank r is relevant with probability
    σ(logit(`prior`) − `decay` · ln r): `prior` at rank 1, falling with rank (0: the same at
    every rank). The ranker's own order is evidence: with one share for every rank, one noise
    click on a tenth hit counted as much as a click on the first."""

    relevant: float
    other: float
    prior: float
    decay: float = 0.0

    @property
    def prior_logit(self) -> float:
        return math.log(self.prior / (1 - self.prior))

    def prior_at(self, rank: int) -> float:
        """P(relevant) of a hit ranked `rank` (from 1), before its clicks are seen."""
        return _sigmoid(self.prior_logit - self.decay * math.log(rank))

    def posterior(self, shown: list[tuple[float, bool]], rank: int = 1) -> float:
        """P(relevant | its clicks), `shown`: (θ of the position, clicked) per time it was
        shown; `rank`: the best rank the ranker gave it."""
        log_odds = self.prior_logit - self.decay * math.log(rank)
        for theta, clicked in shown:
            p_rel, p_other = theta * self.relevant, theta * self.other
            log_odds += (
                math.log(p_rel / p_other) if clicked else math.log((1 - p_rel) / (1 - p_other))
            )
        return _sigmoid(log_odds)


def _sigmoid(log_odds: float) -> float:
    return 1 / (1 + math.exp(-max(-50.0, min(50.0, log_odds))))


def fit_click_noise(
    items: list[list[tuple[float, bool]]], ranks: list[int] | None = None, rounds: int = 200
) -> ClickNoise:
    """EM for a two-class mixture: each (query, document) shown is relevant or not, its clicks
    Bernoulli(θ · ε) with ε of its class, its prior a logistic function of ln(the best rank the
    ranker gave it) (Regression EM, Wang et al. 2018, with the rank as the one feature).
    `items`: per pair, (θ, clicked) per time shown; `ranks`: per pair (None: all 1, one prior)."""
    from scipy.optimize import minimize_scalar

    noise = ClickNoise(0.7, 0.05, 0.2)
    if not items:
        return noise
    owner = np.repeat(np.arange(len(items)), [len(shown) for shown in items])
    theta = np.array([t for shown in items for t, _ in shown])
    clicked = np.array([c for shown in items for _, c in shown], dtype=float)
    log_rank = np.log(np.array(ranks if ranks is not None else [1] * len(items), dtype=float))
    by_rank = bool(np.ptp(log_rank) > 0)

    def best_rate(weights: np.ndarray, upper: float) -> float:
        """The ε that maximises the weighted Bernoulli log-likelihood (concave in ε)."""

        def loss(rate: float) -> float:
            p = theta * rate
            return -float((weights * (clicked * np.log(p) + (1 - clicked) * np.log1p(-p))).sum())

        return float(minimize_scalar(loss, bounds=(1e-4, upper), method="bounded").x)

    def posteriors(noise: ClickNoise) -> np.ndarray:
        """`ClickNoise.posterior` of every item at once."""
        p_rel, p_other = theta * noise.relevant, theta * noise.other
        per_look = np.where(
            clicked > 0, np.log(p_rel / p_other), np.log1p(-p_rel) - np.log1p(-p_other)
        )
        log_odds = noise.prior_logit - noise.decay * log_rank
        log_odds += np.bincount(owner, per_look, minlength=len(items))
        posterior: np.ndarray = 1 / (1 + np.exp(-np.clip(log_odds, -50, 50)))
        return posterior

    for _ in range(rounds):
        item_weights = posteriors(noise)
        weights = item_weights[owner]
        prior, decay = (
            _logistic_fit(log_rank, item_weights, noise)
            if by_rank  # else the share, exactly: the ridge would slow an EM that is slow already
            else (float(np.clip(item_weights.mean(), 1e-3, 0.999)), 0.0)
        )
        updated = ClickNoise(best_rate(weights, 0.999), best_rate(1 - weights, 0.999), prior, decay)
        if updated.other > updated.relevant:  # the classes swapped: keep the named order
            updated = ClickNoise(updated.other, updated.relevant, 1 - updated.prior, -decay)
        change = max(
            abs(a - b) for a, b in zip(vars(updated).values(), vars(noise).values(), strict=True)
        )
        noise = updated
        if change < 1e-4:
            break
    return noise


RIDGE = 1.0
"""The prior's L2 penalty: one pseudo-observation's weight, nothing against thousands."""
COEF_BOUND = 15.0


def _logistic_fit(
    log_rank: np.ndarray, targets: np.ndarray, start: ClickNoise
) -> tuple[float, float]:
    """(prior at rank 1, decay) of σ(a − decay · ln r) fitted to soft targets by Newton's method
    (the M-step of the prior), from the previous round's values. A weak ridge (`RIDGE`) and a
    bound on both keep them finite where the ranks separate the classes (a few answers, all
    clicked at one position)."""
    features = np.column_stack([np.ones_like(log_rank), -log_rank])
    coef = np.array([start.prior_logit, start.decay])
    for _ in range(25):
        p = 1 / (1 + np.exp(-np.clip(features @ coef, -50, 50)))
        gradient = features.T @ (targets - p) - RIDGE * coef
        hessian = features.T @ (features * (p * (1 - p))[:, None]) + RIDGE * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        coef = np.clip(coef + step, -COEF_BOUND, COEF_BOUND)
        if np.abs(step).max() < 1e-8:
            break
    prior = float(np.clip(1 / (1 + math.exp(-coef[0])), 1e-3, 0.999))
    return prior, float(coef[1])
