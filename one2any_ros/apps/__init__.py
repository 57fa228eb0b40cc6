"""What a person runs: the ``one2any`` CLI (cli), the demo, the benchmark (bench) and pose estimation
over files (estimate_files). Thin: each calls the core, data, training or ros_tools to do its job.
"""
