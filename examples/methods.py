"""Decorated methods, staticmethods and classmethods.

`obj.method.map(items)` runs `obj.method(item)` for every item in the workers: the
instance travels along (pickled once per job), so its attributes are read there,
while changes a task makes to it stay in the worker.

Run it with `python examples/methods.py`.
"""

from __future__ import annotations

from parmap import parallel


class Polynomial:
    """`a0 + a1 x + a2 x**2 + ...`"""

    VARIABLE = "x"

    def __init__(self, *coefficients: float) -> None:
        self.coefficients = coefficients

    @parallel(workers=2)
    def evaluate(self, x: float) -> float:
        """The value at `x` (Horner's scheme)."""
        result = 0.0
        for coefficient in reversed(self.coefficients):
            result = result * x + coefficient
        return result

    @parallel(workers=2)  # @parallel goes above @staticmethod and @classmethod
    @staticmethod
    def degree_of(coefficients: tuple[float, ...]) -> int:
        """The degree of the polynomial with these coefficients."""
        return max((i for i, c in enumerate(coefficients) if c), default=0)

    @parallel(workers=2)
    @classmethod
    def render(cls, coefficients: tuple[float, ...]) -> str:
        """The polynomial as text, in the class's variable."""
        x = cls.VARIABLE
        terms = [
            f"{c:g}" + (f"{x}^{i}" if i > 1 else x if i else "")
            for i, c in enumerate(coefficients)
            if c
        ]
        return " + ".join(terms) or "0"


def main() -> None:
    square_plus_one = Polynomial(1, 0, 1)
    print("plain call:", square_plus_one.evaluate(3))  # runs here: 10.0
    # Runs in the workers.
    print("bound method:", square_plus_one.evaluate.map(range(6)))
    print("staticmethod:", Polynomial.degree_of.map([(1, 2, 3), (0, 1), (5,)]))
    print("classmethod:", Polynomial.render.map([(1, 0, 1), (0, 2), (4, 0, 0, 1)]))


if __name__ == "__main__":
    main()
