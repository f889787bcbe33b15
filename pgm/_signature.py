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


def latex_variable(name):
    """A variable's name as LaTeX: a subscript of more than one character braced, ``z_top`` -> ``z_{top}`` (LaTeX
    lowers only the first character of an unbraced one); ``z``, ``z_0`` and names that hold LaTeX already
    (``q_\\phi``, ``x_{obs}``) as they are."""
    if "\\" in name or "{" in name:
        return name
    base, _, rest = name.partition("_")
    if not base or len(rest) < 2:
        return name
    return f"{base}_{{{rest}}}"


_GROUP = re.compile(r"(?:(?<![\\A-Za-z0-9_])(?P<head>[A-Za-z][A-Za-z0-9_]*))?\((?P<args>[^()\\]*)\)")
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_BRACED = re.compile(r"[A-Za-z][A-Za-z0-9]*_\{[^{}]*\}")


def _split_arguments(args):
    """``"z_{1:K},x|y"`` -> ``["z_{1:K}", ",", "x", "|", "y"]``: the names and the separators outside braces."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(args):
        depth += (c == "{") - (c == "}")
        if depth == 0 and c in ",|":
            parts += [args[start:i], c]
            start = i + 1
    return parts + [args[start:]]


def latex_signatures(text):
    """Every signature ``name(a,b|c)`` inside LaTeX ``text`` with its names written by :func:`latex_variable`:
    ``\\log q(z_top|x_obs)`` -> ``\\log q(z_{top}|x_{obs})``. A parenthesis that does not hold names only
    (``\\left(1 - D(x)\\right)``'s outer one) is left as it is, and a name already braced stays."""

    def rewrite(match):
        parts = _split_arguments(match["args"])
        names = parts[::2]
        if match["args"] and not all(_PLAIN.fullmatch(n.strip()) or _BRACED.fullmatch(n.strip()) for n in names):
            return match[0]
        parts[::2] = [n.replace(n.strip(), latex_variable(n.strip())) for n in names]  # spacing kept
        return latex_variable(match["head"] or "") + "(" + "".join(parts) + ")"

    return _GROUP.sub(rewrite, text)


def latex_signature(name, var, cond):
    """The LaTeX of the signature ``name(var|cond)``, ``q(z_{top}|x)`` for ``q(z_top|x)``."""
    return latex_signatures(format_signature(name, var, cond))


def subscript(name, index):
    """``x`` -> ``x_{t}``-style LaTeX: ``x_t``, ``z_{t-1}``; ``h_dec`` -> ``h_{dec,t}``."""
    if "_" in name.strip("_"):
        base, rest = name.split("_", 1)
        return f"{base}_{{{rest},{index}}}"
    return f"{name}_{index}" if len(index) == 1 else f"{name}_{{{index}}}"
