"""The papers' claims, checked against the records, with each difference's test-set noise."""

import math
import statistics

from .grid import grid

# -- the papers' claims, checked against the records ----------------------------------
#
# Each claim is (source, statement, variants, across_k, check). A check takes {variant: {K: mean error %}}
# of one network (bp under K = 1, Associated Learning under its own K) and returns (evidence, holds,
# beyond_noise): holds is True, False, or None when the cells it needs are not recorded; beyond_noise says
# whether the deciding differences exceed twice their test-set sampling noise (see `_decide`).

# CIFAR-10's test split and Tiny-ImageNet's validation split (its test set here) hold 10,000 images each.
TEST_EXAMPLES = 10_000


class Estimate(float):
    """A mean error (%) over seeds that knows its own noise: `variance` (points²) of the mean, the
    larger of the seeds' (s² / n) and the test set's binomial variance."""

    def __new__(cls, values):
        mean = sum(values) / len(values)
        estimate = super().__new__(cls, mean)
        binomial = 100**2 * (mean / 100) * (1 - mean / 100) / TEST_EXAMPLES
        seeds = statistics.variance(values) / len(values) if len(values) > 1 else 0.0
        estimate.variance = max(binomial, seeds)
        return estimate


def sigma(*errors):
    """The standard deviation, in points, of a sum or difference of independent error rates (%): each
    an `Estimate` (seed noise of a mean over seeds) or a single run on `TEST_EXAMPLES` images
    (binomial noise)."""
    return math.sqrt(sum(getattr(e, "variance", 100**2 * (e / 100) * (1 - e / 100) / TEST_EXAMPLES) for e in errors))


def _decide(gaps):
    """(holds, beyond_noise) for a claim that every gap is negative, from [(gap, sigma)]. A contradiction
    counts as beyond noise when one offending gap exceeds 2 sigma; a confirmation when every gap does.
    The test set's noise is a floor: seed-to-seed spread is larger (see the tables' ± columns)."""
    holds = all(gap < 0 for gap, _ in gaps)
    if holds:
        return True, all(-gap > 2 * sigma for gap, sigma in gaps)
    return False, any(gap > 2 * sigma for gap, sigma in gaps)


def _pairwise(first, second, by_variant):
    """Evidence that `first` has a lower error than `second` at every K where both exist."""
    ks = sorted(set(by_variant.get(first, {})) & set(by_variant.get(second, {})))
    if not ks:
        return "–", None, None
    pairs = [(by_variant[first][k], by_variant[second][k]) for k in ks]
    evidence = ", ".join(f"K={k}: {a - b:+.2f}" for k, (a, b) in zip(ks, pairs))
    return (evidence, *_decide([(a - b, sigma(a, b)) for a, b in pairs]))


def _grows_with_k(variant, by_variant):
    points = sorted(by_variant.get(variant, {}).items())
    if len(points) < 2:
        return "–", None, None
    evidence = " → ".join(f"{error:.2f} (K={k})" for k, error in points)
    return (evidence, *_decide([(a[1] - b[1], sigma(a[1], b[1])) for a, b in zip(points, points[1:])]))


def _link_gain_grows_with_k(by_variant):
    ks = sorted(set(by_variant.get("backlink_l1", {})) & set(by_variant.get("gll_linear", {})))
    if len(ks) < 2:
        return "–", None, None
    gll, link = by_variant["gll_linear"], by_variant["backlink_l1"]
    evidence = " → ".join(f"{gll[k] - link[k]:+.2f} (K={k})" for k in ks)
    return (
        evidence,
        *_decide(
            [
                ((gll[a] - link[a]) - (gll[b] - link[b]), sigma(gll[a], link[a], gll[b], link[b]))
                for a, b in zip(ks, ks[1:])
            ]
        ),
    )


def _against_bp(variant, by_variant, sign):
    """Evidence that `variant`'s error is below (sign = 1), above (sign = -1) or within 2 points
    (sign = None) of BP's at every K."""
    bp = by_variant.get("bp", {}).get(1)
    local = sorted(by_variant.get(variant, {}).items())
    if bp is None or not local:
        return "–", None, None
    evidence = ", ".join(f"K={k}: {error - bp:+.2f}" for k, error in local)
    if sign is None:  # comparable: within 2 points either way, a margin wider than the test set's noise
        return evidence, all(abs(error - bp) <= 2.0 for _, error in local), True
    return (evidence, *_decide([(sign * (error - bp), sigma(error, bp)) for _, error in local]))


# (source, statement, the variants it compares, whether it needs several K, check).
CLAIMS = [
    (
        "BackLink Table 1",
        "GLL's error grows with K",
        ("gll_linear",),
        True,
        lambda errors: _grows_with_k("gll_linear", errors),
    ),
    (
        "BackLink Table 1",
        "BackLink (l = 1) has a lower error than GLL at every K (linear heads)",
        ("backlink_l1", "gll_linear"),
        False,
        lambda errors: _pairwise("backlink_l1", "gll_linear", errors),
    ),
    (
        "BackLink Table 1",
        "the gain of BackLink (l = 1) over GLL grows with K",
        ("backlink_l1", "gll_linear"),
        True,
        _link_gain_grows_with_k,
    ),
    (
        "BackLink §4.1",
        "a longer propagation lowers the error further (l = 2 below l = 1)",
        ("backlink_l2", "backlink_l1"),
        False,
        lambda errors: _pairwise("backlink_l2", "backlink_l1", errors),
    ),
    (
        "InfoPro (BackLink Table 2)",
        "InfoPro has a lower error than GLL with a conv head at every K",
        ("infopro", "gll_conv"),
        False,
        lambda errors: _pairwise("infopro", "gll_conv", errors),
    ),
    ("BackLink Table 2", "DGL's error grows with K", ("dgl",), True, lambda errors: _grows_with_k("dgl", errors)),
    (
        "BWBPF table",
        "BWBPF has a lower error than BP",
        ("bwbpf", "bp"),
        False,
        lambda errors: _against_bp("bwbpf", errors, 1),
    ),
    (
        "BWBPF table (SEDONA baselines)",
        "PredSim has a higher error than BP",
        ("predsim", "bp"),
        False,
        lambda errors: _against_bp("predsim", errors, -1),
    ),
    (
        "Associated Learning abstract",
        "Associated Learning (with Adam, as its reference) is comparable to BP (within 2 points)",
        ("associated_adam", "bp"),
        False,
        lambda errors: _against_bp("associated_adam", errors, None),
    ),
]


def declared_ks(protocol, architecture):
    """{variant: {K, ...}}: the cells a grid declares for one network."""
    ks = {}
    for cell in grid(protocol):
        if cell["architecture"] == architecture:
            ks.setdefault(cell["variant"], set()).add(cell["num_blocks"])
    return ks


def check_claims(errors, protocol, architecture):
    """[(source, statement, evidence, holds, beyond_noise)] for one network of one grid: the claims its
    declared cells can test (the Tiny-ImageNet grid, one K and four methods, tests two)."""
    declared = declared_ks(protocol, architecture)
    by_variant = {}
    for (p, a, variant, k), values in errors.items():
        if p == protocol and a == architecture:
            by_variant.setdefault(variant, {})[k] = mean_std(values)[0]
    return [
        (source, statement, *check(by_variant))
        for source, statement, variants, across_k, check in CLAIMS
        if all(len(declared.get(variant, ())) >= (2 if across_k and variant != "bp" else 1) for variant in variants)
    ]


def claims_table(errors, protocol, architecture):
    verdicts = {
        (True, True): "holds here",
        (True, False): "holds, within test-set noise",
        (False, True): "**contradicted here**",
        (False, False): "contradicted, within test-set noise",
    }
    lines = ["| source | claim | evidence (test error %, or differences in points) | verdict |", "|---|---|---|---|"]
    for source, statement, evidence, holds, beyond_noise in check_claims(errors, protocol, architecture):
        verdict = "not measured yet" if holds is None else verdicts[(holds, beyond_noise)]
        lines.append(f"| {source} | {statement} | {evidence} | {verdict} |")
    return lines


def mean_std(values):
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, statistics.stdev(values)


def format_errors(values):
    mean, std = mean_std(values)
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"
