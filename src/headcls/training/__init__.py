"""Fine-tuning: a run prepared, fitted and finished; the Trainer and its callbacks; checkpoints; the recipe; the model card. May import every package but cli, serving and export."""
