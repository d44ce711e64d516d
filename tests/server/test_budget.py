"""The byte budget: reservations at MAIL, growth in DATA, release at the end."""

from __future__ import annotations

from edgeward.server.budget import ByteBudget


def test_a_reservation_that_does_not_fit_is_refused_and_counted() -> None:
    budget = ByteBudget(1000)
    first = budget.reserve(800)
    assert first is not None and budget.in_use == 800
    assert budget.reserve(300) is None
    assert budget.refused == 1
    first.release()
    assert budget.in_use == 0
    assert budget.reserve(1000) is not None


def test_bytes_past_the_reservation_grow_it_until_the_budget_is_spent() -> None:
    budget = ByteBudget(1000)
    held = budget.reserve(100)
    assert held is not None
    held.cover(50)  # fewer than declared: the reservation stays as it is
    assert held.size == 100 and not held.exceeded
    held.cover(600)
    assert held.size == 600 and budget.in_use == 600
    held.cover(1200)
    assert held.exceeded and budget.in_use == 600
    held.release()
    held.release()  # a second release gives nothing back twice
    assert budget.in_use == 0


def test_zero_means_no_cap() -> None:
    budget = ByteBudget(0)
    assert budget.reserve(10**12) is not None
