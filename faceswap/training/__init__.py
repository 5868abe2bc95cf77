"""Training: data and augmentation, losses, the loop with checkpoints, previews and DDP."""
