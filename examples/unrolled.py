"""Two more unrolled modules, in plain PyTorch (nothing here knows gradlab):

- `RecurrentClassifier`: an RNN unrolled by a Python loop over an `nn.GRUCell` or an `nn.LSTMCell`
  (h_t = cell(x_t, h_{t−1}), the class logits from the last state);
- `LISTA`: unrolled ISTA with learned weights (Gregor & LeCun 2010): T applications of one `LISTAStep`,
  z ← soft(W y + S z, θ), tied across the iterations, initialised from ISTA on a dictionary A.

The cell and the step are called once per time step / iteration: `gradlab.watch(model, loops=["cell"])` or
`loops=["step"]` records the gradient of every call.
"""

from __future__ import annotations

import torch
from torch import nn


class RecurrentClassifier(nn.Module):
    """x (B, L, F) → class logits (B, classes): embed each time step, run the cell over them, read out h_L."""

    def __init__(self, features: int, hidden: int, classes: int, cell: str = "gru"):
        super().__init__()
        cells = {"gru": nn.GRUCell, "lstm": nn.LSTMCell}
        if cell not in cells:
            raise ValueError(f"cell={cell!r}: expected one of {', '.join(cells)}")
        self.embed = nn.Linear(features, hidden)
        self.cell = cells[cell](hidden, hidden)
        self.readout = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = None  # zeros; an LSTM's state is the pair (h, c)
        for x_t in self.embed(x).unbind(1):
            state = self.cell(x_t, state)
        h = state[0] if isinstance(state, tuple) else state
        return self.readout(h)


class LISTAStep(nn.Module):
    """One iteration z ← soft(W y + S z, θ), soft(u, θ) = sign(u) max(|u| − θ, 0): code z (B, n), signal y (B, m)."""

    def __init__(self, dictionary: torch.Tensor, penalty: float = 0.1):
        super().__init__()
        m, n = dictionary.shape
        lipschitz = float(torch.linalg.matrix_norm(dictionary, ord=2)) ** 2  # ISTA's step 1/L
        self.W = nn.Linear(m, n, bias=False)
        self.S = nn.Linear(n, n, bias=False)
        self.threshold = nn.Parameter(torch.full((n,), penalty / lipschitz))
        with torch.no_grad():  # ISTA: W = Aᵀ/L, S = I − AᵀA/L
            self.W.weight.copy_(dictionary.T / lipschitz)
            self.S.weight.copy_(torch.eye(n) - dictionary.T @ dictionary / lipschitz)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        u = self.W(y) + self.S(z)
        return torch.sign(u) * torch.relu(u.abs() - self.threshold)


class LISTA(nn.Module):
    """y (B, m) → sparse code z^(T) (B, n) of y ≈ A z: T applications of one LISTAStep, starting from z^(0) = 0."""

    def __init__(self, dictionary: torch.Tensor, iterations: int = 8, penalty: float = 0.1):
        super().__init__()
        self.iterations = iterations
        self.step = LISTAStep(dictionary, penalty)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        z = y.new_zeros(y.shape[0], self.step.S.in_features)
        for _ in range(self.iterations):
            z = self.step(z, y)
        return z
