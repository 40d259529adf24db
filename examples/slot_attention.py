"""Slot attention (Locatello et al. 2020, "Object-Centric Learning with Slot Attention", Algorithm 1), written
from the paper, and a small segmenter around it for 64 x 64 scenes (per-pixel classes, cross-entropy). Plain
PyTorch: nothing here knows gradlab.

    slots ~ N(μ, diag σ²)                                    (learned μ, σ; one draw per image and slot)
    repeat T times:
        slots_prev = slots
        attn    = softmax over slots of  k(inputs) · q(LayerNorm(slots)) / √D
        updates = weighted mean of v(inputs) with weights attn (normalised over the inputs)
        slots   = GRUCell(updates, slots_prev)
        slots   = slots + MLP(LayerNorm(slots))

The GRU cell and the MLP are each called T times per forward: `gradlab.watch(model,
loops=["slot_attention.gru"])` records the gradient of every call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SlotAttention(nn.Module):
    """inputs (B, N, D) → slots (B, K, D) and the last iteration's attention (B, K, N)."""

    def __init__(self, dim: int, slots: int, iterations: int = 3, hidden: int | None = None, eps: float = 1e-8):
        super().__init__()
        self.num_slots, self.iterations, self.eps, self.scale = slots, iterations, eps, dim ** -0.5
        self.slots_mu = nn.Parameter(torch.randn(1, 1, dim) * dim ** -0.5)
        self.slots_log_sigma = nn.Parameter(torch.full((1, 1, dim), -1.0))
        self.norm_inputs, self.norm_slots, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.project_q = nn.Linear(dim, dim, bias=False)
        self.project_k = nn.Linear(dim, dim, bias=False)
        self.project_v = nn.Linear(dim, dim, bias=False)
        self.gru = nn.GRUCell(dim, dim)
        hidden = hidden or 2 * dim
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, N, D = inputs.shape
        inputs = self.norm_inputs(inputs)
        k, v = self.project_k(inputs), self.project_v(inputs)  # computed once, shared by the iterations
        noise = torch.randn(B, self.num_slots, D, device=inputs.device, dtype=inputs.dtype)
        slots = self.slots_mu + self.slots_log_sigma.exp() * noise
        for _ in range(self.iterations):
            slots_prev = slots
            q = self.project_q(self.norm_slots(slots))
            attn = torch.softmax(q @ k.transpose(1, 2) * self.scale, dim=1) + self.eps  # (B, K, N), over slots
            updates = (attn / attn.sum(-1, keepdim=True)) @ v  # weighted mean over the inputs
            slots = self.gru(updates.reshape(-1, D), slots_prev.reshape(-1, D)).view(B, -1, D)
            slots = slots + self.mlp(self.norm_mlp(slots))
        return slots, attn


class PositionEmbedding(nn.Module):
    """Adds a learned projection of the 4 ramps (x, y, 1 − x, 1 − y) of a grid to a (B, D, H, W) feature map."""

    def __init__(self, dim: int):
        super().__init__()
        self.project = nn.Linear(4, dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        H, W = features.shape[-2:]
        ys, xs = torch.meshgrid(torch.linspace(0, 1, H, device=features.device, dtype=features.dtype),
                                torch.linspace(0, 1, W, device=features.device, dtype=features.dtype), indexing="ij")
        grid = torch.stack([xs, ys, 1 - xs, 1 - ys], dim=-1)  # (H, W, 4)
        return features + self.project(grid).permute(2, 0, 1)


class SlotSegmenter(nn.Module):
    """images (B, 3, S, S) → per-pixel class log-probabilities (B, classes, S, S), for cross-entropy on the masks.

    A CNN encoder (stride 4) with a position embedding, slot attention over its (S/4)² positions, a class for each
    slot (an MLP), and at each position p(class) = Σ_k attn_k · softmax(class logits of slot k): the last
    iteration's attention is each slot's mask. Upsampled to the image.
    """

    def __init__(self, classes: int, dim: int = 32, slots: int = 6, iterations: int = 3, hidden: int = 64):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, dim, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(dim, dim, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU(),
        )
        self.position = PositionEmbedding(dim)
        self.feature_mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.slot_attention = SlotAttention(dim, slots, iterations)
        self.classifier = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.position(self.encoder(images))  # (B, D, h, w)
        B, D, h, w = features.shape
        slots, attn = self.slot_attention(self.feature_mlp(features.flatten(2).transpose(1, 2)))
        probs = torch.einsum("bkn,bkc->bcn", attn, self.classifier(slots).softmax(-1))  # (B, classes, h·w)
        logits = probs.clamp_min(1e-8).log().view(B, -1, h, w)
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
