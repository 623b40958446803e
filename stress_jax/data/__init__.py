"""`python -m stress_jax.data.build`, the TFDS build CLI.

Face primitives live in `stress_jax.faces`, the simulator in `stress_jax.datasets`, the
Yonsei reader in `stress_jax.featuredb.yonsei`;
`records` and `face_geometry` here are aliases of the moved modules, kept until no
code imports them from here.
"""
