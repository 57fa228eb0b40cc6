"""Data: procedural textured objects, the pybullet CPU renderer, the BOP reader/writer, the dataset
generator and the bundled sample.

Submodules import lazily (pybullet is only needed for rendering), so ``import one2any_ros.data.bop``
works without it.
"""
