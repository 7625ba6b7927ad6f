"""Training and evaluation of whole classifiers: configuration, loop, checkpoints, data, backbones.

The entry point is :func:`grassmann_cls.training.train.train`, which takes a
:class:`~grassmann_cls.training.config.TrainConfig` and returns a
:class:`~grassmann_cls.training.train.TrainResult`; the ``grassmann-cls
train`` command is a thin layer over it. This wing uses the library
(:mod:`grassmann_cls`) and is used by :mod:`grassmann_cls.experiments`.
"""
