"""Atomic, safe-to-load checkpoints and RNG state capture.

Checkpoints are plain nested containers of tensors and Python scalars written
with ``torch.save`` and read back with ``torch.load(weights_only=True)``, so
loading one never runs arbitrary pickled code.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO

import safetensors.torch
import torch

from dgmdsl.runtime.errors import RuntimeUserError

__all__ = [
    "atomic_open",
    "save_checkpoint",
    "load_checkpoint",
    "load_trainable_state",
    "capture_rng_state",
    "restore_rng_state",
    "save_weights_safetensors",
    "load_weights_safetensors",
]

# Types that ``torch.load(weights_only=True)`` reads back; anything else
# would save fine and then fail only when a run is resumed.
_SCALAR_TYPES = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device)
_CONTAINER_TYPES = (list, tuple, set, frozenset)


@contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a binary file that appears at ``path`` only once fully written.

    Writes go to a temporary file in the same directory, which is fsynced and
    then renamed over ``path``; on any error the temporary file is removed and
    an existing ``path`` is left untouched.
    """
    target = Path(path)
    temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open with mode 0o666 honours the umask (mkstemp would force 0o600).
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_directory(target.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable; not possible on every platform, hence best effort."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` (nested dicts/lists of tensors and scalars) atomically."""
    _check_loadable(state, "state")
    try:
        with atomic_open(path) as handle:
            torch.save(state, handle)
    except OSError as error:
        raise RuntimeUserError(
            f"cannot write checkpoint {path}: {error.strerror or error}",
            hint="check the free disk space and the permissions of the run directory",
        ) from None


def _check_loadable(value: Any, where: str) -> None:
    """Raise ``TypeError`` naming the entry that ``weights_only`` could not load."""
    if isinstance(value, (torch.Tensor, torch.Size) + _SCALAR_TYPES):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"checkpoint key {where}[{key!r}] must be a str or int")
            _check_loadable(item, f"{where}[{key!r}]")
        return
    if isinstance(value, _CONTAINER_TYPES):
        for index, item in enumerate(value):
            _check_loadable(item, f"{where}[{index}]")
        return
    raise TypeError(
        f"checkpoint entry {where} has type {type(value).__name__}, which cannot be "
        "loaded with torch.load(weights_only=True); store tensors or plain Python values"
    )


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device | None = None
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` without unpickling code."""
    source = Path(path)
    if not source.is_file():
        raise RuntimeUserError(
            f"no checkpoint at {source}",
            hint="train first with `dgm fit SPEC --out RUN_DIR`, or check the run directory",
        )
    try:
        state = torch.load(source, map_location=map_location, weights_only=True)
    except Exception as error:  # any parse failure means the file is unusable
        raise RuntimeUserError(
            f"cannot read checkpoint {source}: the file is corrupt or not a dgmdsl "
            f"checkpoint ({_first_line(error)})",
            hint="restore the run directory from a backup, or start a new run with --out",
        ) from None
    if not isinstance(state, dict):
        raise RuntimeUserError(
            f"cannot read checkpoint {source}: expected a dictionary, found {type(state).__name__}"
        )
    return state


def load_trainable_state(trainable: Any, state: Mapping[str, Any], source: str | os.PathLike[str]) -> None:
    """`trainable.load_state_dict(state)`, a mismatch reported as the user's error: the
    checkpoint was written for another model (an edited spec, another dgmdsl version)."""
    try:
        trainable.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as error:
        detail = _shorten(" ".join(str(error).split()), 200)  # torch lists the keys on later lines
        raise RuntimeUserError(
            f"the checkpoint {source} does not fit the model its spec compiles to ({detail})",
            hint="it was written for another spec or dgmdsl version; fit the spec again into a new --out",
        ) from None


def _first_line(error: BaseException, limit: int = 160) -> str:
    text = str(error).strip().splitlines()
    return _shorten(text[0] if text else type(error).__name__, limit)


def _shorten(line: str, limit: int) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."


def capture_rng_state() -> dict[str, Any]:
    """The torch CPU and (when in use) CUDA generator states.

    The numpy and Python ``random`` global generators are deliberately not
    captured: the runtime and engines draw all randomness from torch.
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    # Only when CUDA is already in use: querying it would otherwise start it.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (tolerates states loaded onto a GPU)."""
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda")
    if cuda_states and torch.cuda.is_available():
        for index, cuda_state in enumerate(cuda_states[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), index)


def save_weights_safetensors(
    path: str | os.PathLike[str], state_dict: Mapping[str, torch.Tensor]
) -> None:
    """Export a flat ``name -> tensor`` mapping as a ``.safetensors`` file, atomically."""
    # Cloning breaks storage sharing (tied weights), which safetensors rejects.
    tensors = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in state_dict.items()}
    payload = safetensors.torch.save(tensors)
    with atomic_open(path) as handle:
        handle.write(payload)


def load_weights_safetensors(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Read weights written by :func:`save_weights_safetensors`."""
    source = Path(path)
    if not source.is_file():
        raise RuntimeUserError(f"no weights file at {source}")
    try:
        return safetensors.torch.load_file(source, device=str(device))
    except Exception as error:  # any parse failure means the file is unusable
        raise RuntimeUserError(
            f"cannot read weights {source}: the file is corrupt ({_first_line(error)})"
        ) from None
