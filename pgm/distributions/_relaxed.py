"""What the two relaxed families share: a temperature buffer that can change between steps."""
import torch


class TemperatureMixin:
    """Keeps ``temperature`` a buffer updated in place, so annealing it never recompiles a step."""

    fixed_parameters = ("temperature",)

    def __setattr__(self, name, value):
        if name == "temperature" and "temperature" in self.__dict__.get("_buffers", {}):
            if isinstance(value, torch.Tensor):
                value = value.detach()
            if not float(value) > 0:
                raise ValueError(f"{self.prob_text}: temperature must be positive; got {float(value)}.")
            with torch.no_grad():
                self._buffers["temperature"].fill_(float(value))
            return
        super().__setattr__(name, value)
