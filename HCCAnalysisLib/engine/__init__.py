"""Training, inference, evaluation, augmentation, distributed runs, device choice and saliency."""
