"""Named conditional distributions: ``Normal("q(z|x)", net=encoder)``, products, marginals."""
from ._base import Distribution, set_validation, validation_enabled
from ._family import Family
from ._joint import JointDistribution, MarginalDistribution
from .bernoulli import Bernoulli
from .beta import Beta
from .categorical import Categorical
from .density import Density
from .deterministic import Deterministic
from .dirichlet import Dirichlet
from .flows import Flow
from .gamma import Gamma
from .laplace import Laplace
from .learned import Learned
from .mixture import InputMixture, Mixture
from .multinomial import Multinomial
from .normal import Normal
from .poisson import Poisson
from .product_of_normal import ProductOfNormal
from .relaxed_bernoulli import RelaxedBernoulli
from .relaxed_categorical import RelaxedCategorical
from .vector_quantizer import VectorQuantizer

__all__ = [
    "Distribution", "Family", "JointDistribution", "MarginalDistribution",
    "Normal", "Bernoulli", "Categorical", "RelaxedCategorical", "RelaxedBernoulli",
    "Laplace", "Beta", "Dirichlet", "Deterministic", "ProductOfNormal",
    "Gamma", "Poisson", "Multinomial", "Density", "Mixture", "InputMixture", "Flow",
    "VectorQuantizer", "Learned",
    "set_validation", "validation_enabled",
]
