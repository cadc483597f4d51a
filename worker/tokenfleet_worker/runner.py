"""TorchRunner: the device side of an engine step (the Runner protocol of batch.py).

It owns the model and the paged KV cache. Each step it flattens the batch (single-token decodes
first, then prefill chunks), computes every token's cache slot from its sequence's block table,
runs the model once, and samples a token for each sequence whose chunk reaches its last token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from tokenfleet_worker.batch import SampledToken, ScheduledSeq, StepBatch
from tokenfleet_worker.cpu_kernels import MAX_ROWS as SMALL_GEMM_MAX_ROWS
from tokenfleet_worker.cpu_kernels import gemm_builds
from tokenfleet_worker.cpu_kernels import library as cpu_kernel_library
from tokenfleet_worker.decode_graphs import DecodeGraphs
from tokenfleet_worker.hf_config import ModelConfig
from tokenfleet_worker.loader import load_model, parse_dtype
from tokenfleet_worker.model import (
    AttentionMetadata,
    DecodeGroup,
    GatherWorkspace,
    KVCache,
    PrefillChunk,
    can_pack,
)
from tokenfleet_worker.paged_attention import available
from tokenfleet_worker.sampling import sample

log = logging.getLogger(__name__)

DEFAULT_CPU_KV_CACHE_BYTES = 256 * 1024**2
CUDA_ACTIVATION_RESERVE_BYTES = 1024**3  # left free for activations and logits
MIN_GROUP_CONTEXT = 64  # decodes with contexts up to twice this always share a group


@dataclass
class StepInputs:
    input_ids: torch.Tensor
    positions: torch.Tensor
    meta: AttentionMetadata
    sample_rows: torch.Tensor  # flattened index of the last token of each sequence to sample
    sample_seqs: list[ScheduledSeq]  # in batch order
    first_rows: dict[int, int]  # seq_id -> flattened index of its chunk's first token


def kv_bytes_per_block(config: ModelConfig, block_size: int, dtype: torch.dtype) -> int:
    element_size = torch.empty((), dtype=dtype).element_size()
    return 2 * config.num_layers * block_size * config.num_kv_heads * config.head_dim * element_size


def kv_cache_budget(device: torch.device, kv_cache_bytes: int | None, gpu_memory_utilization: float) -> int:
    """Bytes to give the KV cache: explicit, a CPU default, or a fraction of the GPU after the weights."""
    if kv_cache_bytes is not None:
        return kv_cache_bytes
    if device.type != "cuda":
        return DEFAULT_CPU_KV_CACHE_BYTES
    free, total = torch.cuda.mem_get_info(device)
    used = total - free
    return int(total * gpu_memory_utilization) - used - CUDA_ACTIVATION_RESERVE_BYTES


def token_slots(seq: ScheduledSeq, positions: torch.Tensor, block_size: int) -> torch.Tensor:
    table = torch.tensor(seq.block_table, dtype=torch.int64)
    block_index = positions // block_size
    if int(block_index.max()) >= len(table):
        raise ValueError(
            f"sequence {seq.seq_id}: block table of {len(table)} blocks does not cover position "
            f"{int(positions.max())} (block size {block_size})"
        )
    return table[block_index] * block_size + positions % block_size


def decode_context(
    decodes: list[ScheduledSeq], block_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Context blocks [D, B], their slots [D, B * block_size], the mask [D, 1, 1, B * block_size] and
    the context lengths [D] of single-token decodes, padded to the longest context's block count B."""
    context_lens = torch.tensor([s.start_pos + 1 for s in decodes])
    max_blocks = (int(context_lens.max()) + block_size - 1) // block_size
    tables = torch.zeros((len(decodes), max_blocks), dtype=torch.int64)
    for row, seq in enumerate(decodes):
        # token_slots has already checked that the table covers the context.
        needed = (seq.start_pos + block_size) // block_size
        tables[row, :needed] = torch.tensor(seq.block_table[:needed])
    positions = torch.arange(max_blocks * block_size)
    slots = tables[:, positions // block_size] * block_size + positions % block_size
    mask = positions[None, :] < context_lens[:, None]
    return tables, slots, mask[:, None, None, :], context_lens


def group_by_context(decodes: list[ScheduledSeq]) -> list[list[ScheduledSeq]]:
    """Decodes sorted by context length, cut where a context passes twice the group's shortest.

    Padding every context to the batch's longest would waste up to half the attention work on
    mixed lengths; short contexts share one group so tiny groups do not multiply kernel calls.
    """
    groups: list[list[ScheduledSeq]] = []
    for seq in sorted(decodes, key=lambda s: s.start_pos):
        if groups and seq.start_pos + 1 <= 2 * max(groups[-1][0].start_pos + 1, MIN_GROUP_CONTEXT):
            groups[-1].append(seq)
        else:
            groups.append([seq])
    return groups


def build_step_inputs(
    batch: StepBatch, block_size: int, max_model_len: int, *, paged: bool = False
) -> StepInputs:
    """CPU tensors for one step; decodes are laid out first so they attend in one call. With `paged`
    the decode groups carry their block tables and context lengths (for a paged-attention kernel)."""
    empty = [s.seq_id for s in batch.seqs if not s.token_ids]
    if empty:
        raise ValueError(f"sequences {empty} have an empty chunk")
    decodes = [s for s in batch.seqs if len(s.token_ids) == 1]
    # Grouping by context length only saves padding; a paged kernel reads no padding: one group.
    decode_groups = [decodes] if paged and decodes else group_by_context(decodes)
    decodes = [s for group in decode_groups for s in group]
    prefills = [s for s in batch.seqs if len(s.token_ids) > 1]
    ids: list[int] = []
    position_parts: list[torch.Tensor] = []
    slot_parts: list[torch.Tensor] = []
    last_row: dict[int, int] = {}
    chunks: list[PrefillChunk] = []
    for seq in decodes + prefills:
        end = seq.start_pos + len(seq.token_ids)
        if seq.start_pos < 0 or end > max_model_len:
            raise ValueError(
                f"sequence {seq.seq_id}: positions [{seq.start_pos}, {end}) exceed {max_model_len}"
            )
        positions = torch.arange(seq.start_pos, end)
        if len(seq.token_ids) > 1:
            chunks.append(prefill_chunk(seq, len(ids), positions, block_size))
        ids.extend(seq.token_ids)
        position_parts.append(positions)
        slot_parts.append(token_slots(seq, positions, block_size))
        last_row[seq.seq_id] = len(ids) - 1
    groups: list[DecodeGroup] = []
    for group in decode_groups:
        blocks, slots, mask, lens = decode_context(group, block_size)
        groups.append(DecodeGroup(last_row[group[0].seq_id], slots, mask, context_blocks=blocks))
        if paged:
            groups[-1].block_tables, groups[-1].context_lens = blocks, lens
    sample_seqs = [s for s in batch.seqs if s.needs_sample]
    meta = AttentionMetadata(slot_mapping=torch.cat(slot_parts), decode_groups=groups, prefills=chunks)
    return StepInputs(
        input_ids=torch.tensor(ids, dtype=torch.int64),
        positions=torch.cat(position_parts),
        meta=meta,
        sample_rows=torch.tensor([last_row[s.seq_id] for s in sample_seqs], dtype=torch.int64),
        sample_seqs=sample_seqs,
        first_rows={s.seq_id: last_row[s.seq_id] - len(s.token_ids) + 1 for s in batch.seqs},
    )


def prefill_chunk(
    seq: ScheduledSeq, query_start: int, positions: torch.Tensor, block_size: int
) -> PrefillChunk:
    if seq.start_pos == 0:
        return PrefillChunk(query_start, len(positions), context_slots=None, mask=None)
    context_positions = torch.arange(int(positions[-1]) + 1)
    mask = context_positions[None, :] <= positions[:, None]
    return PrefillChunk(query_start, len(positions), token_slots(seq, context_positions, block_size), mask)


class TorchRunner:
    """Runs steps of a Hugging Face Llama-family checkpoint on CPU or CUDA with a paged KV cache."""

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        block_size: int = 16,
        kv_cache_bytes: int | None = None,
        gpu_memory_utilization: float = 0.9,
        decode_graphs: bool = False,
        paged_attention: bool = False,
        fused_kernels: bool = False,
        lookahead_decode: bool = False,
        pack_weights: bool | None = None,
        cpu_kernels: bool | None = None,
        small_gemm_rows: int | None = None,
    ) -> None:
        """`decode_graphs` runs decode-only steps through bucketed static buffers (CUDA graphs on CUDA);
        `paged_attention` makes those steps attend with the Triton kernel that reads the paged cache;
        `fused_kernels` (with it) runs their norms, rotary embedding, cache writes and activation on
        the fused Triton kernels; `lookahead_decode` launches each greedy decode step's successor before
        it is asked for (decode_graphs.py);
        `pack_weights` (default: wherever it applies, CPU float32) runs matrix products on
        oneDNN-packed weights; `cpu_kernels` (default: wherever they compile, CPU float32 eager) runs
        few-row products, decode attention and each layer's elementwise ops on the C kernels of
        cpu_kernels.py; `small_gemm_rows` (default: measured per weight shape at start-up) is how
        many rows a product may have to run on the small-batch kernel rather than oneDNN."""
        if block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available")
        self.dtype = parse_dtype(dtype)
        if self.device.type == "cuda":
            # cuDNN's SDPA spends ~2 ms of CPU per call on our varying decode and prefill shapes
            # (measured on an H200, torch 2.11): the flash and memory-efficient kernels do not.
            torch.backends.cuda.enable_cudnn_sdp(False)
        if paged_attention and not (decode_graphs and available(self.device)):
            raise ValueError("paged_attention needs decode_graphs and Triton (CUDA, or TRITON_INTERPRET=1)")
        if fused_kernels and not paged_attention:
            raise ValueError("fused_kernels needs paged_attention")
        if lookahead_decode and not decode_graphs:
            raise ValueError("lookahead_decode needs decode_graphs")
        self.model = load_model(Path(model_dir), self.device, self.dtype)
        self.packed_weights = can_pack(self.device, self.dtype) if pack_weights is None else pack_weights
        kernels_apply = (
            self.device.type == "cpu"
            and self.dtype == torch.float32
            and not decode_graphs
            and self.model.config.head_dim % 8 == 0
        )
        self.cpu_kernels = kernels_apply and cpu_kernel_library() is not None
        if cpu_kernels is not None:
            if cpu_kernels and not self.cpu_kernels:
                raise ValueError(
                    "cpu_kernels needs a CPU float32 model (head_dim a multiple of 8) without decode "
                    "graphs, AVX2 and a C compiler"
                )
            self.cpu_kernels = cpu_kernels
        if self.cpu_kernels:
            self.model.use_small_gemm(SMALL_GEMM_MAX_ROWS if small_gemm_rows is None else small_gemm_rows)
        if self.packed_weights:
            if not can_pack(self.device, self.dtype):
                raise ValueError("pack_weights needs a CPU float32 model and a torch built with oneDNN")
            self.model.pack_linears()
        self.small_gemm_rows: dict[str, int] = {}
        if self.cpu_kernels and small_gemm_rows is None:
            self.small_gemm_rows = self.model.tune_small_gemm()
        self.config: ModelConfig = self.model.config
        self.block_size = block_size
        self.vocab_size = self.config.vocab_size
        self.max_model_len = self.config.max_position_embeddings
        block_bytes = kv_bytes_per_block(self.config, block_size, self.dtype)
        budget = kv_cache_budget(self.device, kv_cache_bytes, gpu_memory_utilization)
        self.num_blocks = budget // block_bytes
        if self.num_blocks < 1:
            raise ValueError(
                f"KV cache budget of {budget} bytes is too small for one block of {block_bytes} bytes"
            )
        # With decode graphs one spare block past the managed ones absorbs the padding rows' writes.
        self.kv_caches = self.allocate_kv_cache(self.num_blocks + (1 if decode_graphs else 0))
        if self.cpu_kernels:
            self.model.plan_cpu_decode(self.kv_caches, block_size)
        self.decode_graphs: DecodeGraphs | None = None
        # CUDA's caching allocator already reuses gather outputs; on CPU each would page-fault in.
        self.gather_workspace = GatherWorkspace() if self.device.type == "cpu" else None
        if decode_graphs:
            self.decode_graphs = DecodeGraphs(
                self.model,
                self.kv_caches,
                block_size=block_size,
                sink_block=self.num_blocks,
                max_model_len=self.max_model_len,
                paged_kernel=paged_attention,
                fused_kernels=fused_kernels,
                lookahead=lookahead_decode,
            )
        log.info(
            "event=kv_cache_allocated blocks=%d block_size=%d bytes=%d device=%s packed_weights=%s"
            " cpu_kernels=%s small_gemm_rows=%s",
            self.num_blocks,
            block_size,
            self.num_blocks * block_bytes,
            self.device,
            self.packed_weights,
            gemm_builds()[-1] if self.cpu_kernels else False,
            ",".join(f"{shape}:{rows}" for shape, rows in self.small_gemm_rows.items()) or "-",
        )

    def allocate_kv_cache(self, num_blocks: int) -> list[KVCache]:
        shape = (
            self.config.num_layers,
            2,
            num_blocks,
            self.block_size,
            self.config.num_kv_heads,
            self.config.head_dim,
        )
        cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
        return [(cache[layer, 0], cache[layer, 1]) for layer in range(self.config.num_layers)]

    def check_block_ids(self, batch: StepBatch) -> None:
        for seq in batch.seqs:
            if seq.block_table and (max(seq.block_table) >= self.num_blocks or min(seq.block_table) < 0):
                raise ValueError(f"sequence {seq.seq_id}: block id outside [0, {self.num_blocks})")

    @torch.inference_mode()
    def execute(self, batch: StepBatch) -> list[SampledToken]:
        """Run one step; return a token per sequence with `needs_sample`, in batch order."""
        if not batch.seqs:
            return []
        self.check_block_ids(batch)
        graphs = self.decode_graphs
        if graphs is not None:
            bucket = graphs.bucket(batch.seqs)
            if bucket is not None and all(
                s.sampling.is_greedy and s.sampling.logprobs is None for s in batch.seqs
            ):
                return graphs.greedy_tokens(batch.seqs, bucket)
            if bucket is not None:
                return sample(graphs.logits(batch.seqs, bucket), batch.seqs)
            graphs.discard_ahead()  # a step on the eager path: a guess made before it is stale
        inputs = build_step_inputs(batch, self.block_size, self.max_model_len, paged=self.cpu_kernels)
        meta = move_metadata(inputs.meta, self.device)
        meta.workspace = self.gather_workspace
        meta.use_cpu_kernels = self.cpu_kernels
        hidden = self.model(
            inputs.input_ids.to(self.device), inputs.positions.to(self.device), self.kv_caches, meta
        )
        if not inputs.sample_seqs:
            return []
        logits = self.model.compute_logits(hidden[inputs.sample_rows.to(self.device)])
        return sample(logits, inputs.sample_seqs)


def move_metadata(meta: AttentionMetadata, device: torch.device) -> AttentionMetadata:
    if device.type == "cpu":
        return meta

    def to(tensor: torch.Tensor | None) -> torch.Tensor | None:
        return None if tensor is None else tensor.to(device, non_blocking=True)

    return AttentionMetadata(
        slot_mapping=meta.slot_mapping.to(device),
        decode_groups=[
            DecodeGroup(
                g.query_start,
                g.context_slots.to(device),
                g.mask.to(device),
                context_blocks=to(g.context_blocks),
            )
            for g in meta.decode_groups
        ],
        prefills=[
            PrefillChunk(c.query_start, c.query_len, to(c.context_slots), to(c.mask)) for c in meta.prefills
        ],
    )
