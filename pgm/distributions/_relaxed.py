"""What the two relaxed families share: a temperature buffer that can change between steps."""
import torch


class TemperatureMixin:
    """Keeps ``temperature`` a buffer updated in place, so annealing it never recompiles a step."""

    fixed_parameters = ("temperature",)

    @property
    def scores_another_family(self):
        """Whether ``log_prob`` is that of the discrete family (not the density of the relaxed draws)."""
        return getattr(self, "density", "categorical") != "concrete"

    def __setattr__(self, name, value):
        if name == "temperature" and "temperature" in self.__dict__.get("_buffers", {}):
            if isinstance(value, torch.Tensor):
                value = value.detach()
            self._check_temperature(value)
            with torch.no_grad():
                self._buffers["temperature"].fill_(float(value))
            return
        super().__setattr__(name, value)

    def _check_values(self, params):
        # torch's relaxed families declare no constraint on temperature, so the base check would pass 0 or -1
        if "temperature" in params:
            self._check_temperature(params["temperature"])
        super()._check_values({k: v for k, v in params.items() if k != "temperature"})

    def _check_temperature(self, value):
        if not bool(torch.all(torch.as_tensor(value) > 0)):
            raise ValueError(f"{self.prob_text}: temperature must be positive; got {torch.as_tensor(value).tolist()}.")
