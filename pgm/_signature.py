"""Parse the signatures that name a distribution, such as ``q(a|x,w)`` or ``p(x,w)``."""
from __future__ import annotations

import re

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SIGNATURE = re.compile(
    rf"^\s*(?P<name>{_NAME}(?:\^\{{?[^()|]*\}}?|_\{{?[^()|]*\}}?)?)\s*"
    rf"\(\s*(?P<var>{_NAME}(?:\s*,\s*{_NAME})*)\s*(?:\|\s*(?P<cond>{_NAME}(?:\s*,\s*{_NAME})*)\s*)?\)\s*$"
)


def parse_signature(signature: str):
    """Split ``"q(a|x,w)"`` into ``("q", ["a"], ["x", "w"])``."""
    if not isinstance(signature, str):
        raise TypeError(f"a signature must be a string such as 'q(z|x)'; got {type(signature).__name__}.")
    match = _SIGNATURE.match(signature)
    if match is None:
        raise ValueError(
            f"cannot parse the signature {signature!r}: write it as name(variables|conditions), "
            f"e.g. 'q(z|x)', 'q(a|x,w)' or 'p(z)'; names are letters, digits and '_'."
        )
    var = [v.strip() for v in match["var"].split(",")]
    cond = [v.strip() for v in match["cond"].split(",")] if match["cond"] else []
    check_names(signature, var, cond)
    return match["name"], var, cond


def check_names(where, var, cond):
    for names, kind in ((var, "variables"), (cond, "conditioning variables")):
        if len(set(names)) != len(names):
            raise ValueError(f"{where}: the {kind} {names} repeat a name.")
    both = set(var) & set(cond)
    if both:
        raise ValueError(f"{where}: {sorted(both)} cannot be both generated and conditioned on.")


def format_signature(name, var, cond):
    text = f"{name}({','.join(var)}"
    return text + (f"|{','.join(cond)})" if cond else ")")


def subscript(name, index):
    """``x`` -> ``x_{t}``-style LaTeX: ``x_t``, ``z_{t-1}``; ``h_dec`` -> ``h_{dec,t}``."""
    if "_" in name.strip("_"):
        base, rest = name.split("_", 1)
        return f"{base}_{{{rest},{index}}}"
    return f"{name}_{index}" if len(index) == 1 else f"{name}_{{{index}}}"
