"""Test-wide settings: one torch thread (tiny models run fastest on one, and CI shares 2 cores)."""
import torch

torch.set_num_threads(1)
