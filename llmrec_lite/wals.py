"""Weighted alternating least squares (WALS) for implicit feedback.

The model (Hu, Koren and Volinsky, 2008) factorises the users x items matrix of
interaction counts ``r_ui`` into user factors ``X`` and item factors ``Y``:

.. math::

    \\min_{X,Y} \\sum_{u,i} c_{ui} (p_{ui} - x_u^\\top y_i)^2 + \\lambda (\\|X\\|^2 + \\|Y\\|^2),
    \\quad p_{ui} = 1[r_{ui} > 0], \\quad c_{ui} = 1 + \\alpha r_{ui}.

With ``Y`` fixed, each ``x_u`` solves the normal equations
``(YᵀY + Yᵀ(C_u - I)Y + λI) x_u = Yᵀ C_u p_u``. ``YᵀY`` is shared by every user
(the *Gramian trick*), so a user costs only as much as the items it touched.

Solvers behind one API (:class:`WALS`):

- ``solver="reference"``: the readable exact solver, one ``k x k`` system per row in a
  Python loop. Slow; it is the yardstick the others are tested against.
- ``solver="batched"``: the same exact systems, assembled and solved for blocks of rows
  at once (``index_add_`` of outer products, batched ``torch.linalg.solve``).
- ``solver="cg"`` (default): a few conjugate-gradient steps per row, warm-started from
  the previous iterate, vectorised across all rows; no ``k x k`` system is ever formed.
- ``backend="implicit"``: the ``implicit`` library's CPU solver, fed the same
  confidences, for comparison.

Everything runs on CPU or CUDA (``device=``); the same tests cover both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
import hashlib
import math
from pathlib import Path
import time
import warnings

from implicit.cpu.als import AlternatingLeastSquares
import numpy as np
from safetensors.torch import save_file
import scipy.sparse as sp
from threadpoolctl import threadpool_limits
import torch
from tqdm.auto import tqdm

from llmrec_lite.device import resolve_device
from llmrec_lite.checkpoints import CorruptCheckpointError, load_tensors, read_json
from llmrec_lite.fileio import atomic_path, write_json
from llmrec_lite.profiles import Profile

# torch labels its CSR tensors "beta"; the operations used here (SpMM, SDDMM) are stable.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")

SOLVERS = ("reference", "batched", "cg")
BACKENDS = ("torch", "implicit")


@dataclass
class WALSConfig:
    """Hyper-parameters of a WALS fit (saved with the factors).

    Attributes:
        num_factors: Embedding dimension ``k``.
        regularization: ``λ``, the L2 weight on both factor matrices.
        alpha: Confidence slope: ``c_ui = 1 + alpha * r_ui``.
        iterations: Alternating sweeps (one user half-step plus one item half-step each).
        backend: ``"torch"`` or ``"implicit"``.
        solver: ``"cg"``, ``"batched"`` or ``"reference"`` (torch backend); the implicit
            backend uses its CG solver for ``"cg"`` and its exact solver otherwise.
        cg_steps: Conjugate-gradient steps per half-step (``solver="cg"``).
        seed: Seed of the random initialisation.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (torch backend).
    """

    # defaults: the profiles' (written once, in llmrec_lite.profiles.Profile)
    num_factors: int = Profile.wals_factors
    regularization: float = Profile.wals_regularization
    alpha: float = Profile.wals_alpha
    iterations: int = Profile.wals_iterations
    backend: str = "torch"
    solver: str = "cg"
    cg_steps: int = Profile.wals_cg_steps
    seed: int = Profile.seed
    device: str = Profile.device

    @classmethod
    def from_profile(cls, profile: Profile, **overrides) -> "WALSConfig":
        """The WALS configuration a profile implies; ``overrides`` replace single fields."""
        base = dict(num_factors=profile.wals_factors, regularization=profile.wals_regularization,
                    alpha=profile.wals_alpha, iterations=profile.wals_iterations, cg_steps=profile.wals_cg_steps,
                    seed=profile.seed, device=profile.device)
        base.update(overrides)
        return cls(**base)

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"Unknown WALS backend {self.backend!r}; choose one of {BACKENDS}.")
        if self.solver not in SOLVERS:
            raise ValueError(f"Unknown WALS solver {self.solver!r}; choose one of {SOLVERS}.")
        for name, value, ok, rule in (("num_factors", self.num_factors, self.num_factors >= 1, "at least 1"),
                                       ("iterations", self.iterations, self.iterations >= 1, "at least 1"),
                                       ("regularization", self.regularization,
                                        math.isfinite(self.regularization) and self.regularization >= 0,
                                        "a finite number, 0 or more"),
                                       ("alpha", self.alpha, math.isfinite(self.alpha) and self.alpha >= 0,
                                        "a finite number, 0 or more"),
                                       ("cg_steps", self.cg_steps, self.cg_steps >= 1, "at least 1")):
            if not ok:
                raise ValueError(f"Invalid WALS setting {name}={value!r}: it must be {rule}.")


# --------------------------------------------------------------------------- sparse helpers


@dataclass
class ConfidenceCSR:
    """A CSR matrix of confidences as torch tensors on one device (what the solvers read).

    ``matrix`` holds the confidences ``c``; the solvers reuse its sparsity pattern
    with other values (``c - 1``, or per-entry products) through :meth:`with_values`.
    """

    indptr: torch.Tensor
    indices: torch.Tensor
    conf: torch.Tensor
    rows: torch.Tensor  # row index of every stored entry
    shape: tuple[int, int]

    @classmethod
    def from_scipy(cls, matrix: sp.csr_matrix, device, dtype) -> "ConfidenceCSR":
        matrix = matrix.tocsr()
        indptr = torch.as_tensor(matrix.indptr.astype(np.int64), device=device)
        counts = indptr[1:] - indptr[:-1]
        rows = torch.repeat_interleave(torch.arange(matrix.shape[0], device=device), counts)
        return cls(
            indptr=indptr,
            indices=torch.as_tensor(matrix.indices.astype(np.int64), device=device),
            conf=torch.as_tensor(matrix.data, device=device, dtype=dtype),
            rows=rows,
            shape=tuple(matrix.shape),
        )

    def with_values(self, values: torch.Tensor) -> torch.Tensor:
        """A torch sparse CSR tensor with this pattern and the given stored values."""
        return _sparse_csr(self.indptr, self.indices, values, self.shape)


def _sparse_csr(indptr, indices, values, shape) -> torch.Tensor:
    # The pattern comes from a valid scipy CSR matrix, so the invariant checks are skipped.
    return torch.sparse_csr_tensor(indptr, indices, values, size=shape, check_invariants=False)


def confidence_matrix(user_items: sp.spmatrix, alpha: float) -> sp.csr_matrix:
    """``c_ui = 1 + alpha * r_ui`` on the stored entries (absent entries have ``c = 1``, ``p = 0``)."""
    conf = sp.csr_matrix(user_items, dtype=np.float32, copy=True)
    conf.sum_duplicates()
    conf.data = 1.0 + alpha * conf.data
    return conf


# --------------------------------------------------------------------------- solvers


def _gramian(fixed: torch.Tensor, regularization: float) -> torch.Tensor:
    k = fixed.shape[1]
    return fixed.T @ fixed + regularization * torch.eye(k, dtype=fixed.dtype, device=fixed.device)


def solve_reference(csr: ConfidenceCSR, fixed: torch.Tensor, regularization: float) -> torch.Tensor:
    """Exact half-step, one row at a time: the readable version of the normal equations."""
    gram = _gramian(fixed, regularization)  # YᵀY + λI, shared by every row
    out = torch.zeros(csr.shape[0], fixed.shape[1], dtype=fixed.dtype, device=fixed.device)
    indptr = csr.indptr.tolist()
    for row in range(csr.shape[0]):
        start, end = indptr[row], indptr[row + 1]
        if start == end:
            continue  # no positives: b = 0, so x = 0
        y = fixed[csr.indices[start:end]]  # the items this row touched
        c = csr.conf[start:end]
        a = gram + y.T @ ((c - 1.0).unsqueeze(1) * y)  # + Yᵀ(C_u - I)Y over the touched items
        b = y.T @ c  # Yᵀ C_u p_u (p = 1 exactly where c > 1)
        out[row] = torch.linalg.solve(a, b)
    return out


def solve_batched(csr: ConfidenceCSR, fixed: torch.Tensor, regularization: float, block_rows: int = 2048) -> torch.Tensor:
    """Exact half-step for blocks of rows at once.

    The correction ``Σ_i (c_ui - 1) y_i y_iᵀ`` of every row in a block is one sparse
    product: the block's ``(c - 1)`` matrix times the items' flattened outer products
    ``vec(y_i y_iᵀ)`` (items x k²). The block's systems are then solved with one batched
    Cholesky factorisation (they are symmetric positive definite since ``λ > 0``).
    Memory: ``items * k²`` plus ``block_rows * k²`` floats.
    """
    gram = _gramian(fixed, regularization)
    n, k = csr.shape[0], fixed.shape[1]
    outer = (fixed.unsqueeze(2) * fixed.unsqueeze(1)).reshape(-1, k * k)
    out = torch.empty(n, k, dtype=fixed.dtype, device=fixed.device)
    indptr = csr.indptr.tolist()
    for row in range(0, n, block_rows):
        end_row = min(row + block_rows, n)
        lo, hi = indptr[row], indptr[end_row]
        block_ptr = csr.indptr[row : end_row + 1] - lo
        cols, c = csr.indices[lo:hi], csr.conf[lo:hi]
        size = (end_row - row, csr.shape[1])
        a = _sparse_csr(block_ptr, cols, c - 1.0, size) @ outer
        a = a.view(-1, k, k) + gram
        b = _sparse_csr(block_ptr, cols, c, size) @ fixed
        chol, _ = torch.linalg.cholesky_ex(a)
        out[row:end_row] = torch.cholesky_solve(b.unsqueeze(2), chol).squeeze(2)
    return out


def solve_cg(
    csr: ConfidenceCSR, fixed: torch.Tensor, current: torch.Tensor, regularization: float, steps: int = 3
) -> torch.Tensor:
    """Approximate half-step: ``steps`` conjugate-gradient iterations for every row at once.

    CG needs only products ``A_u p``, and
    ``A_u p = (YᵀY + λI) p + Σ_i (c_ui - 1)(y_iᵀp) y_i``: the dot products ``y_iᵀp_u``
    on the stored entries are one sampled dense-dense product (SDDMM), and the sum is one
    sparse-dense product (SpMM), so no ``k x k`` matrix is ever formed. Starting from the
    previous factors, three steps are enough in practice (Takács et al., 2011; the
    ``implicit`` library's default), and each step can only lower the row's quadratic
    objective, so the training loss cannot rise.
    """
    gram = _gramian(fixed, regularization)
    weight = csr.conf - 1.0
    pattern = csr.with_values(torch.ones_like(weight))
    fixed_t = fixed.T.contiguous()

    def matvec(p: torch.Tensor) -> torch.Tensor:
        dots = torch.sparse.sampled_addmm(pattern, p, fixed_t, beta=0.0).values()
        return p @ gram + csr.with_values(weight * dots) @ fixed

    b = csr.with_values(csr.conf) @ fixed  # Yᵀ C_u p_u for every row
    x = current.clone()
    r = b - matvec(x)
    p = r.clone()
    rs_old = (r * r).sum(1)
    tiny = torch.finfo(x.dtype).tiny
    for _ in range(steps):
        ap = matvec(p)
        denom = (p * ap).sum(1)
        active = rs_old > 1e-20  # converged rows stop moving (their step would divide 0 by 0)
        step = torch.where(active, rs_old / denom.clamp_min(tiny), torch.zeros_like(rs_old))
        x += step.unsqueeze(1) * p
        r -= step.unsqueeze(1) * ap
        rs_new = (r * r).sum(1)
        beta = torch.where(active, rs_new / rs_old.clamp_min(tiny), torch.zeros_like(rs_old))
        p = r + beta.unsqueeze(1) * p
        rs_old = rs_new
    return x


def wals_loss(conf: sp.csr_matrix, user_factors, item_factors, regularization: float) -> float:
    """Training objective, normalised by the total confidence weight (as ``implicit`` does).

    ``Σ_{u,i} c_ui (p_ui - x_uᵀy_i)²`` over *all* pairs is computed without touching the
    zeros: ``Σ_{u,i} (x_uᵀy_i)² = trace(XᵀX · YᵀY)``, plus a correction on stored entries.
    """
    x = torch.as_tensor(user_factors, dtype=torch.float64).cpu()
    y = torch.as_tensor(item_factors, dtype=torch.float64).cpu()
    coo = conf.tocoo()
    rows = torch.as_tensor(coo.row.astype(np.int64))
    cols = torch.as_tensor(coo.col.astype(np.int64))
    c = torch.as_tensor(coo.data, dtype=torch.float64)
    s = (x[rows] * y[cols]).sum(1)
    all_pairs = ((x.T @ x) * (y.T @ y)).sum()
    observed = (c * (1.0 - s) ** 2 - s**2).sum()
    penalty = regularization * ((x**2).sum() + (y**2).sum())
    weight = c.sum() + (conf.shape[0] * conf.shape[1] - conf.nnz)
    return float((all_pairs + observed + penalty) / weight)


# --------------------------------------------------------------------------- the model


def fold_in(item_factors: torch.Tensor, baskets, regularization: float, alpha: float) -> torch.Tensor:
    """User factors for new interaction lists, the item factors held fixed.

    One exact user half-step (:func:`solve_reference`): the vector WALS would give a user
    whose only interactions were ``basket``. Training prompts use it to build the user's
    vector from the items before the prompt's target (``user_vectors="prefix"``), so that
    the vector never encodes the answer it is asked for, as at test time.

    Args:
        item_factors: ``(items, k)`` fitted item factors.
        baskets: One sequence of item indices per row (repeats count, as in ``fit``).
        regularization, alpha: The fit's ``λ`` and confidence slope.

    Returns:
        ``(len(baskets), k)`` user factors (a row of zeros for an empty basket).
    """
    rows = np.concatenate([np.full(len(b), r) for r, b in enumerate(baskets)]) if len(baskets) else np.zeros(0)
    cols = np.concatenate([np.asarray(b, dtype=np.int64) for b in baskets]) if len(baskets) else np.zeros(0)
    counts = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows.astype(np.int64), cols.astype(np.int64))),
                           shape=(len(baskets), item_factors.shape[0]))
    csr = ConfidenceCSR.from_scipy(confidence_matrix(counts, alpha), item_factors.device, item_factors.dtype)
    return solve_reference(csr, item_factors, regularization)


def history_user_factors(wals, split, targets: str = "test") -> torch.Tensor:
    """``(users, k)`` user factors folded in (:func:`fold_in`) from each user's whole history
    before ``targets`` (``"valid"``: the training part; ``"test"``: it and the validation item).

    The fitted vectors are solved from the training part only, so for test targets they miss
    the item right before the target, which the prompt shows; these do not. No target is
    read: a history ends before its target.

    Args:
        wals: The fitted :class:`WALS` (its item factors, ``λ`` and ``alpha``).
        split: The :class:`~llmrec_lite.split.LeaveOneOutSplit` it was fitted on.
        targets: ``"valid"`` or ``"test"``.
    """
    histories = [split.history(u, targets) for u in range(split.num_users)]
    return fold_in(wals.item_factors.float(), histories, wals.config.regularization, wals.config.alpha)


EVAL_USER_VECTORS = ("fitted", "folded")


def user_vectors(way: str, wals, split, targets: str = "test") -> torch.Tensor | None:
    """The user vectors prompts for ``targets`` read: ``None`` for ``"fitted"`` (the fit's own),
    :func:`history_user_factors` for ``"folded"``.

    Raises:
        ValueError: ``way`` is neither.
    """
    if way not in EVAL_USER_VECTORS:
        raise ValueError(f"Unknown eval_user_vectors {way!r}; choose one of {', '.join(EVAL_USER_VECTORS)}.")
    return None if way == "fitted" else history_user_factors(wals, split, targets)


@dataclass
class WALS:
    """Implicit-feedback WALS with interchangeable solvers and backends.

    Example:
        >>> model = WALS(WALSConfig(num_factors=32, iterations=10)).fit(split.train_matrix())
        >>> scores = model.user_factors @ model.item_factors.T

    Attributes:
        config: Hyper-parameters.
        user_factors: ``(users, k)`` float32 tensor after :meth:`fit`.
        item_factors: ``(items, k)`` float32 tensor after :meth:`fit`.
        history: One record per iteration: ``iteration``, ``loss``, ``seconds`` (solver
            time only; computing the loss is not counted).
    """

    config: WALSConfig = field(default_factory=WALSConfig)
    user_factors: torch.Tensor | None = None
    item_factors: torch.Tensor | None = None
    history: list[dict] = field(default_factory=list)

    def fit(self, user_items: sp.spmatrix, show_progress: bool = True, track_loss: bool = True) -> "WALS":
        """Fits the factors on a users x items matrix of interaction counts.

        Args:
            user_items: Training interactions only (``LeaveOneOutSplit.train_matrix()``).
            show_progress: Show a tqdm bar.
            track_loss: Compute the normalised loss after every iteration.
        """
        cfg = self.config
        conf = confidence_matrix(user_items, cfg.alpha)
        self.history = []
        if cfg.backend == "implicit":
            self._fit_implicit(conf, show_progress, track_loss)
        else:
            self._fit_torch(conf, show_progress, track_loss)
        # NaN scores would rank every target first (HR@10 = 1): such factors are never returned
        if not (torch.isfinite(self.user_factors).all() and torch.isfinite(self.item_factors).all()):
            raise ValueError(f"WALS produced non-finite factors (regularization={cfg.regularization}, alpha={cfg.alpha}, "
                             f"{cfg.num_factors} factors): use smaller, finite settings.")
        return self

    def _initial_factors(self, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        # Small positive noise, drawn on the CPU so that CPU and CUDA runs start identically.
        gen = torch.Generator().manual_seed(self.config.seed)
        users = torch.rand(shape[0], self.config.num_factors, generator=gen) * 0.01
        items = torch.rand(shape[1], self.config.num_factors, generator=gen) * 0.01
        return users, items

    def _fit_torch(self, conf: sp.csr_matrix, show_progress: bool, track_loss: bool) -> None:
        cfg = self.config
        device = resolve_device(cfg.device)
        dtype = torch.float32
        by_user = ConfidenceCSR.from_scipy(conf, device, dtype)
        by_item = ConfidenceCSR.from_scipy(conf.T.tocsr(), device, dtype)
        x, y = (t.to(device) for t in self._initial_factors(conf.shape))
        bar = tqdm(range(cfg.iterations), desc=f"WALS ({cfg.solver}, {device.type})", disable=not show_progress)
        for it in bar:
            _sync(device)
            start = time.perf_counter()
            x = self._half_step(by_user, y, x)
            y = self._half_step(by_item, x, y)
            _sync(device)
            seconds = time.perf_counter() - start
            self._record(it, seconds, conf, x, y, track_loss, bar)
        self.user_factors, self.item_factors = x.cpu(), y.cpu()

    def _half_step(self, csr: ConfidenceCSR, fixed: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.solver == "reference":
            return solve_reference(csr, fixed, cfg.regularization)
        if cfg.solver == "batched":
            return solve_batched(csr, fixed, cfg.regularization)
        return solve_cg(csr, fixed, current, cfg.regularization, cfg.cg_steps)

    def _fit_implicit(self, conf: sp.csr_matrix, show_progress: bool, track_loss: bool) -> None:
        cfg = self.config
        bar = tqdm(total=cfg.iterations, desc="WALS (implicit)", disable=not show_progress)
        # implicit parallelises over rows itself and asks for single-threaded BLAS inside.
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=cfg.num_factors,
                regularization=cfg.regularization,
                alpha=1.0,  # the confidences are already 1 + alpha * r
                iterations=cfg.iterations,
                use_cg=cfg.solver == "cg",
                calculate_training_loss=False,
                num_threads=torch.get_num_threads(),
                random_state=cfg.seed,
            )
            model.cg_steps = cfg.cg_steps
            x0, y0 = self._initial_factors(conf.shape)  # the same start as the torch backend
            model.user_factors, model.item_factors = x0.numpy().copy(), y0.numpy().copy()

            def callback(iteration, elapsed, _loss):
                self._record(iteration, elapsed, conf, model.user_factors, model.item_factors, track_loss, bar)
                bar.update(1)

            model.fit(conf, show_progress=False, callback=callback)
        bar.close()
        self.user_factors = torch.from_numpy(np.ascontiguousarray(model.user_factors, dtype=np.float32))
        self.item_factors = torch.from_numpy(np.ascontiguousarray(model.item_factors, dtype=np.float32))

    def _record(self, iteration, seconds, conf, x, y, track_loss, bar) -> None:
        loss = wals_loss(conf, x, y, self.config.regularization) if track_loss else None
        self.history.append({"iteration": iteration + 1, "loss": loss, "seconds": seconds})
        if loss is not None:
            bar.set_postfix(loss=f"{loss:.5f}")

    @property
    def final_loss(self) -> float | None:
        return self.history[-1]["loss"] if self.history else None

    @property
    def seconds_per_iteration(self) -> float:
        return float(np.mean([h["seconds"] for h in self.history])) if self.history else float("nan")

    def scores(self, users=None) -> torch.Tensor:
        """Dot-product scores ``x_uᵀ y_i`` of ``users`` (default: all) for every item."""
        self._check_fitted()
        x = self.user_factors if users is None else self.user_factors[torch.as_tensor(users)]
        return x @ self.item_factors.T

    def _check_fitted(self) -> None:
        if self.user_factors is None:
            raise RuntimeError("The WALS model is not fitted yet: call fit() or load() first.")

    # ----------------------------------------------------------------------- persistence

    def fingerprint(self) -> str:
        """sha256 of the factor tensors: ties later checkpoints to these exact factors."""
        self._check_fitted()
        digest = hashlib.sha256()
        for t in (self.user_factors, self.item_factors):
            digest.update(t.contiguous().numpy().tobytes())
        return digest.hexdigest()

    def save(self, directory: str | Path, metadata: dict | None = None) -> Path:
        """Writes ``factors.safetensors`` and ``wals.json`` (config, history, metadata).

        Both files are written through temporary files, so a crash leaves no partial file.
        """
        self._check_fitted()
        directory = Path(directory)
        with atomic_path(directory / "factors.safetensors") as tmp:
            save_file(
                {"user_factors": self.user_factors.contiguous(), "item_factors": self.item_factors.contiguous()},
                str(tmp),
            )
        info = {
            "config": asdict(self.config),
            "history": self.history,
            "fingerprint": self.fingerprint(),
            "shape": {"users": int(self.user_factors.shape[0]), "items": int(self.item_factors.shape[0])},
            **(metadata or {}),
        }
        write_json(directory / "wals.json", info)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> tuple["WALS", dict]:
        """Reads factors saved by :meth:`save`; returns the model and its metadata.

        Raises:
            FileNotFoundError: the folder lacks ``factors.safetensors`` or ``wals.json``.
            ValueError: the stored fingerprint does not match the stored factors.
        """
        directory = Path(directory)
        for name in ("factors.safetensors", "wals.json"):
            if not (directory / name).exists():
                raise FileNotFoundError(f"{directory / name} is missing: run `python -m llmrec_lite wals ... --out {directory}`.")
        fix = f"Delete {directory} and fit the factors again (python -m llmrec_lite wals ... --out {directory})."
        info = read_json(directory / "wals.json", fix)
        tensors = load_tensors(directory / "factors.safetensors", fix)
        try:
            model = cls(WALSConfig(**info["config"]), tensors["user_factors"], tensors["item_factors"], info["history"])
            fingerprint = info["fingerprint"]
        except (KeyError, TypeError) as err:  # valid JSON or safetensors, but not what save() writes
            raise CorruptCheckpointError(f"{directory} does not hold what `wals --out` writes ({type(err).__name__}: "
                                         f"{err}). {fix}") from err
        if model.fingerprint() != fingerprint:
            raise ValueError(f"{directory}: the factors do not match the fingerprint in wals.json (corrupted or edited).")
        return model, info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
