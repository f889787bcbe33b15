"""pgm._values.broadcast_shapes against torch.broadcast_shapes, on every combination of small shapes."""
import itertools

import pytest
import torch

from pgm._values import broadcast_shapes

SHAPES = [(), (1,), (3,), (0,), (1, 3), (2, 1), (2, 3), (4, 1, 3), (4, 2, 1), (5, 4, 2, 3)]


@pytest.mark.parametrize("count", [1, 2, 3])
def test_broadcast_shapes_equals_torchs(count):
    for shapes in itertools.product(SHAPES, repeat=count):
        try:
            expected = torch.broadcast_shapes(*shapes)
        except RuntimeError as error:
            with pytest.raises(RuntimeError) as ours:
                broadcast_shapes(*shapes)
            assert str(ours.value) == str(error)  # torch's own message
            continue
        ours = broadcast_shapes(*shapes)
        assert ours == expected and isinstance(ours, torch.Size), shapes
