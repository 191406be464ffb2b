"""Resume a forward at decoder block ``l`` from the residual stream a clean forward left there.

Patching a component set whose lowest patched layer is ``l`` changes nothing below ``l``: blocks
``0..l-1`` of the patched forward would recompute, bit for bit, what the clean forward of the
same model on the same batch already computed. So the clean forward records the residual stream
entering block ``l`` (:func:`recording_residuals`), and the patched forward starts there
(:func:`resuming`): blocks below ``l`` are not run.

How: the residual entering block ``l`` is what block ``l - 1`` returns (every supported decoder
loop feeds a block's output straight to the next), recorded by a forward hook on that block.
To resume, blocks ``0..l-1`` of the decoder's ``ModuleList`` are swapped, for the ``with``
block only, for a parameter-free module that returns the recorded tensor, and restored in
``finally``. Why this and not "slice the list to its tail and overwrite the embedding output":

- the list keeps its length and order, so decoder loops that look up per-layer facts by index
  (Gemma3's and Qwen2's ``config.layer_types[i]`` picking the sliding or full mask and rotary
  table) and each block's own ``layer_idx`` stay right;
- the embedding output is not the residual entering block 0 in every architecture (Gemma3
  scales it, GPT-2 adds position embeddings after ``wte``); a block's output is, in all of them;
- the model still builds its causal/sliding masks and rotary position embeddings from the real
  input ids and attention mask, before the loop, exactly as in the clean forward, so block ``l``
  sees the real positions. What still runs below ``l`` is the embedding lookup and that set-up:
  no block computes.

The same swap serves patching a layer node (:class:`Written`): the patched block returns its
input plus the write patched in, so its attention and MLP do not run either.

Nothing architecture-specific: the block list comes from the architecture table
(:meth:`sumcircuit.models.archs.Arch.blocks`). ``l = n_layers`` (nothing patched) resumes after
the last block: only the final norm and the LM head run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from sumcircuit.errors import SumcircuitError
from sumcircuit.models.archs import Arch
from sumcircuit.models.hooks import hooks


@contextmanager
def recording_residuals(
    model: nn.Module, arch: Arch, layers: Iterable[int]
) -> Iterator[dict[int, torch.Tensor]]:
    """Record, in forwards inside the block, the residual stream ``(B, T, D)`` entering each block
    of ``layers`` (``n_layers``: leaving the last block); the last forward wins.

    Layer 0 needs nothing (resuming there is a plain forward) and is not recorded.
    """
    store: dict[int, torch.Tensor] = {}
    wanted = sorted(set(layers))
    for layer in wanted:
        _check_resume_layer(arch, layer)
    forward = {arch.block_name(layer - 1): _recorder(store, layer) for layer in wanted if layer}
    with hooks(model, forward=forward):
        yield store


def _recorder(store: dict[int, torch.Tensor], layer: int):
    def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if not torch.is_tensor(output):
            raise SumcircuitError(
                f"decoder block {layer - 1} returned a {type(output).__name__}, not the hidden "
                "states; resuming needs a decoder whose blocks return a tensor (transformers 5)"
            )
        store[layer] = output.detach()

    return record


@contextmanager
def resuming(
    model: nn.Module, arch: Arch, layer: int, residuals: Mapping[int, torch.Tensor]
) -> Iterator[None]:
    """Forwards inside the block start at block ``layer`` from ``residuals[layer]`` (recorded by
    :func:`recording_residuals` on the same model and batch); blocks below ``layer`` do not run."""
    _check_resume_layer(arch, layer)
    if layer == 0:
        yield
        return
    if layer not in residuals:
        raise SumcircuitError(
            f"no residual stream recorded for layer {layer}; record it in the clean forward first"
        )
    replay = _Replay(residuals[layer], layer)
    with standing_in(model, arch, {i: replay for i in range(layer)}):
        yield


@contextmanager
def standing_in(model: nn.Module, arch: Arch, modules: Mapping[int, nn.Module]) -> Iterator[None]:
    """Decoder blocks ``i`` replaced by ``modules[i]`` for the ``with`` block only (restored in
    ``finally``); the list keeps its length and order."""
    blocks = arch.blocks(model)
    kept = {i: blocks[i] for i in modules}
    try:
        for i, module in modules.items():
            blocks[i] = module
        yield
    finally:
        for i, block in kept.items():
            blocks[i] = block


class _Replay(nn.Module):
    """Stands in for a skipped block: returns the recorded residual stream, computes nothing."""

    def __init__(self, residual: torch.Tensor, layer: int) -> None:
        super().__init__()
        self.residual = residual  # a plain attribute, not a buffer: it is not model state
        self.layer = layer

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if hidden_states.shape != self.residual.shape:
            raise SumcircuitError(
                f"the residual recorded for layer {self.layer} has shape "
                f"{tuple(self.residual.shape)}, this forward {tuple(hidden_states.shape)}; "
                "resume only the batch it was recorded on"
            )
        return self.residual


class Written(nn.Module):
    """Stands in for a patched block: returns its input plus a given write to the residual stream
    (``(B, T, D)`` from another forward on the same batch, or ``(D,)`` at every position) and
    computes nothing else — what running the block and replacing its write gives, bit for bit."""

    def __init__(self, write: torch.Tensor, layer: int) -> None:
        super().__init__()
        self.write = write  # a plain attribute, not a buffer: it is not model state
        self.layer = layer

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        write = self.write
        if write.shape[-1] != hidden_states.shape[-1] or (
            write.dim() > 1 and write.shape != hidden_states.shape
        ):
            raise SumcircuitError(
                f"the write patched into layer {self.layer} has shape {tuple(write.shape)}, the "
                f"block's input {tuple(hidden_states.shape)}; patch only the batch it was "
                "captured on, between models of the same architecture"
            )
        return hidden_states + write.to(dtype=hidden_states.dtype, device=hidden_states.device)


def _check_resume_layer(arch: Arch, layer: int) -> None:
    if not 0 <= layer <= arch.n_layers:
        raise SumcircuitError(
            f"cannot resume at layer {layer}: this model has layers 0..{arch.n_layers - 1} "
            f"(and {arch.n_layers}, after the last)"
        )
