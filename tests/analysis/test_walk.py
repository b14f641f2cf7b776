"""The pure walk on known loss surfaces: diagonal valleys, the ring before certifying, seed noise
and confirmation seeds, and the warm start that follows the smaller sizes' trend."""

from __future__ import annotations

import math

import pytest

from scalegrid.analysis.walk import CERTIFIED, CONFIRMING, MOVED, Neighbourhood, local_search, warm_start

POWERS = [2.0**k for k in range(-12, 1)]  # a ladder of ratio 2: 1/4096 ... 1
EPOCHS = [1, 2, 4, 8, 16, 32, 64, 128]


def valley(lr_per_epoch_step: float, optimum_epochs: int):
    """Loss on a valley whose floor is log2 lr + s log2 epochs = -6 (more epochs want a smaller lr:
    s ladder steps of lr per step of epochs), falling gently along the floor towards `optimum_epochs`."""
    def loss(p):
        floor = math.log2(p["lr"]) + lr_per_epoch_step * math.log2(p["epochs"]) + 6
        return 1.0 + 10 * floor**2 + 0.01 * (math.log2(p["epochs"]) - math.log2(optimum_epochs)) ** 2

    return loss


def walk(loss, start, **neighbourhood):
    return local_search({"epochs": EPOCHS, "lr": POWERS}, start, loss, neighbourhood=Neighbourhood(**neighbourhood))


def grid_optimum(loss) -> dict:
    grid = {(e, lr): loss({"epochs": e, "lr": lr}) for e in EPOCHS for lr in POWERS}
    e, lr = min(grid, key=grid.get)
    return {"epochs": e, "lr": lr}


def test_a_diagonal_valley_stops_one_axis_at_a_time_and_the_coupled_walk_finds_its_true_optimum():
    loss = valley(1.0, optimum_epochs=16)  # floor: lr x epochs = 1/64; lowest at (16, 1/1024)
    start = {"epochs": 2, "lr": 2.0**-7}  # on the floor, far from its lowest point
    assert grid_optimum(loss) == {"epochs": 16, "lr": 2.0**-10}
    alone = walk(loss, start)
    coupled = walk(loss, start, coupled=(("lr", "epochs"),))
    assert alone.state == CERTIFIED and alone.centre == start  # every axis step leaves the floor: stuck where it began
    assert coupled.state == CERTIFIED and coupled.centre == grid_optimum(loss)
    assert coupled.last.neighbourhood == "each axis ±1 and the lr × epochs diagonals (8 neighbours)"
    diagonals = [n for n in coupled.steps[0].neighbours if len(n.move) == 2]
    assert {n.label for n in diagonals} == {"epochs- lr-", "epochs- lr+", "epochs+ lr-", "epochs+ lr+"}


def test_a_valley_steeper_than_the_diagonal_needs_the_ring_two_steps_out_before_certifying():
    loss = valley(0.5, optimum_epochs=128)  # the floor moves one lr step per two epoch steps
    start = {"epochs": 4, "lr": 2.0**-7}  # on the floor: -7 + 0.5 * 2 + 6 = 0
    grid = {(e, lr): loss({"epochs": e, "lr": lr}) for e in EPOCHS for lr in POWERS}
    best = min(grid, key=grid.get)
    one = walk(loss, start, coupled=(("lr", "epochs"),))
    two = walk(loss, start, coupled=(("lr", "epochs"),), certify_radius=2)
    assert one.centre == start  # the diagonals leave the floor too
    assert (two.centre["epochs"], two.centre["lr"]) == best
    assert "ring two steps out on lr × epochs" in two.last.neighbourhood
    assert len(two.last.neighbours) == 8 + 16


def test_the_full_neighbourhood_is_every_point_around_the_centre():
    path = local_search({"a": [1, 2, 3], "b": [1, 2, 3], "c": [1, 2, 3]}, {"a": 2, "b": 2, "c": 2},
                        lambda p: sum(p.values()), neighbourhood=Neighbourhood(full=True))
    assert len(path.steps[0].neighbours) == 26 and path.centre == {"a": 1, "b": 1, "c": 1}


def test_a_lucky_first_seed_is_confirmed_and_a_neighbour_within_the_noise_does_not_move_it():
    seeds = {1: (1.05,), 2: (1.00, 1.10, 1.12), 4: (1.09,), 8: (1.30,)}  # epochs -> its seeds' losses
    known = {e: s[:1] for e, s in seeds.items()}  # at first, one seed each
    ladders, extra = {"epochs": [1, 2, 4, 8]}, Neighbourhood(confirm_seeds=2)
    first = local_search(ladders, {"epochs": 4}, lambda p: known[p["epochs"]], neighbourhood=extra)
    assert first.state == CONFIRMING and first.confirming == {"epochs": 2} and first.confirmed == ({"epochs": 2},)
    known[2] = seeds[2]  # its two extra seeds ran: mean 1.073, above its neighbour's 1.05 but within the noise
    second = local_search(ladders, {"epochs": 4}, lambda p: known[p["epochs"]], neighbourhood=extra)
    assert second.state == CERTIFIED and second.centre == {"epochs": 2}
    last = second.last
    assert last.loss == pytest.approx(sum(seeds[2]) / 3) and last.seeds == seeds[2]
    assert last.noise == pytest.approx(0.06429100507, rel=1e-9)  # the sd of (1.00, 1.10, 1.12)
    assert [n.status for n in last.neighbours] == ["within_noise", "no_worse"]  # 1.05: within 2 standard errors
    plain = local_search(ladders, {"epochs": 4}, lambda p: known[p["epochs"]][0])  # seed 0 alone: chases it
    assert plain.centre == {"epochs": 2} and plain.last.loss == 1.00


def test_a_neighbour_beyond_the_seed_noise_moves_a_confirmed_centre_on():
    known = {1: (1.00, 1.01, 1.02), 2: (0.80,), 4: (0.9,)}
    path = local_search({"epochs": [1, 2, 4]}, {"epochs": 1}, lambda p: known[p["epochs"]],
                        neighbourhood=Neighbourhood(confirm_seeds=2))
    assert path.steps[0].outcome == MOVED and path.state == CONFIRMING and path.confirming == {"epochs": 2}


LR = [0.4 / 2**k for k in range(9)]  # 0.4 ... 0.0016
WD = [0.025 * 2**k for k in range(9)]  # 0.025 ... 6.4


def test_a_warm_start_extrapolates_lr_and_weight_decay_along_the_smaller_sizes_trend():
    optima = [(1e6, {"epochs": 8, "lr": 0.1, "weight_decay": 0.1}), (4e6, {"epochs": 4, "lr": 0.05, "weight_decay": 0.2})]
    ladders = {"epochs": [2, 4, 8], "lr": LR, "weight_decay": WD}
    assert warm_start(ladders, 1.6e7, optima) == {"epochs": 4, "lr": 0.025, "weight_decay": 0.4}  # epochs: copied
    assert warm_start(ladders, 6.4e7, optima) == {"epochs": 4, "lr": 0.0125, "weight_decay": 0.8}  # two steps on
    assert warm_start(ladders, 1.6e7, optima[1:]) == optima[1][1]  # one smaller optimum: no trend, copied
    zero = [(n, {**p, "weight_decay": 0.0}) for n, p in optima]
    assert warm_start(ladders, 1.6e7, zero)["weight_decay"] == 0.0  # no trend in log through 0
    assert warm_start(ladders, 1e12, optima)["lr"] == LR[-1]  # beyond the ladder: its end


def test_following_the_trend_costs_fewer_trials_per_cell_than_copying_the_last_optimum():
    """Optimal lr falls 4x and weight decay grows 4x per 4x in size (two ladder steps each)."""
    sizes = [1e6, 4e6, 1.6e7, 6.4e7]

    def loss_at(n):
        lr_star, wd_star = 0.1 * (n / 1e6) ** -1.0, 0.1 * (n / 1e6) ** 1.0
        return lambda p: 1 + (math.log2(p["lr"] / lr_star)) ** 2 + (math.log2(p["weight_decay"] / wd_star)) ** 2

    def chain(follow: bool) -> list[int]:
        ladders, optima, trials = {"lr": LR, "weight_decay": WD}, [], []
        for n in sizes:
            start = {"lr": 0.1, "weight_decay": 0.1} if not optima else (
                warm_start(ladders, n, optima) if follow else dict(optima[-1][1]))
            path = local_search(ladders, start, loss_at(n))
            assert path.last.loss == pytest.approx(1.0)  # both find the optimum
            optima.append((n, path.centre))
            trials.append(len(path.points()))
        return trials

    copied, followed = chain(False), chain(True)
    assert followed[:2] == copied[:2]  # no trend before two optima
    assert all(f < c for f, c in zip(followed[2:], copied[2:])), (followed, copied)
    assert followed[2:] == [5, 3]  # started at the optimum: the centre and its neighbours (the last at two ladders' ends)
