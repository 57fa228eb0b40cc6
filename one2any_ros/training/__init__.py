"""Training and its gate: pair sampling (pairs), the network's run (train: the loop, with config, losses,
validation, curves, state and distributed beside it), the scorer's (train_scorer), and the export gate (promote,
which bundles through export).

Imports the core, data and evaluation, never apps or ROS (test_layers.py).
"""
