"""Training and its gate: pair sampling (pairs), the network's run (train), the scorer's (train_scorer),
the BOP evaluation both gates and ``one2any eval`` run (evaluate) and the export gate (promote).

Imports the core and data, never apps or ROS (test_layers.py).
"""
