"""TFDS dataset builders of this project, one package per dataset (the layout `tfds new` makes).

Import a builder package to register its dataset with TFDS; `stress_jax.data.build`
imports them by name, so a missing one fails only when it is asked for.
"""
