"""Decorated methods, staticmethods and classmethods.

``obj.method.map(items)`` runs ``obj.method(item)`` for every item in the workers: the
instance travels along (pickled once per job), so its attributes are read there, while
changes a task makes to it stay in the worker.

Run it with ``python examples/methods.py``.
"""

from __future__ import annotations

from parmap import parallel


class Polynomial:
    """``a0 + a1 x + a2 x**2 + ...``"""

    def __init__(self, *coefficients: float) -> None:
        self.coefficients = coefficients

    @parallel(workers=2)
    def evaluate(self, x: float) -> float:
        """The value at ``x`` (Horner's scheme)."""
        result = 0.0
        for coefficient in reversed(self.coefficients):
            result = result * x + coefficient
        return result

    @parallel(workers=2)  # @parallel goes above @staticmethod / @classmethod
    @staticmethod
    def degree_of(coefficients: tuple[float, ...]) -> int:
        """The degree of the polynomial with these coefficients."""
        return max((i for i, c in enumerate(coefficients) if c), default=0)

    @parallel(workers=2)
    @classmethod
    def from_roots(cls, roots: tuple[float, ...]) -> Polynomial:
        """The monic polynomial with these roots."""
        coefficients = [1.0]
        for root in roots:
            shifted = [0.0, *coefficients]
            scaled = [-root * c for c in coefficients] + [0.0]
            coefficients = [a + b for a, b in zip(shifted, scaled)]
        return cls(*coefficients)

    def __repr__(self) -> str:
        return f"Polynomial{self.coefficients}"


def main() -> None:
    square_plus_one = Polynomial(1, 0, 1)
    print(square_plus_one.evaluate(3))  # a plain call: 10.0
    print(square_plus_one.evaluate.map(range(6)))  # the bound method, in the workers
    print(Polynomial.degree_of.map([(1, 2, 3), (0, 1), (5,)]))
    products = Polynomial.from_roots.map([(1, 2), (0, 3, -3)])
    print(products)
    print([p.evaluate.map([1, 2, 3]) for p in products])


if __name__ == "__main__":
    main()
