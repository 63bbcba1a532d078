"""Names of the registered datasets and models.

Kept apart from their registries (``l2dynamics.data``, ``l2dynamics.models``) and free of torch,
so that the config schema can validate a name, and ``l2dynamics keys`` list them, without
importing the code that builds them. Tests check that each registry holds exactly these names.
"""

DATASET_NAMES: tuple[str, ...] = ("digits", "mnist1d", "teacher", "mnist", "fashion_mnist",
                                   "cifar10")
MODEL_NAMES: tuple[str, ...] = ("fc", "cnn", "convnet4", "wrn")
