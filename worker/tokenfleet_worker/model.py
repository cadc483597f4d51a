"""A Llama-family decoder (Llama, Mistral, Qwen2) over a flattened batch with a paged KV cache.

Tokens of all scheduled sequences are concatenated into one [num_tokens] batch so every linear
layer runs once per step. Only attention looks at sequence boundaries: single-token decodes come
first and are attended together, in a few SDPA calls over their gathered contexts padded within
groups of similar length; prefill chunks follow, each attended on its own with a causal mask
offset by its start position.

The KV cache of a layer is a pair of tensors shaped [num_blocks, block_size, kv_heads, head_dim];
the runner tells every token which slot (block * block_size + offset) its key and value go to.
Weights are fused on load: q/k/v into `qkv_proj`, gate/up into `gate_up_proj`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tokenfleet_worker import cpu_kernels
from tokenfleet_worker.fused_kernels import add_rms_norm, rope_and_cache, silu_mul
from tokenfleet_worker.hf_config import ModelConfig
from tokenfleet_worker.paged_attention import paged_decode_attention
from tokenfleet_worker.rope import apply_rope, rope_inverse_frequencies

KVCache = tuple[torch.Tensor, torch.Tensor]


@dataclass
class PrefillChunk:
    query_start: int  # offset of the chunk's first token in the flattened batch
    query_len: int
    context_slots: torch.Tensor | None  # [context_len] cache slots; None when the chunk starts at 0
    mask: torch.Tensor | None  # [query_len, context_len] bool, True = may attend; None when causal from 0


@dataclass
class DecodeGroup:
    """Single-token decodes attended together; their contexts are padded to the group's longest."""

    query_start: int  # offset of the group's first token in the flattened batch
    context_slots: torch.Tensor  # [num_seqs, max_context] cache slots (padding points anywhere valid)
    # [num_seqs, 1, 1, max_context]: bool, True = a real context position; or additive (0 / -inf)
    mask: torch.Tensor
    # Set both to read the paged cache directly (paged_attention.py) instead of gathering contexts.
    block_tables: torch.Tensor | None = None  # [num_seqs, max_blocks]
    context_lens: torch.Tensor | None = None  # [num_seqs]
    # [num_seqs, max_context // block_size]: the blocks behind context_slots, when the slots cover
    # whole blocks; gathering whole blocks copies 16 KiB rows instead of 1 KiB ones (2x faster on CPU).
    context_blocks: torch.Tensor | None = None


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor  # [num_tokens] cache slot of each token
    decode_groups: list[DecodeGroup]  # decodes come first in the batch, group after group
    prefills: list[PrefillChunk]
    # Run the step on the Triton kernels of fused_kernels.py: a decode-only step in one group that
    # attends with the paged kernel (the decode-graph path on CUDA).
    fused: bool = False
    # Where CPU steps gather keys and values (None: fresh tensors, as CUDA's caching allocator
    # makes cheap; and a captured CUDA graph must not see a buffer that a later step replaces).
    workspace: GatherWorkspace | None = None
    # Run the layers' elementwise ops on the C kernels of cpu_kernels.py, and attend decode groups
    # with its kernel reading the paged cache (the groups carry block_tables and context_lens).
    use_cpu_kernels: bool = False


class Linear(nn.Module):
    """y = x W^T + b with uninitialised parameters: the loader fills them (no wasted random init)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.empty(out_features, dtype=dtype, device=device)) if bias else None
        self.packed: torch.Tensor | None = None  # the weight in oneDNN's layout, once `pack` ran
        # The weight in the CPU product kernel's layout (cpu_kernels.pack_panels), which runs
        # products of up to `small_gemm_rows` rows; 0: never.
        self.panels: torch.Tensor | None = None
        self.small_gemm_rows = 0

    def use_small_gemm(self, max_rows: int) -> None:
        """Run products of up to `max_rows` rows on the CPU kernel, if it can take this weight."""
        if max_rows and cpu_kernels.can_tile(self.weight):
            self.panels = cpu_kernels.pack_panels(self.weight)
            self.small_gemm_rows = max_rows

    def stop_small_gemm(self) -> None:
        self.panels, self.small_gemm_rows = None, 0

    def pack(self) -> None:
        """Keep the weight in oneDNN's blocked layout (CPU only) in place of the dense one.

        The dropped `weight` stays as a storage-less meta tensor of the same shape, so parameter
        counts and byte accounting still hold.
        """
        self.packed = pack_weight(self.weight)
        self.weight = nn.Parameter(torch.empty_like(self.weight, device="meta"), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        panels = self.panels
        if panels is not None and cpu_kernels.takes_linear(x, panels, self.small_gemm_rows):
            return cpu_kernels.small_linear(x, panels, self.bias)
        return self.library_linear(x)

    def library_linear(self, x: torch.Tensor) -> torch.Tensor:
        """The product on oneDNN (packed) or torch's default GEMM, never the small-batch kernel."""
        if self.packed is not None:
            return packed_linear(x, self.packed, self.bias)
        return F.linear(x, self.weight, self.bias)


def can_pack(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether `pack_weight` applies: oneDNN built in, a CPU tensor of a type its GEMM takes."""
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and dtype == torch.float32


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    # On the AMD EPYC CPUs we run on, MKL's sgemm reaches 1-2 GB/s of weight reads at decode batch
    # sizes (2-32 rows); oneDNN's GEMM on a pre-reordered weight is 2-4x faster (measured).
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)


def packed_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [None], "")


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float, *, dtype: torch.dtype, device: torch.device | str) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(size, dtype=dtype, device=device))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One fused op, which accumulates half precision in float32. transformers rounds to the model
        # dtype before scaling by the weight; the difference is within one rounding step, and one
        # kernel instead of seven per norm matters on a GPU, where decode time is launch-bound.
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)

    def add_norm(
        self, x: torch.Tensor, residual: torch.Tensor | None, meta: AttentionMetadata
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(norm(residual + x), residual + x); the residual stream starts as x when residual is None."""
        if meta.fused or meta.use_cpu_kernels:
            fused = cpu_kernels.add_rms_norm if meta.use_cpu_kernels else add_rms_norm
            out = fused(x, residual, self.weight, self.eps)  # adds into residual in place
            return out, x if residual is None else residual
        residual = x if residual is None else residual + x
        return self(residual), residual


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, *, dtype: torch.dtype, device: torch.device | str) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.num_kv_heads = config.num_kv_heads
        self.head_dim = config.head_dim
        self.q_size, self.kv_size = config.q_size, config.kv_size
        self.qkv_proj = Linear(
            config.hidden_size,
            self.q_size + 2 * self.kv_size,
            bias=config.qkv_bias,
            dtype=dtype,
            device=device,
        )
        self.o_proj = Linear(
            self.q_size, config.hidden_size, bias=config.o_proj_bias, dtype=dtype, device=device
        )

    def forward(
        self,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        kv_cache: KVCache,
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        num_tokens = hidden.shape[0]
        qkv = self.qkv_proj(hidden)
        if meta.fused:
            group = meta.decode_groups[0]
            assert group.block_tables is not None and group.context_lens is not None
            q = rope_and_cache(qkv, cos, sin, meta.slot_mapping, *kv_cache, self.num_heads)
            out = paged_decode_attention(q, *kv_cache, group.block_tables, group.context_lens)
            return self.o_proj(out.view(num_tokens, self.q_size))
        # Queries and keys sit side by side in qkv: rotate them together, one set of ops per layer.
        qk = qkv[:, : self.q_size + self.kv_size].view(num_tokens, self.num_heads + self.num_kv_heads, -1)
        if meta.use_cpu_kernels:  # rotated in place, keys and values written to the cache, in one call
            cpu_kernels.rope_and_cache(qkv, cos, sin, meta.slot_mapping, *kv_cache, self.num_heads)
        else:
            qk = apply_rope(qk, cos, sin)
        q, k = qk.split([self.num_heads, self.num_kv_heads], dim=1)
        v = qkv[:, self.q_size + self.kv_size :].view(num_tokens, self.num_kv_heads, self.head_dim)
        k_slots = kv_cache[0].view(-1, self.num_kv_heads, self.head_dim)
        v_slots = kv_cache[1].view(-1, self.num_kv_heads, self.head_dim)
        if not meta.use_cpu_kernels:
            k_slots.index_copy_(0, meta.slot_mapping, k)
            v_slots.index_copy_(0, meta.slot_mapping, v)
        groups = meta.decode_groups
        if not meta.prefills and len(groups) == 1 and groups[0].context_slots.shape[0] == num_tokens:
            # All decodes in one group (the decode-graph path): no copy into a shared output.
            out = self.decode_attention(q, kv_cache, groups[0], meta)
            return self.o_proj(out.reshape(num_tokens, self.q_size))
        out = q.new_empty((num_tokens, self.num_heads, self.head_dim))
        for group in meta.decode_groups:
            rows = slice(group.query_start, group.query_start + group.context_slots.shape[0])
            out[rows] = self.decode_attention(q[rows], kv_cache, group, meta)
        for chunk in meta.prefills:
            rows = slice(chunk.query_start, chunk.query_start + chunk.query_len)
            out[rows] = self.prefill_attention(
                q[rows], k[rows], v[rows], (k_slots, v_slots), chunk, meta.workspace
            )
        return self.o_proj(out.view(num_tokens, self.q_size))

    def decode_attention(
        self, q: torch.Tensor, kv_cache: KVCache, group: DecodeGroup, meta: AttentionMetadata
    ) -> torch.Tensor:
        if group.block_tables is not None and group.context_lens is not None:
            attend = cpu_kernels.paged_decode_attention if meta.use_cpu_kernels else paged_decode_attention
            return attend(q, *kv_cache, group.block_tables, group.context_lens)
        workspace = meta.workspace
        num_decodes, max_context = group.context_slots.shape
        # Whole blocks (16 KiB rows) when the slots cover them, else single slots.
        if group.context_blocks is not None:
            index, row_count = group.context_blocks.view(-1), kv_cache[0].shape[0]
        else:
            index, row_count = group.context_slots.view(-1), kv_cache[0].shape[0] * kv_cache[0].shape[1]
        shape = (num_decodes, max_context, self.num_kv_heads, self.head_dim)
        keys = gather_rows(kv_cache[0].view(row_count, -1), index, workspace, 0).view(shape)
        values = gather_rows(kv_cache[1].view(row_count, -1), index, workspace, 1).view(shape)
        # One query per sequence: the heads sharing a KV head become that KV head's "query rows",
        # so grouped-query attention needs no repeated keys.
        group_size = self.num_heads // self.num_kv_heads
        grouped_q = q.view(num_decodes, self.num_kv_heads, group_size, self.head_dim)
        attended = F.scaled_dot_product_attention(
            grouped_q, keys.transpose(1, 2), values.transpose(1, 2), attn_mask=group.mask
        )
        return attended.reshape(num_decodes, self.num_heads, self.head_dim)

    def prefill_attention(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        slots: KVCache,
        chunk: PrefillChunk,
        workspace: GatherWorkspace | None,
    ) -> torch.Tensor:
        if chunk.context_slots is None:
            keys, values = k, v
        else:
            row = self.num_kv_heads * self.head_dim
            keys = gather_rows(slots[0].view(-1, row), chunk.context_slots, workspace, 0).view(
                -1, *k.shape[1:]
            )
            values = gather_rows(slots[1].view(-1, row), chunk.context_slots, workspace, 1).view(
                -1, *v.shape[1:]
            )
        attended = F.scaled_dot_product_attention(
            q.transpose(0, 1).unsqueeze(0),
            keys.transpose(0, 1).unsqueeze(0),
            values.transpose(0, 1).unsqueeze(0),
            attn_mask=chunk.mask,
            is_causal=chunk.mask is None,
            enable_gqa=True,
        )
        return attended.squeeze(0).transpose(0, 1)


class GatherWorkspace:
    """Reused outputs for the per-layer key and value gathers of a CPU step.

    A fresh gather output of 10+ MB is page-faulted in every call (the kernel zeroes each page): on
    the 2-core VM that made a gather six times slower than the copy itself, and the gathers half a
    batch-48 decode step. A gather's output lives only until the layer's attention has read it.
    """

    def __init__(self) -> None:
        self.buffers = [torch.empty(0), torch.empty(0)]  # keys, values

    def output(self, which: int, rows: int, row_size: int, like: torch.Tensor) -> torch.Tensor:
        need = rows * row_size
        buffer = self.buffers[which]
        if buffer.numel() < need or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = self.buffers[which] = torch.empty(need, dtype=like.dtype, device=like.device)
        return buffer[:need].view(rows, row_size)


def gather_rows(
    table: torch.Tensor, index: torch.Tensor, workspace: GatherWorkspace | None, which: int
) -> torch.Tensor:
    """`table[index]` for a 2-D table, into the workspace's buffer `which` when there is one.

    2-D because torch's CPU index_select copies whole rows of a 2-D tensor with memcpy but walks a
    4-D one element by element (6x slower measured).
    """
    if workspace is None:
        return table.index_select(0, index)
    out = workspace.output(which, index.numel(), table.shape[1], table)
    return torch.index_select(table, 0, index, out=out)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig, *, dtype: torch.dtype, device: torch.device | str) -> None:
        super().__init__()
        self.intermediate_size = config.intermediate_size
        self.gate_up_proj = Linear(
            config.hidden_size, 2 * config.intermediate_size, bias=False, dtype=dtype, device=device
        )
        self.down_proj = Linear(
            config.intermediate_size, config.hidden_size, bias=False, dtype=dtype, device=device
        )

    def forward(self, x: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        if meta.fused or meta.use_cpu_kernels:
            activation = cpu_kernels.silu_mul if meta.use_cpu_kernels else silu_mul
            return self.down_proj(activation(self.gate_up_proj(x)))
        gate, up = self.gate_up_proj(x).split(self.intermediate_size, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, *, dtype: torch.dtype, device: torch.device | str) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype, device=device)
        self.self_attn = Attention(config, dtype=dtype, device=device)
        self.post_attention_layernorm = RMSNorm(
            config.hidden_size, config.rms_norm_eps, dtype=dtype, device=device
        )
        self.mlp = MLP(config, dtype=dtype, device=device)
        self.cpu_decode: cpu_kernels.DecodeLayer | None = None  # see `plan_cpu_decode`

    def plan_cpu_decode(self, kv_cache: KVCache, block_size: int, scratch: cpu_kernels.Scratch) -> None:
        """Run this layer's decode steps as one C call where all four products run on the CPU
        kernel (after `DecoderModel.tune_small_gemm`); else leave it op by op."""
        attention, mlp = self.self_attn, self.mlp
        products = (attention.qkv_proj, attention.o_proj, mlp.gate_up_proj, mlp.down_proj)
        panels = [linear.panels for linear in products]
        if any(p is None for p in panels) or any(linear.bias is not None for linear in products[2:]):
            self.cpu_decode = None
            return
        norms = (self.input_layernorm, self.post_attention_layernorm)
        tensors = [
            *(p for p in panels if p is not None),
            *(b for b in (attention.qkv_proj.bias, attention.o_proj.bias) if b is not None),
            *(norm.weight for norm in norms),
            *kv_cache,
        ]

        def address(tensor: torch.Tensor | None) -> int | None:
            return None if tensor is None else tensor.data_ptr()

        plan = cpu_kernels.LayerPlan(
            *map(address, (panels[0], attention.qkv_proj.bias, panels[1], attention.o_proj.bias)),
            *map(address, (panels[2], panels[3], norms[0].weight, norms[1].weight, *kv_cache)),
            self.input_layernorm.weight.shape[0],
            mlp.intermediate_size,
            attention.num_heads,
            attention.num_kv_heads,
            attention.head_dim,
            block_size,
            self.input_layernorm.eps,
            attention.head_dim**-0.5,
        )
        rows = min(linear.small_gemm_rows for linear in products)
        self.cpu_decode = cpu_kernels.DecodeLayer(plan, tensors, rows, scratch)

    def forward(
        self,
        hidden: torch.Tensor,
        residual: torch.Tensor | None,
        cos: torch.Tensor,
        sin: torch.Tensor,
        kv_cache: KVCache,
        meta: AttentionMetadata,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the MLP's output, the residual stream before it is added): the add is left to the next
        norm, so it can run in the same kernel."""
        normed, residual = self.input_layernorm.add_norm(hidden, residual, meta)
        attended = self.self_attn(normed, cos, sin, kv_cache, meta)
        normed, residual = self.post_attention_layernorm.add_norm(attended, residual, meta)
        return self.mlp(normed, meta), residual


class DecoderModel(nn.Module):
    """Parameters are named as in a Hugging Face checkpoint without the `model.` prefix."""

    def __init__(
        self, config: ModelConfig, *, dtype: torch.dtype, device: torch.device | str = "cpu"
    ) -> None:
        super().__init__()
        self.config = config
        # An explicit weight skips the random init.
        self.embed_tokens = nn.Embedding(
            config.vocab_size,
            config.hidden_size,
            _weight=torch.empty(config.vocab_size, config.hidden_size, dtype=dtype, device=device),
        )
        self.layers = nn.ModuleList(
            DecoderLayer(config, dtype=dtype, device=device) for _ in range(config.num_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype, device=device)
        self.lm_head: Linear | None = None
        if not config.tie_word_embeddings:
            self.lm_head = Linear(
                config.hidden_size, config.vocab_size, bias=False, dtype=dtype, device=device
            )
        self.packed_head: torch.Tensor | None = None  # tied head in oneDNN's layout, once packed
        self.panel_head: torch.Tensor | None = None  # tied head in the CPU kernel's, if it runs it
        self.small_gemm_rows = 0
        # Each layer's one-call CPU decode, when every layer has one (`plan_cpu_decode`), and the
        # caches they write; a decode step of up to `cpu_decode_rows` rows runs on them.
        self.cpu_decode_layers: list[cpu_kernels.DecodeLayer] = []
        self.cpu_decode_caches: list[KVCache] | None = None
        self.inv_freq: torch.Tensor
        self.register_buffer("inv_freq", rope_inverse_frequencies(config).to(device), persistent=False)

    def rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sign-folded sin, [T, 1, head_dim] (broadcast over heads): see `apply_rope`."""
        freqs = positions.float()[:, None] * self.inv_freq[None, :]
        angles = torch.cat((freqs, freqs), dim=-1)[:, None, :]
        sin = angles.sin()
        half = sin.shape[-1] // 2
        signed_sin = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
        return angles.cos().to(dtype), signed_sin.to(dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        kv_caches: list[KVCache],
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        """Return the final normed hidden states, [num_tokens, hidden_size]."""
        hidden = self.embed_tokens(input_ids)
        cos, sin = self.rope(positions, hidden.dtype)
        residual: torch.Tensor | None = None
        group = self.one_call_decode_group(hidden.shape[0], kv_caches, meta)
        if group is not None:
            assert group.block_tables is not None and group.context_lens is not None
            slots = meta.slot_mapping.to(torch.int64).contiguous()
            tables = group.block_tables.to(torch.int64).contiguous()
            lens = group.context_lens.to(torch.int64).contiguous()
            for decode_layer in self.cpu_decode_layers:
                hidden, residual = decode_layer(hidden, residual, cos, sin, slots, tables, lens)
        else:
            for layer, kv_cache in zip(self.layers, kv_caches, strict=True):
                hidden, residual = layer(hidden, residual, cos, sin, kv_cache, meta)
        return self.norm.add_norm(hidden, residual, meta)[0]

    @property
    def cpu_decode_rows(self) -> int:
        """The most decodes a step may have to run one C call a layer; 0: never."""
        return min((layer.rows for layer in self.cpu_decode_layers), default=0)

    def one_call_decode_group(
        self, num_tokens: int, kv_caches: list[KVCache], meta: AttentionMetadata
    ) -> DecodeGroup | None:
        """The step's decode group when it can run one C call a layer: CPU kernels, decodes only,
        in one paged group, no more rows than every layer's plan takes, on the planned caches."""
        if not (meta.use_cpu_kernels and kv_caches is self.cpu_decode_caches) or meta.prefills:
            return None
        if len(meta.decode_groups) != 1 or num_tokens > self.cpu_decode_rows:
            return None
        group = meta.decode_groups[0]
        return group if group.block_tables is not None and group.context_lens is not None else None

    def plan_cpu_decode(self, kv_caches: list[KVCache], block_size: int) -> int:
        """Plan each layer's one-call CPU decode (after `tune_small_gemm`) and return how many
        decodes a step may have to take it: 0 unless every layer can."""
        scratch = cpu_kernels.Scratch()
        planned = []
        for layer, kv_cache in zip(self.layers, kv_caches, strict=True):
            assert isinstance(layer, DecoderLayer)
            layer.plan_cpu_decode(kv_cache, block_size, scratch)
            planned.append(layer.cpu_decode)
        complete = all(p is not None for p in planned)
        self.cpu_decode_layers = [p for p in planned if p is not None] if complete else []
        self.cpu_decode_caches = kv_caches
        return self.cpu_decode_rows

    def use_small_gemm(self, max_rows: int = cpu_kernels.MAX_ROWS) -> None:
        """Run products of up to `max_rows` rows on the CPU small-batch kernel, on a copy of each
        weight in its panel layout (float32 weights twice in RAM, beside `pack_linears`' copy)."""
        for module in self.modules():
            if isinstance(module, Linear):
                module.use_small_gemm(max_rows)
        if self.lm_head is None and max_rows and cpu_kernels.can_tile(self.embed_tokens.weight):
            self.panel_head = cpu_kernels.pack_panels(self.embed_tokens.weight)
            self.small_gemm_rows = max_rows

    def tune_small_gemm(self) -> dict[str, int]:
        """Measure per weight shape up to how many rows the small-batch kernel beats the library
        GEMM, and use it only there (after `use_small_gemm` and `pack_linears`). A product that the
        kernel never wins drops its panels. Returns rows by shape, for the log."""
        linears: list[Linear] = []
        products: list[cpu_kernels.Product] = []
        for module in self.modules():
            if isinstance(module, Linear) and module.panels is not None:
                key = "x".join(map(str, module.weight.shape))
                linears.append(module)
                products.append(cpu_kernels.Product(key, module.panels, module.library_linear))
        if self.panel_head is not None:  # the tied head reads the embedding table
            products.append(cpu_kernels.Product("tied head", self.panel_head, self.library_logits))
        found = cpu_kernels.crossover_rows(products)
        for module, product in zip(linears, products, strict=False):  # (the tied head is last)
            module.small_gemm_rows = found[product.key]
            if not module.small_gemm_rows:
                module.stop_small_gemm()
        if self.panel_head is not None:
            self.small_gemm_rows = found["tied head"]
            if not self.small_gemm_rows:
                self.panel_head = None
        return found

    def pack_linears(self) -> None:
        """Run every matrix product on oneDNN-packed weights (see `pack_weight`); CPU float32 only.

        A tied head gets a packed copy: the embedding lookup still needs the dense table.
        """
        for module in self.modules():
            if isinstance(module, Linear):
                module.pack()
        if self.lm_head is None:
            self.packed_head = pack_weight(self.embed_tokens.weight)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """float32 logits [n, vocab_size] for the given hidden states."""
        if self.lm_head is not None:
            return self.lm_head(hidden).float()
        panels = self.panel_head
        if panels is not None and cpu_kernels.takes_linear(hidden, panels, self.small_gemm_rows):
            return cpu_kernels.small_linear(hidden, panels, None)
        return self.library_logits(hidden)

    def library_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The tied head's product on oneDNN (packed) or torch's default GEMM, never the kernel."""
        if self.packed_head is not None:
            return packed_linear(hidden, self.packed_head, None).float()
        return F.linear(hidden, self.embed_tokens.weight).float()
