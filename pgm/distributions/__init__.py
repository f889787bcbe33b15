"""Named conditional distributions: ``Normal("q(z|x)", net=encoder)``, products, marginals."""
from ._base import Distribution, set_validation, validation_enabled
from ._joint import JointDistribution, MarginalDistribution
from .bernoulli import Bernoulli
from .beta import Beta
from .categorical import Categorical
from .deterministic import Deterministic
from .dirichlet import Dirichlet
from .laplace import Laplace
from .normal import Normal
from .product_of_normal import ProductOfNormal
from .relaxed_bernoulli import RelaxedBernoulli
from .relaxed_categorical import RelaxedCategorical

__all__ = [
    "Distribution", "JointDistribution", "MarginalDistribution",
    "Normal", "Bernoulli", "Categorical", "RelaxedCategorical", "RelaxedBernoulli",
    "Laplace", "Beta", "Dirichlet", "Deterministic", "ProductOfNormal",
    "set_validation", "validation_enabled",
]
