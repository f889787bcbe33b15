"""The messages a family's evaluation raises: an input of the wrong shape for its network, a parameter outside its
domain, a value of the wrong event shape and who drew it. Built only on those error paths."""
import re

_MATMUL_ERROR = re.compile(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)")


def input_shape(family, args, shown, error):
    """Why ``family``'s network failed on ``args`` (flattened from inputs of the shapes ``shown``) with ``error``."""
    shown = [tuple(s) for s in shown]
    if family._seen_shapes is not None:  # the event shapes of the last successful call are the expected ones
        for n, a, s, expected in zip(family.cond_var, args, shown, family._seen_shapes):
            if tuple(a.shape)[1:] != expected:
                return f"{family.prob_text} needs input `{n}` (event shape {expected}); got a tensor of shape {s}."
    # before any successful call: a linear layer's error names the size it takes ("... (8x5 and 4x6)")
    match = _MATMUL_ERROR.search(str(error))
    if match is not None:
        rows, cols, expected = int(match[1]), int(match[2]), int(match[3])
        culprits = [i for i, a in enumerate(args) if tuple(a.shape) == (rows, cols)]
        if len(culprits) == 1:
            i = culprits[0]
            return (f"{family.prob_text} needs input `{family.cond_var[i]}` (event shape ({expected},), the input "
                    f"size of a linear layer of its network); got a tensor of shape {shown[i]}.")
    names = ", ".join(f"`{n}` of shape {s}" for n, s in zip(family.cond_var, shown))
    return (f"{family.prob_text}: its network failed on inputs {names} ({error}). Check that each input "
            f"has the event shape the network expects, in the signature's order {family.cond_var}.")


def drawn_by(context, var, value):
    """Who drew ``value`` of ``var`` in this evaluation, and the fix, for the message of a value of the wrong
    event shape (read only on that error path); empty if it was given with the inputs."""
    found = context.drawer_of(var, value)
    if found is None:
        return ""
    drawer, lead = found
    event = tuple(value.shape[lead if isinstance(lead, int) else lead.get(var, 0):])
    return (f" `{var}` was drawn by {drawer.prob_text}, of event shape {event}: give both the same event shape (the "
            f"size of a network's output, or features_shape=[...]).")


def constraint_hint(key):
    """The usual fix of a network's parameter ``key`` outside its domain."""
    if key in ("scale", "concentration", "concentration0", "concentration1", "temperature", "rate"):
        return "End the network with softplus (or exp) to keep it positive."
    if key == "probs":
        return "End the network with sigmoid/softmax, or return 'logits' instead."
    return ""
