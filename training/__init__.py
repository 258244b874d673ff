"""Offline training of the MNIST network (needs the `train` extra: torchvision, matplotlib, tqdm)."""
