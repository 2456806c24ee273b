"""Where and how sweeps run: the CLI, local Ray, job submission, cluster configs, Slurm."""
