"""Safe math-expression potentials ``U(x)`` or ``U(x, y)`` with exact symbolic derivatives.

A potential typed by a user (the ``escape`` command, experiment configs) is parsed with :mod:`ast`
into a small expression tree. Only numbers, the variables, the constants ``pi`` and ``e``, the
operators ``+ - * / **`` and the functions in :data:`FUNCTIONS` are accepted; anything else (names,
attribute access, subscripts, keywords, lambdas, comprehensions...) is rejected with a ``ValueError``
before any evaluation, so no user code ever runs. Derivatives are obtained by *symbolic*
differentiation of that tree (chain, product, quotient and power rules), not by finite differences,
so gradients and Hessians are exact up to floating-point rounding.

Conventions: a one-dimensional potential takes and returns arrays of any shape (``energy(x)``,
``gradient(x)`` and ``hessian(x)`` all have the shape of ``x``); a ``d``-dimensional one takes points
of shape ``(..., d)`` and returns ``(...)``, ``(..., d)`` and ``(..., d, d)``.

>>> U = parse_potential("(x**2 - 1)**2")
>>> float(U.energy(0.0)), float(U.gradient(0.5)), float(U.hessian(1.0))
(1.0, -1.5, 8.0)
>>> parse_potential("__import__('os')")  # doctest: +NORMALIZE_WHITESPACE
Traceback (most recent call last):
...
ValueError: potential='__import__(...)' is invalid: function '__import__' is not allowed
(allowed: abs, cos, cosh, exp, log, sin, sinh, sqrt, tan, tanh)
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

FUNCTIONS: tuple[str, ...] = ("abs", "cos", "cosh", "exp", "log", "sin", "sinh", "sqrt", "tan", "tanh")
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}
MAX_EXPRESSION_LENGTH = 2000


# --- expression tree -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Node:
    kind: str  # "const", "var", "add", "sub", "mul", "div", "pow", "neg", or a function name
    args: tuple[_Node, ...] = ()
    value: float = 0.0
    name: str = ""


def _const(v: float) -> _Node:
    return _Node("const", value=float(v))


_ZERO, _ONE = _const(0.0), _const(1.0)


def _is_const(n: _Node, v: float | None = None) -> bool:
    return n.kind == "const" and (v is None or n.value == v)


# Light simplification keeps derivative trees small (0 * f, 1 * f, f + 0, f ** 1 ...).
def _add(a: _Node, b: _Node) -> _Node:
    if _is_const(a, 0.0):
        return b
    if _is_const(b, 0.0):
        return a
    if _is_const(a) and _is_const(b):
        return _const(a.value + b.value)
    return _Node("add", (a, b))


def _sub(a: _Node, b: _Node) -> _Node:
    if _is_const(b, 0.0):
        return a
    if _is_const(a, 0.0):
        return _neg(b)
    if _is_const(a) and _is_const(b):
        return _const(a.value - b.value)
    return _Node("sub", (a, b))


def _mul(a: _Node, b: _Node) -> _Node:
    if _is_const(a, 0.0) or _is_const(b, 0.0):
        return _ZERO
    if _is_const(a, 1.0):
        return b
    if _is_const(b, 1.0):
        return a
    if _is_const(a) and _is_const(b):
        return _const(a.value * b.value)
    return _Node("mul", (a, b))


def _div(a: _Node, b: _Node) -> _Node:
    if _is_const(a, 0.0):
        return _ZERO
    if _is_const(b, 1.0):
        return a
    return _Node("div", (a, b))


def _neg(a: _Node) -> _Node:
    if _is_const(a):
        return _const(-a.value)
    if a.kind == "neg":
        return a.args[0]
    return _Node("neg", (a,))


def _pow(a: _Node, b: _Node) -> _Node:
    if _is_const(b, 0.0):
        return _ONE
    if _is_const(b, 1.0):
        return a
    return _Node("pow", (a, b))


def _fn(name: str, a: _Node) -> _Node:
    return _Node(name, (a,))


def _derivative(n: _Node, var: str) -> _Node:
    k = n.kind
    if k == "const":
        return _ZERO
    if k == "var":
        return _ONE if n.name == var else _ZERO
    if k in ("add", "sub"):
        da, db = (_derivative(a, var) for a in n.args)
        return _add(da, db) if k == "add" else _sub(da, db)
    if k == "neg":
        return _neg(_derivative(n.args[0], var))
    if k == "mul":
        a, b = n.args
        return _add(_mul(_derivative(a, var), b), _mul(a, _derivative(b, var)))
    if k == "div":
        a, b = n.args
        return _div(_sub(_mul(_derivative(a, var), b), _mul(a, _derivative(b, var))), _pow(b, _const(2.0)))
    if k == "pow":
        a, b = n.args
        da, db = _derivative(a, var), _derivative(b, var)
        if _is_const(db, 0.0):  # power rule: b a^(b-1) a'
            return _mul(_mul(b, _pow(a, _sub(b, _ONE))), da)
        # general case d(a^b) = a^b (b' log a + b a'/a)
        return _mul(n, _add(_mul(db, _fn("log", a)), _div(_mul(b, da), a)))
    (a,) = n.args
    da = _derivative(a, var)
    if _is_const(da, 0.0):
        return _ZERO
    outer = {
        "exp": lambda: _fn("exp", a),
        "log": lambda: _div(_ONE, a),
        "sin": lambda: _fn("cos", a),
        "cos": lambda: _neg(_fn("sin", a)),
        "tan": lambda: _add(_ONE, _pow(_fn("tan", a), _const(2.0))),
        "sinh": lambda: _fn("cosh", a),
        "cosh": lambda: _fn("sinh", a),
        "tanh": lambda: _sub(_ONE, _pow(_fn("tanh", a), _const(2.0))),
        "sqrt": lambda: _div(_const(0.5), _fn("sqrt", a)),
        "abs": lambda: _fn("sign", a),
        "sign": lambda: _ZERO,
    }[k]()
    return _mul(outer, da)


_UFUNCS = {"exp": np.exp, "log": np.log, "sin": np.sin, "cos": np.cos, "tan": np.tan, "sinh": np.sinh,
           "cosh": np.cosh, "tanh": np.tanh, "sqrt": np.sqrt, "abs": np.abs, "sign": np.sign}


def _evaluate(n: _Node, env: dict[str, NDArray[np.float64]]) -> NDArray[np.float64] | float:
    k = n.kind
    if k == "const":
        return n.value
    if k == "var":
        return env[n.name]
    args = [_evaluate(a, env) for a in n.args]
    if k == "add":
        return args[0] + args[1]
    if k == "sub":
        return args[0] - args[1]
    if k == "mul":
        return args[0] * args[1]
    if k == "div":
        return args[0] / args[1]
    if k == "pow":
        base, expo = args
        if _is_const(n.args[1]) and float(n.args[1].value).is_integer() and abs(n.args[1].value) <= 64:
            # Integer powers of negative numbers are real: keep them exact (np.power with an int exponent).
            return np.power(np.asarray(base, dtype=np.float64), int(n.args[1].value))
        return np.power(base, expo)
    if k == "neg":
        return -args[0]
    return _UFUNCS[k](args[0])


# Scalar Python source of a tree, for compilers (numba) that cannot walk the tree themselves. Only node
# kinds produced by the parser reach here, so the text contains numbers, variable names, operators and
# ``math.`` functions only: no user text is ever copied into it.
_SCALAR_FUNCTIONS = {"exp": "math.exp", "log": "math.log", "sin": "math.sin", "cos": "math.cos",
                     "tan": "math.tan", "sinh": "math.sinh", "cosh": "math.cosh", "tanh": "math.tanh",
                     "sqrt": "math.sqrt", "abs": "abs", "sign": "_sign"}
_SCALAR_OPERATORS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def _source(n: _Node) -> str:
    k = n.kind
    if k == "const":
        return repr(float(n.value))
    if k == "var":
        return n.name
    if k in _SCALAR_OPERATORS:
        return f"({_source(n.args[0])} {_SCALAR_OPERATORS[k]} {_source(n.args[1])})"
    if k == "neg":
        return f"(-{_source(n.args[0])})"
    if k == "pow":
        base, expo = n.args
        if _is_const(expo) and float(expo.value).is_integer() and abs(expo.value) <= 64:
            # An integer exponent keeps negative bases real, as in _evaluate.
            return f"({_source(base)} ** {int(expo.value)})"
        return f"({_source(base)} ** {_source(expo)})"
    return f"{_SCALAR_FUNCTIONS[k]}({_source(n.args[0])})"


# --- parsing ---------------------------------------------------------------------------------------
_BINOPS = {ast.Add: _add, ast.Sub: _sub, ast.Mult: _mul, ast.Div: _div, ast.Pow: _pow}


def _invalid(expression: str, why: str) -> ValueError:
    shown = expression if len(expression) <= 40 else expression[:37] + "..."
    if "(" in shown and "__" in shown:
        shown = shown.split("(")[0] + "(...)"
    return ValueError(f"potential={shown!r} is invalid: {why}")


def _convert(node: ast.AST, variables: tuple[str, ...], expression: str) -> _Node:
    if isinstance(node, ast.Expression):
        return _convert(node.body, variables, expression)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise _invalid(expression, f"constant {node.value!r} is not a real number")
        return _const(float(node.value))
    if isinstance(node, ast.Name):
        if node.id in variables:
            return _Node("var", name=node.id)
        if node.id in CONSTANTS:
            return _const(CONSTANTS[node.id])
        raise _invalid(expression, f"unknown name {node.id!r} (variables: {', '.join(variables)}; "
                                   f"constants: {', '.join(CONSTANTS)})")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_convert(node.left, variables, expression),
                                      _convert(node.right, variables, expression))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        inner = _convert(node.operand, variables, expression)
        return inner if isinstance(node.op, ast.UAdd) else _neg(inner)
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise _invalid(expression, "only plain function calls such as exp(x) are allowed")
        if node.func.id not in FUNCTIONS:
            raise _invalid(expression,
                           f"function {node.func.id!r} is not allowed (allowed: {', '.join(FUNCTIONS)})")
        if node.keywords or len(node.args) != 1:
            raise _invalid(expression, f"function {node.func.id!r} takes exactly one positional argument")
        return _fn(node.func.id, _convert(node.args[0], variables, expression))
    if isinstance(node, ast.Attribute):
        raise _invalid(expression, "attribute access is not allowed")
    what = type(node).__name__
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        what = type(node.op).__name__
    raise _invalid(expression, f"{what} is not allowed; use numbers, {', '.join(variables)}, pi, e, "
                               f"+ - * / ** and {', '.join(FUNCTIONS)}")


@dataclass(frozen=True)
class Potential:
    """A parsed potential with exact first and second derivatives.

    Build with :func:`parse_potential`. ``dimension`` is the number of variables.
    """

    expression: str
    variables: tuple[str, ...]
    _tree: _Node = field(repr=False, compare=False)
    _grad: tuple[_Node, ...] = field(repr=False, compare=False)
    _hess: tuple[tuple[_Node, ...], ...] = field(repr=False, compare=False)

    @property
    def dimension(self) -> int:
        """Number of coordinates."""
        return len(self.variables)

    def _env(self, q: ArrayLike) -> tuple[dict[str, NDArray[np.float64]], tuple[int, ...]]:
        q = np.asarray(q, dtype=np.float64)
        if self.dimension == 1:
            return {self.variables[0]: q}, q.shape
        if q.shape[-1:] != (self.dimension,):
            raise ValueError(f"points must have shape (..., {self.dimension}) for potential "
                             f"{self.expression!r}; got shape {q.shape}")
        return {v: q[..., i] for i, v in enumerate(self.variables)}, q.shape[:-1]

    def _eval(self, tree: _Node, env: dict[str, NDArray[np.float64]],
              shape: tuple[int, ...]) -> NDArray[np.float64]:
        # Overflow or a log of a negative number gives inf/nan: callers decide (e.g. MFPT checks finiteness).
        with np.errstate(all="ignore"):
            return np.zeros(shape) + _evaluate(tree, env)

    def energy(self, q: ArrayLike) -> NDArray[np.float64]:
        """``U(q)``."""
        env, shape = self._env(q)
        return self._eval(self._tree, env, shape)

    def gradient(self, q: ArrayLike) -> NDArray[np.float64]:
        """``grad U(q)``: shape of ``q`` (both for 1-D and for ``(..., d)`` points)."""
        env, shape = self._env(q)
        if self.dimension == 1:
            return self._eval(self._grad[0], env, shape)
        return np.stack([self._eval(g, env, shape) for g in self._grad], axis=-1)

    def hessian(self, q: ArrayLike) -> NDArray[np.float64]:
        """``U''(x)`` (shape of ``x``) in 1-D; the ``(..., d, d)`` Hessian otherwise."""
        env, shape = self._env(q)
        if self.dimension == 1:
            return self._eval(self._hess[0][0], env, shape)
        rows = [np.stack([self._eval(h, env, shape) for h in row], axis=-1) for row in self._hess]
        return np.stack(rows, axis=-2)

    def __call__(self, q: ArrayLike) -> NDArray[np.float64]:
        return self.energy(q)

    def scalar_source(self, derivative: int = 0) -> str:
        """Python source of ``U`` (0), ``U'`` (1) or ``U''`` (2) for one scalar ``x`` (1-D potentials only).

        Uses ``math.*`` and a helper ``_sign``; meant for compiling a fast loop, e.g. with numba.

        >>> parse_potential("(x**2 - 1)**2").scalar_source(1)
        '((2.0 * ((x ** 2) - 1.0)) * (2.0 * x))'
        """
        if self.dimension != 1:
            raise ValueError(f"scalar_source needs a 1-D potential; {self.expression!r} has "
                             f"{self.dimension} variables")
        if derivative not in (0, 1, 2):
            raise ValueError(f"derivative={derivative!r} is invalid: expected 0, 1 or 2")
        return _source((self._tree, self._grad[0], self._hess[0][0])[derivative])


def parse_potential(expression: str, variables: tuple[str, ...] | None = None) -> Potential:
    """Parse ``expression`` into a :class:`Potential` without evaluating any user code.

    ``variables`` defaults to ``("x",)``, or ``("x", "y")`` when ``y`` occurs in the expression.
    Raises ``ValueError`` naming the offending construct.
    """
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError(f"potential={expression!r} is invalid: expected a non-empty math expression in x")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise _invalid(expression, f"longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        module = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise _invalid(expression, f"not a valid expression ({exc.msg})") from None
    if variables is None:
        names = {n.id for n in ast.walk(module) if isinstance(n, ast.Name)}
        variables = ("x", "y") if "y" in names else ("x",)
    tree = _convert(module, tuple(variables), expression)
    grad = tuple(_derivative(tree, v) for v in variables)
    hess = tuple(tuple(_derivative(g, v) for v in variables) for g in grad)
    return Potential(expression, tuple(variables), tree, grad, hess)
