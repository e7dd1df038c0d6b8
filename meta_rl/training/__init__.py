"""Meta-training: trial collection, the trainer's loop, one module per update (PPO, the MAML
outer loop, the ELBO), the training state and its checkpoints, the speed benchmark."""
