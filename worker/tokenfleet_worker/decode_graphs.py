"""Decode-only steps from static, bucketed buffers, replayed as CUDA graphs on CUDA.

An eager decode step of a 1B model launches hundreds of small kernels from Python, and on a GPU
the launches, not the memory traffic, set the step time. Here a step made only of single-token
decodes is padded to a (batch, context blocks) bucket so its shapes are fixed, and everything the
model needs is derived on the device from one packed int64 buffer (token id, position, block table
per row). A step then costs one small host-to-device copy and one graph replay.

Padding rows write their keys and values into a spare "sink" block that lies beyond the blocks the
engine manages, and attend only to it, so they never touch a real sequence's cache. Contexts are
padded to the bucket's block count and masked, as in the eager path.

On CPU the same bucketed path runs without capture: that is how it is tested without a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tokenfleet_worker.batch import ScheduledSeq
from tokenfleet_worker.model import AttentionMetadata, DecodeGroup, DecoderModel, KVCache

MAX_BATCH_BUCKET = 256
WARMUP_RUNS = 2  # cuBLAS and the attention kernels pick their workspaces before capture


def geometric_buckets(limit: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, 16, 24, ... up to and including `limit`: at most 50% padding."""
    buckets: list[int] = []
    power = 1
    while power < limit:
        buckets.append(power)
        if power >= 2 and power + power // 2 < limit:
            buckets.append(power + power // 2)
        power *= 2
    buckets.append(limit)
    return sorted(set(buckets))


def smallest_fitting(buckets: Sequence[int], value: int) -> int | None:
    for bucket in buckets:
        if bucket >= value:
            return bucket
    return None


@dataclass
class GraphEntry:
    """The static buffers of one bucket, and its captured graph once captured (CUDA only)."""

    packed: torch.Tensor  # [batch, 2 + blocks] int64: token id, position, block table
    logits: torch.Tensor | None = None  # the graph's output, overwritten by every replay
    graph: torch.cuda.CUDAGraph | None = None


class DecodeGraphs:
    """Runs decode-only steps through bucketed static buffers; captures a graph per bucket on CUDA."""

    def __init__(
        self,
        model: DecoderModel,
        kv_caches: list[KVCache],
        *,
        block_size: int,
        sink_block: int,
        max_model_len: int,
        max_batch: int = MAX_BATCH_BUCKET,
        paged_kernel: bool = False,
    ) -> None:
        """`paged_kernel`: attend with the Triton kernel of paged_attention.py (may be switched later)."""
        self.model = model
        self.kv_caches = kv_caches
        self.block_size = block_size
        self.sink_block = sink_block
        self.device = model.embed_tokens.weight.device
        self.dtype = model.embed_tokens.weight.dtype
        self.capture = self.device.type == "cuda"
        self.max_model_len = max_model_len
        max_blocks_per_seq = -(-max_model_len // block_size)
        self.batch_buckets = geometric_buckets(max_batch)
        self.block_buckets = geometric_buckets(max_blocks_per_seq)
        self.paged_kernel = paged_kernel
        self.entries: dict[tuple[int, int, bool], GraphEntry] = {}
        self.pool = torch.cuda.graph_pool_handle() if self.capture else None
        self.block_offsets = torch.arange(block_size, device=self.device)
        self.context_positions = torch.arange(max_blocks_per_seq * block_size, device=self.device)

    def bucket(self, seqs: Sequence[ScheduledSeq]) -> tuple[int, int] | None:
        """The (batch, blocks) bucket for a step, or None when it is not a plain decode step."""
        if not seqs:
            return None
        most_blocks = 0
        for seq in seqs:
            if len(seq.token_ids) != 1 or not seq.needs_sample or not 0 <= seq.start_pos < self.max_model_len:
                return None
            blocks = seq.start_pos // self.block_size + 1
            if blocks > len(seq.block_table):
                return None  # let the eager path report the short block table
            most_blocks = max(most_blocks, blocks)
        batch_bucket = smallest_fitting(self.batch_buckets, len(seqs))
        blocks_bucket = smallest_fitting(self.block_buckets, most_blocks)
        if batch_bucket is None or blocks_bucket is None:
            return None
        return batch_bucket, blocks_bucket

    def logits(self, seqs: Sequence[ScheduledSeq], bucket: tuple[int, int]) -> torch.Tensor:
        """float32 logits [len(seqs), vocab] of one decode step, rows in the order of `seqs`."""
        key = (*bucket, self.paged_kernel)
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = self.new_entry(*key)
        entry.packed.copy_(self.pack(seqs, *bucket))
        if entry.graph is not None and entry.logits is not None:
            entry.graph.replay()
            return entry.logits[: len(seqs)]
        return self.forward(entry.packed, self.paged_kernel)[: len(seqs)]

    def pack(self, seqs: Sequence[ScheduledSeq], batch: int, blocks: int) -> torch.Tensor:
        sink = self.sink_block
        rows: list[list[int]] = []
        for seq in seqs:
            used = seq.start_pos // self.block_size + 1
            rows.append([seq.token_ids[0], seq.start_pos, *seq.block_table[:used], *[sink] * (blocks - used)])
        padding = [0, 0, *[sink] * blocks]
        rows.extend(padding for _ in range(batch - len(seqs)))
        return torch.tensor(rows, dtype=torch.int64)

    def new_entry(self, batch: int, blocks: int, paged_kernel: bool) -> GraphEntry:
        packed = torch.zeros((batch, 2 + blocks), dtype=torch.int64, device=self.device)
        packed[:, 2:] = self.sink_block  # warm-up and capture runs write only into the sink block
        entry = GraphEntry(packed)
        if self.capture:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(WARMUP_RUNS):
                    self.forward(packed, paged_kernel)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                entry.logits = self.forward(packed, paged_kernel)
            entry.graph = graph
        return entry

    def forward(self, packed: torch.Tensor, paged_kernel: bool) -> torch.Tensor:
        """The step itself, from the packed buffer alone (this is what a graph captures)."""
        batch, blocks = packed.shape[0], packed.shape[1] - 2
        size = self.block_size
        input_ids, positions, tables = packed[:, 0], packed[:, 1], packed[:, 2:]
        slot_mapping = tables.gather(1, (positions // size).unsqueeze(1)).squeeze(1) * size + positions % size
        context_slots = (tables.unsqueeze(2) * size + self.block_offsets).view(batch, blocks * size)
        context = self.context_positions[: blocks * size]
        # An additive float mask, built once per step: a boolean one is converted in every layer.
        beyond = (context.unsqueeze(0) > positions.unsqueeze(1)).view(batch, 1, 1, blocks * size)
        mask = torch.zeros(beyond.shape, dtype=self.dtype, device=self.device).masked_fill_(beyond, -math.inf)
        group = DecodeGroup(0, context_slots, mask)
        if paged_kernel:
            group.block_tables, group.context_lens = tables, positions + 1
        meta = AttentionMetadata(slot_mapping, [group], prefills=[])
        hidden = self.model(input_ids, positions, self.kv_caches, meta)
        return self.model.compute_logits(hidden)
