"""A run's intervals, comparisons and verdicts on planted per-example values.

Oracles: the package's own aggregates on the same results (``FaithfulnessResult.f``,
``combine_circuits``, ``per_group``, ``routed_cross_faithfulness``, ``Convention.cpr`` /
``cmd``), recomputed per resample for CPR and CMD; planted wins, ties and losses that the
verdicts must recover; hand-computed grids, notes and sample sizes; the records' JSON round
trip through the package's schema rules.
"""

import numpy as np
import pytest

from auto_circuit_dcd.evaluation.faithfulness import MIB_GRID, FaithfulnessResult, ratio_of_means
from auto_circuit_dcd.metrics import combine_circuits
from auto_circuit_dcd.metrics.aggregate import per_group, routed_cross_faithfulness
from auto_circuit_dcd.metrics.convention import MIB_PARITY, make_convention
from auto_circuit_dcd.metrics.uncertainty import (
    Bootstrap,
    RunUncertainty,
    RunValues,
    Thresholds,
    run_uncertainty,
    sample_size_warning,
    size_grid,
    size_note,
)
from auto_circuit_dcd.metrics.uncertainty.values import area_replicates, curve_replicates
from auto_circuit_dcd.schema import from_jsonable, to_jsonable

N_EDGES = 81  # the MIB grid's four smallest sizes ask for no edge
KEPT = [0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
# planted faithfulness per kept size: own circuit on its group, the single circuit, the
# other cluster's circuit (cross), each K-random circuit
OWN = [0.5, 0.9, 0.95, 0.7, 0.95, 1.0]
SINGLE = [0.5, 0.4, 0.95, 0.95, 0.95, 1.0]
CROSS = [0.05, 0.05, 0.05, 0.05, 0.5, 1.0]
K_RANDOM = [0.5, 0.5, 0.5, 0.5, 0.9, 1.0]


def planted_run(n=60, seed=0, noise=0.15, rankings=("abs",)):
    """Two clusters of n/2 test examples (one example routed to noise, -1)."""
    rng = np.random.default_rng(seed)
    full, empty = rng.normal(4, 0.5, n), rng.normal(0, 0.5, n)
    gap = full - empty
    route = np.repeat([0, 1], n // 2)
    route[0] = -1
    group = np.repeat([0, 1], n // 2)  # the planted mechanism of each example
    fractions = np.array(MIB_GRID)
    requested = np.floor(np.round(fractions * N_EDGES, 9)).astype(np.int64)

    def mu(level_by_example):  # level [n, n_kept] -> mu at every grid size
        out = np.zeros((n, fractions.size))
        kept = level_by_example + rng.normal(0, noise, level_by_example.shape)
        kept[:, -1] = 1.0  # every circuit at 100% is the full model
        out[:, 4:] = empty[:, None] + kept * gap[:, None]
        out[:, :4] = empty[:, None]  # no edge: the empty circuit
        return out

    def own(c):
        return np.where((group == c)[:, None], OWN, CROSS)

    levels = {"single": np.tile(SINGLE, (n, 1)), "cluster_0": own(0), "cluster_1": own(1),
              "k_random_0": np.tile(K_RANDOM, (n, 1)), "k_random_1": np.tile(K_RANDOM, (n, 1))}
    out = {}
    for r in rankings:
        res = {}
        for name, lv in levels.items():
            m = mu(np.asarray(lv, float))
            counts = requested.copy()
            res[name] = FaithfulnessResult(
                fractions=fractions.copy(), requested_counts=requested, achieved_counts=counts,
                f=ratio_of_means(m, full, empty), mu_circuit=m, mu_full=full, mu_empty=empty,
                example_ids=[f"e{i}" for i in range(n)], n_edges=N_EDGES, ranking=r)
        out[r] = res
    kr_route = [f"k_random_{i % 2}" for i in range(n)]
    return out, route, kr_route


def uncertainty(by_ranking, route, kr_route, conv=None, **kw):
    return run_uncertainty(
        by_ranking, conv or make_convention("topn-prune", "abs"), single="single",
        clusters={0: "cluster_0", 1: "cluster_1"}, routing=route, p=kw.pop("p", 0.1),
        k_random=["k_random_0", "k_random_1"], k_random_routing=kr_route,
        boot=Bootstrap(n_resamples=1000, seed=0), test_fraction=0.2, **kw)


@pytest.fixture(scope="module")
def planted():
    by_ranking, route, kr_route = planted_run()
    return by_ranking, route, kr_route, uncertainty(by_ranking, route, kr_route)


def test_the_grid_leaves_out_sizes_that_ask_for_no_edge():
    g = size_grid(MIB_GRID, 81)
    assert g.fractions == KEPT and g.requested_counts == [1, 4, 8, 16, 40, 81]
    assert g.dropped == [0.001, 0.002, 0.005, 0.01]
    assert "0.1%, 0.2%, 0.5%, 1%" in g.reason and "floor(p * 81) = 0" in g.reason
    assert size_grid([0.05, 1.0], 81).reason == ""
    with pytest.raises(ValueError, match="no circuit sizes"):
        size_grid([0.5], 0)


def test_estimates_are_the_packages_own_aggregates(planted):
    by_ranking, route, kr_route, u = planted
    res, kept = by_ranking["abs"], slice(4, None)
    conv = make_convention("topn-prune", "abs")
    assert u.grid.fractions == KEPT
    np.testing.assert_allclose(u.single.faithfulness.estimate, res["single"].f[kept], rtol=1e-12)
    dcd = combine_circuits({0: res["cluster_0"], 1: res["cluster_1"]}, routing=route.tolist(),
                           fallback=0)
    known = combine_circuits({0: res["cluster_0"], 1: res["cluster_1"]},
                             routing=route.tolist(), exclude=(-1,))
    np.testing.assert_allclose(u.dcd_oracle.faithfulness.estimate, dcd.oracle_f[kept], rtol=1e-12)
    np.testing.assert_allclose(u.dcd_routed.faithfulness.estimate, dcd.routed_f[kept],
                               rtol=1e-12)
    np.testing.assert_allclose(u.dcd_routed_excluding_noise.faithfulness.estimate,
                               known.routed_f[kept], rtol=1e-12)
    kr = combine_circuits({n: res[n] for n in ("k_random_0", "k_random_1")}, routing=kr_route)
    np.testing.assert_allclose(u.k_random_routed.faithfulness.estimate, kr.routed_f[kept],
                               rtol=1e-12)
    single_on = per_group(res["single"], route, [0, 1])
    for c in u.clusters:
        own = per_group(res[f"cluster_{c.label}"], route, [c.label])[c.label]
        np.testing.assert_allclose(c.own.faithfulness.estimate, own.f[kept], rtol=1e-12)
        np.testing.assert_allclose(c.single_on_group.faithfulness.estimate,
                                   single_on[c.label].f[kept], rtol=1e-12)
        assert c.n_test == own.n_examples == c.own.n_examples
    cross = routed_cross_faithfulness({0: res["cluster_0"], 1: res["cluster_1"]}, route, 0.1)
    np.testing.assert_allclose(u.cross.estimate, cross.matrix, rtol=1e-12)
    assert u.cross.n_examples == [29, 30]  # example 0 is noise
    for curve, f in ((u.single, res["single"].f), (u.dcd_routed, dcd.routed_f)):
        assert curve.cpr.estimate == pytest.approx(conv.cpr((KEPT, f[kept])), rel=1e-12)
        assert curve.cmd.estimate == pytest.approx(conv.cmd((KEPT, f[kept])), rel=1e-12)


def test_cpr_and_cmd_per_resample_are_the_conventions_areas_and_hold_the_estimate(planted):
    by_ranking, route, _, u = planted
    conv = make_convention("topn-prune", "abs", "two-sided")
    values = RunValues.from_results(by_ranking, conv, size_grid(MIB_GRID, N_EDGES))
    w = values.weights
    boot = Bootstrap(n_resamples=200, seed=3)
    reps = curve_replicates(values.cpr, [values.cpr.circuit("single"),
                                         values.cpr.routed({0: "cluster_0", 1: "cluster_1"},
                                                           route, fallback=0)],
                            boot.weights(60))
    cpr_reps, cmd_reps = area_replicates(reps, w, "cpr"), area_replicates(reps, w, "two-sided")
    for b in range(0, 200, 23):
        for c in range(2):
            curve = (KEPT, reps.resampled[b, 6 * c:6 * (c + 1)])
            assert cpr_reps.resampled[b, c] == pytest.approx(conv.cpr(curve), rel=1e-12)
            assert cmd_reps.resampled[b, c] == pytest.approx(conv.cmd(curve), rel=1e-12)
    for curve in (u.single, u.dcd_oracle, u.dcd_routed, u.k_random_oracle, u.k_random_routed,
                  *[c.own for c in u.clusters]):
        for iv in (curve.cpr, curve.cmd):
            assert iv.low - 1e-12 <= iv.estimate <= iv.high + 1e-12
        band = curve.faithfulness  # (at 100% all three are 1, up to float rounding)
        assert all(lo - 1e-12 <= e <= hi + 1e-12
                   for lo, e, hi in zip(band.low, band.estimate, band.high))


def test_mib_parity_takes_cmd_from_the_abs_ranked_curves():
    by_ranking, route, kr_route = planted_run(rankings=("signed", "abs"))
    # make the abs-ranked single circuit worse than the signed one
    r = by_ranking["abs"]["single"]
    worse = r.mu_circuit.copy()
    worse[:, 4:-1] = r.mu_empty[:, None] + 0.3 * (r.mu_full - r.mu_empty)[:, None]
    by_ranking["abs"]["single"] = FaithfulnessResult(**{
        **r.__dict__, "mu_circuit": worse, "f": ratio_of_means(worse, r.mu_full, r.mu_empty)})
    u = uncertainty(by_ranking, route, kr_route, conv=MIB_PARITY)
    kept = slice(4, None)
    signed, abs_ = by_ranking["signed"]["single"].f[kept], by_ranking["abs"]["single"].f[kept]
    assert u.single.cpr.estimate == pytest.approx(MIB_PARITY.cpr((KEPT, signed)), rel=1e-12)
    assert u.single.cmd.estimate == pytest.approx(MIB_PARITY.cmd((KEPT, abs_)), rel=1e-12)
    np.testing.assert_allclose(u.single.faithfulness_cmd.estimate, abs_, rtol=1e-12)


def verdict(u, claim, size):
    return next(v for v in u.verdicts if v.claim == claim and v.size == size)


def test_planted_wins_ties_and_losses_are_the_verdicts(planted):
    _, _, _, u = planted
    # own 0.9 vs single 0.4 at 5%: a win in both clusters; 0.7 vs 0.95 at 20%: a loss;
    # equal means at 2% and 10%: not distinguishable; 100%: both the full model
    assert verdict(u, "own beats single", 0.05).outcome == "holds"
    assert verdict(u, "own beats single", 0.2).outcome == "does not hold"
    for size in (0.02, 0.1, 1.0):
        assert verdict(u, "own beats single", size).outcome == "not distinguishable", size
    comps = {(c.a, c.size): c for c in u.comparisons["own_vs_single"].comparisons}
    win, loss = comps[("cluster 0 own", 0.05)], comps[("cluster 1 own", 0.2)]
    assert win.mark == "better" and win.difference.low > 0 and win.p_adjusted < 0.05
    assert loss.mark == "worse" and loss.difference.high < 0
    assert win.difference.estimate == pytest.approx(win.a_value - win.b_value, rel=1e-9)
    assert win.edges_a == {"cluster_0": 4} and win.edges_b == {"single": 4} and win.note == ""
    # (b) at 10%: cross ~0.05 (< 0.2), single ~0.95 (>= 0.8) on both groups
    b = verdict(u, "separate mechanisms", 0.1)
    assert b.outcome == "holds" and len(b.evidence) == 4
    assert {e.status for e in b.evidence} == {"below", "above"}
    # (c) DCD routed (0.9 own) vs K-random routed (0.5) at 5%; 0.5 vs 0.5 at 2%
    assert verdict(u, "DCD beats K-random", 0.05).outcome == "holds"
    assert verdict(u, "DCD beats K-random", 0.02).outcome == "not distinguishable"
    assert all(v.outcome in ("holds", "does not hold", "not distinguishable")
               for v in u.verdicts)


def test_separate_mechanisms_fails_where_the_single_circuit_is_unfaithful():
    by_ranking, route, kr_route = planted_run()
    u = uncertainty(by_ranking, route, kr_route, p=0.05)  # single ~0.4 at 5%
    b = verdict(u, "separate mechanisms", 0.05)
    assert b.outcome == "does not hold"
    assert [e.status for e in b.evidence if e.what.startswith("single")] == ["below", "below"]


def test_noise_makes_a_verdict_not_distinguishable():
    by_ranking, route, kr_route = planted_run(n=12, noise=1.5, seed=4)
    u = uncertainty(by_ranking, route, kr_route)
    assert verdict(u, "own beats single", 0.05).outcome == "not distinguishable"
    assert {w.label for w in u.warnings} == {0, 1}  # 5 and 6 test examples


def test_unequal_sizes_are_said():
    assert size_note({"a": 4}, {"b": 4}) == ""
    assert size_note({"a": 4}, {"b": 3}) == "unequal sizes: a 4; b 3 edges"
    assert "empty circuit(s): b" in size_note({"a": 4}, {"b": 0})
    by_ranking, route, kr_route = planted_run()
    single = by_ranking["abs"]["single"]
    single.achieved_counts[5] = 0  # 5%: the single circuit lost every edge to pruning
    u = uncertainty(by_ranking, route, kr_route)
    c = next(c for c in u.comparisons["dcd_routed_vs_single"].comparisons if c.size == 0.05)
    assert c.edges_b == {"single": 0} and "empty circuit(s): single" in c.note
    assert "5%" in next(c for c in u.comparisons["dcd_routed_vs_single"].comparisons
                        if c.size is None).note
    assert "single" in verdict(u, "own beats single", 0.05).note


def test_sample_size_warning_by_hand():
    t = Thresholds(min_examples=10, target_half_width=0.1)
    assert sample_size_warning(0, 30, 0.08, 60, t, 0.2) is None
    # 30 examples, half-width 0.2: 30 * (0.2 / 0.1)^2 = 120 needed; share 30/60, test 0.2
    w = sample_size_warning(0, 30, 0.2, 60, t, 0.2)
    assert (w.n_needed, w.prompts_needed) == (120, 1200) and "1200 prompts" in w.message
    w = sample_size_warning(1, 4, 0.05, 40, t, 0.25)  # narrow but too few: the floor
    assert (w.n_needed, w.prompts_needed) == (10, 400) and "fewer than 10" in w.message
    w = sample_size_warning(2, 0, float("nan"), 40, t, 0.25)
    assert w.prompts_needed is None and w.n_needed == 10
    with pytest.raises(ValueError, match="below"):
        Thresholds(faithful=0.2, low=0.5)


def test_records_round_trip_through_the_reports_json_rules(planted):
    _, _, _, u = planted
    data = to_jsonable(u)
    assert from_jsonable(RunUncertainty, data, "uncertainty") == u
    assert data["settings"]["interval"] == "expanded-percentile"


def test_a_recomputation_from_the_saved_per_example_file_gives_the_same_record(tmp_path):
    from auto_circuit_dcd.evaluation.per_example import (
        load_per_example,
        load_routings,
        save_per_example,
    )

    by_ranking, route, kr_route = planted_run(rankings=("signed", "abs"))
    before = uncertainty(by_ranking, route, kr_route, conv=MIB_PARITY)
    save_per_example(tmp_path / "pe", by_ranking,
                     routings={"dcd": route.tolist(), "k_random": kr_route})
    routings = load_routings(tmp_path / "pe")
    after = uncertainty(load_per_example(tmp_path / "pe"), np.asarray(routings["dcd"]),
                        routings["k_random"], conv=MIB_PARITY)
    assert to_jsonable(after) == to_jsonable(before)


def test_bad_inputs_are_refused_before_any_resampling_and_k_random_is_optional():
    by_ranking, route, kr_route = planted_run()
    with pytest.raises(ValueError, match="ask for fewer than one"):
        uncertainty(by_ranking, route, kr_route, p=0.001)
    with pytest.raises(ValueError, match="59 labels for 60"):
        uncertainty(by_ranking, route[1:], kr_route)
    u = run_uncertainty(by_ranking, make_convention("topn-prune", "abs"), single="single",
                        clusters={0: "cluster_0", 1: "cluster_1"}, routing=route, p=0.1,
                        boot=Bootstrap(n_resamples=200))
    assert u.k_random_routed is None and u.k_random_oracle is None
    assert set(u.comparisons) == {"own_vs_single", "dcd_routed_vs_single"}
    assert {v.claim for v in u.verdicts} == {"own beats single", "separate mechanisms"}
