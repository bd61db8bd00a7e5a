"""Two projectors: user and item CF embeddings -> the backbone's hidden size.

Each projector is a 2-layer MLP ``Linear(k, h) -> activation -> Linear(h, d)`` where ``k``
is the CF dimension, ``d`` the backbone's hidden size (read from its config) and ``h`` a
configurable width. Users and items get separate projectors: their CF vectors live in
the same dot-product space but play different roles in a prompt (who is asking versus
what was consumed), and the item projector alone also serves as the item-token output
layer.

Scale matters. WALS vectors are small and the backbone's token embeddings have a
characteristic norm; a slot vector far larger than a token dominates attention, a far
smaller one is ignored. :meth:`Projector.calibrate` therefore (1) centres the inputs on the
mean CF vector and divides them by their mean norm and (2) rescales the last layer so that,
at initialisation, the projected vectors have the mean norm of the backbone's token embeddings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from safetensors.torch import save_file
import torch
from torch import nn

from llmrec_lite.checkpoints import CheckpointMismatchError, check_matches, load_tensors, read_json
from llmrec_lite.fileio import atomic_path, write_json
from llmrec_lite.profiles import Profile

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}
CONFIG_NAME = "projectors.json"
__all__ = ["ACTIVATIONS", "CheckpointMismatchError", "Projector", "ProjectorConfig", "Projectors"]
WEIGHTS_NAME = "projectors.safetensors"


@dataclass
class ProjectorConfig:
    """Configuration of the user and item projectors (saved with their weights).

    Attributes:
        cf_dim: Dimension of the CF embeddings (WALS ``num_factors``).
        hidden_size: The backbone's hidden size (``model.config.hidden_size``).
        hidden_dim: Width of the MLP's middle layer.
        activation: One of ``gelu``, ``relu``, ``silu``, ``tanh``.
        dropout: Dropout after the activation.
        dataset: Dataset the projectors are trained for.
        num_users, num_items: Catalogue sizes (a checkpoint only fits the same data).
        wals_fingerprint: Fingerprint of the WALS factors they read.
    """

    cf_dim: int
    hidden_size: int
    hidden_dim: int = Profile.projector_hidden  # defaults: the profiles' (llmrec_lite.profiles)
    activation: str = Profile.projector_activation
    dropout: float = 0.0
    dataset: str = ""
    num_users: int = 0
    num_items: int = 0
    wals_fingerprint: str = ""

    @classmethod
    def from_profile(cls, profile: Profile, cf_dim: int, hidden_size: int, **overrides) -> "ProjectorConfig":
        """The projectors a profile asks for, between ``cf_dim`` CF factors and a ``hidden_size`` backbone."""
        base = dict(cf_dim=cf_dim, hidden_size=hidden_size, hidden_dim=profile.projector_hidden,
                    activation=profile.projector_activation)
        base.update(overrides)
        return cls(**base)

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"Unknown activation {self.activation!r}; choose one of {sorted(ACTIVATIONS)}.")


class Projector(nn.Module):
    """``x / input_scale -> Linear -> activation -> dropout -> Linear``."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, activation: str = "gelu", dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.act = ACTIVATIONS[activation]()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, out_dim)
        self.register_buffer("input_shift", torch.zeros(in_dim))
        self.register_buffer("input_scale", torch.tensor(1.0))

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        x = (vectors.to(self.fc1.weight.dtype) - self.input_shift) / self.input_scale
        return self.fc2(self.drop(self.act(self.fc1(x))))

    @torch.no_grad()
    def calibrate(self, vectors: torch.Tensor, target_norm: float) -> float:
        """Sets the input scale and rescales the output layer (see the module docstring).

        Args:
            vectors: The CF embeddings this projector will read (all users or all items).
            target_norm: Desired mean output norm (the token embeddings' mean norm).

        Returns:
            The mean output norm after calibration (``target_norm`` up to rounding).
        """
        vectors = vectors.to(self.fc1.weight.device, self.fc1.weight.dtype)
        # WALS vectors share a common direction (popularity); centring them keeps the random
        # initial MLP from mapping every item to nearly the same vector. An affine shift loses
        # nothing: the first layer's bias can undo it.
        self.input_shift.copy_(vectors.mean(0))
        self.input_scale.fill_((vectors - self.input_shift).norm(dim=1).mean().clamp_min(1e-8))
        was_training = self.training
        self.eval()
        factor = target_norm / self(vectors).norm(dim=1).mean().clamp_min(1e-8)
        self.fc2.weight.mul_(factor)
        self.fc2.bias.mul_(factor)
        self.train(was_training)
        return float(self(vectors).norm(dim=1).mean())


class Projectors(nn.Module):
    """The user projector and the item projector, saved and loaded together."""

    def __init__(self, config: ProjectorConfig):
        super().__init__()
        self.config = config
        args = (config.cf_dim, config.hidden_size, config.hidden_dim, config.activation, config.dropout)
        self.user = Projector(*args)
        self.item = Projector(*args)

    def calibrate(self, user_factors: torch.Tensor, item_factors: torch.Tensor, target_norm: float) -> dict:
        """Calibrates both projectors to ``target_norm``; returns the resulting mean norms."""
        return {"user": self.user.calibrate(user_factors, target_norm), "item": self.item.calibrate(item_factors, target_norm)}

    def num_parameters(self) -> dict:
        count = lambda m: sum(p.numel() for p in m.parameters())
        return {"user": count(self.user), "item": count(self.item), "total": count(self)}

    def save_pretrained(self, directory: str | Path) -> Path:
        """Writes ``projectors.json`` and ``projectors.safetensors`` (atomically)."""
        directory = Path(directory)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_path(directory / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp))
        write_json(directory / CONFIG_NAME, asdict(self.config))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, expect: dict | None = None) -> "Projectors":
        """Loads projectors saved by :meth:`save_pretrained`.

        Args:
            directory: The checkpoint folder.
            expect: Values the checkpoint must match, e.g. ``{"hidden_size": 576,
                "cf_dim": 64, "dataset": "lastfm", "wals_fingerprint": ...}``.

        Raises:
            FileNotFoundError: the folder holds no projectors.
            CheckpointMismatchError: a value in ``expect`` differs from the checkpoint's.
        """
        directory = Path(directory)
        if not (directory / CONFIG_NAME).exists():
            raise FileNotFoundError(f"No projectors in {directory} ({CONFIG_NAME} is missing).")
        config = ProjectorConfig(**read_json(directory / CONFIG_NAME, f"Delete {directory} and train the projectors again."))
        check_matches(config.__dict__, expect or {}, f"projectors in {directory}")
        model = cls(config)
        model.load_state_dict(load_tensors(directory / WEIGHTS_NAME, f"Delete {directory} and train the projectors again."))
        return model
