"""Search spaces: for each, a spec (the single source of truth for an architecture), the
layer plan derived from it (parameters, FLOPs) and the networks that run the plan.

* :mod:`nngp_lib.spaces.nb101`: NAS-Bench-101's cells on CIFAR-10 (the paper's main study).
* :mod:`nngp_lib.spaces.mnas`: the MnasNet space (the paper's sections 3.2 and 4.2).
"""
