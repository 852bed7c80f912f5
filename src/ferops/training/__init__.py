"""The train stage: model builders, the tf.data input pipeline, the learning-rate plan,
crash-resume checkpoints and the training loop. One package, so it is one DVC dependency.

Imports nothing from evaluation, the registry, serving or orchestration.
"""
