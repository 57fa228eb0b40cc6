"""The core: one frame in, one pose out, with no ROS, no training and no files beyond a reference.

camera and geometry (back-projection, Umeyama, ICP), nearest (neighbour lookups), colour and verify (the
one hypothesis score), reference (the stored view) and reference_store (several, on disk), estimator and
multi_object (the per-frame pipeline, one object or many), backends/ (where hypotheses come from) and
model/ (the One2Any network and the scorer). protocol, metrics and errors are the shared definitions every
layer above reads. Nothing here imports from data, training, apps, ros or ros_tools (test_layers.py).
"""
