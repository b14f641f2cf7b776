"""The fitting core: Huber, analytic gradients, the batched L-BFGS, bootstrap, input checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalegrid.analysis import FitInputError, Objective, fit_power_law, huber, power_law
from scalegrid.analysis.data_constrained import MUENNIGHOFF2023_BASE, DataConstrainedModel, Repetition
from scalegrid.analysis.lbfgs import huber_grad, lbfgs_batched
from scalegrid.analysis.laws import PowerLawModel


def test_huber_is_quadratic_inside_delta_and_linear_outside():
    r = np.array([-0.5, -1e-3, 0.0, 5e-4, 2e-3])
    expected = [1e-3 * (0.5 - 5e-4), 0.5e-6, 0.0, 0.125e-6, 1e-3 * (2e-3 - 5e-4)]
    np.testing.assert_allclose(huber(r, 1e-3), expected, rtol=1e-12)
    np.testing.assert_allclose(huber_grad(r, 1e-3), [-1e-3, -1e-3, 0, 5e-4, 1e-3])


def _finite_difference(fun, theta, step=1e-6):
    rows = np.arange(theta.shape[0])
    grad = np.empty_like(theta)
    for j in range(theta.shape[1]):
        up, down = theta.copy(), theta.copy()
        up[:, j] += step
        down[:, j] -= step
        grad[:, j] = (fun(up, rows)[0] - fun(down, rows)[0]) / (2 * step)
    return grad


@pytest.mark.parametrize("kind", ["huber", "lsq"])
def test_power_law_gradients_are_analytic_and_right(kind):
    rng = np.random.default_rng(1)
    x1, x2 = np.geomspace(1e7, 1e10, 20), rng.permutation(np.geomspace(1e9, 1e12, 20))
    y = 1.7 + 400 * x1**-0.34 + 2000 * x2**-0.28
    y = y * np.exp(rng.normal(0, 0.01, y.size))
    model = PowerLawModel.from_columns([x1, x2])
    fun = Objective(kind=kind, delta=1e-3).batch_fun(model, y)
    theta = model.default_starts(y)[::17]
    _, grad = fun(theta, np.arange(theta.shape[0]))
    np.testing.assert_allclose(grad, _finite_difference(fun, theta), rtol=1e-5, atol=1e-9)


def test_data_constrained_gradients_are_analytic_and_right():
    n = np.array([1e8, 5e8, 2e9, 2e9, 8e9])
    d = np.array([1e10, 4e10, 4e10, 2e11, 1e11])
    u = np.array([1e9, 4e10, 4e9, 1e10, 2e10])
    y = np.array([3.1, 2.8, 2.7, 2.5, 2.4])
    model = DataConstrainedModel(rep=Repetition.of(n, d, u, MUENNIGHOFF2023_BASE), base=MUENNIGHOFF2023_BASE)
    fun = Objective().batch_fun(model, y)
    theta = np.array([[15.0, 5.0], [3.0, 30.0], [0.5, 0.7]])
    _, grad = fun(theta, np.arange(3))
    np.testing.assert_allclose(grad, _finite_difference(fun, theta), rtol=1e-5, atol=1e-12)


def test_batched_lbfgs_solves_many_rosenbrocks_at_once():
    def rosenbrock(x, rows):
        a, b = x[:, 0], x[:, 1]
        f = (1 - a) ** 2 + 100 * (b - a * a) ** 2
        g = np.column_stack([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])
        return f, g

    starts = np.array([[-1.2, 1.0], [0.0, 0.0], [2.0, -1.0], [-3.0, 5.0]])
    res = lbfgs_batched(rosenbrock, starts, gtol=1e-8, ftol=0.0)
    assert res.converged.all()
    np.testing.assert_allclose(res.x, 1.0, atol=1e-5)


def test_points_outside_the_domain_are_rejected_not_returned():
    # f is +inf for x < 0: the line search must step back instead of accepting the jump
    def fun(x, rows):
        f = np.where(x[:, 0] >= 0, (x[:, 0] - 0.01) ** 2, np.inf)
        return f, np.where(np.isfinite(f), 2 * (x[:, 0] - 0.01), 0.0)[:, None]

    res = lbfgs_batched(fun, np.array([[5.0]]), gtol=1e-10, ftol=0.0)
    assert res.x[0, 0] == pytest.approx(0.01, abs=1e-6)


def _table(n=12, seed=0):
    rng = np.random.default_rng(seed)
    x = np.geomspace(1e6, 1e9, n)
    return pd.DataFrame({"x": x, "y": power_law(x, 400.0, 0.3, 1.8) * np.exp(rng.normal(0, 0.002, n))})


def test_bootstrap_is_reproducible_from_its_seed():
    df = _table()
    a = fit_power_law(df, "x", "y", bootstrap=100, seed=3)
    b = fit_power_law(df, "x", "y", bootstrap=100, seed=3)
    c = fit_power_law(df, "x", "y", bootstrap=100, seed=4)
    assert a.ci == b.ci
    assert a.ci != c.ci
    assert a.samples.shape == (100, 3) and a.n_bootstrap_failed == 0
    assert a.ci["C"][0] < a.params["C"] < a.ci["C"][1]


def test_fit_reports_objective_points_and_convergence():
    res = fit_power_law(_table(), "x", "y", bootstrap=0)
    assert res.n_points == 12 and res.converged and res.ci == {}
    assert res.objective == pytest.approx(
        huber(np.log(power_law(_table().x, **res.params)) - np.log(_table().y), 1e-3).sum(), rel=1e-9
    )
    assert set(res.to_dict()) == {"params", "ci", "objective", "n_points", "n_params", "converged", "degenerate",
                                  "flags", "zero_width"}
    assert res.n_params == 3 and not res.degenerate


def test_bad_input_names_the_problem():
    df = _table()
    with pytest.raises(FitInputError, match="missing column 'loss'"):
        fit_power_law(df, "x", "loss")
    with pytest.raises(FitInputError, match="'x' has 1 values <= 0"):
        fit_power_law(df.assign(x=np.r_[0.0, df.x[1:]]), "x", "y")
    with pytest.raises(FitInputError, match="3 points cannot identify 3 free parameters"):
        fit_power_law(df.head(3), "x", "y")
    with pytest.raises(FitInputError, match="non-numeric"):
        fit_power_law(df.assign(y=["a"] * len(df)), "x", "y")
    with pytest.raises(FitInputError, match="objective must be"):
        Objective(kind="l1")


def test_worked_example_in_the_module_docstring_runs():
    import doctest

    from scalegrid.analysis import least_squares

    assert doctest.testmod(least_squares).failed == 0
