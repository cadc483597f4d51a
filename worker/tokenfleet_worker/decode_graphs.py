"""Decode-only steps from static, bucketed buffers, replayed as CUDA graphs on CUDA.

An eager decode step of a 1B model launches hundreds of small kernels from Python, and on a GPU
the launches, not the memory traffic, set the step time. Here a step made only of single-token
decodes is padded to a (batch, context blocks) bucket so its shapes are fixed, and everything the
model needs is derived on the device from one packed int64 buffer (token id, position, block table
per row). A step then costs one small host-to-device copy and one graph replay.

Padding rows write their keys and values into a spare "sink" block that lies beyond the blocks the
engine manages, and attend only to it, so they never touch a real sequence's cache. Contexts are
padded to the bucket's block count and masked, as in the eager path.

Lookahead (greedy steps only): after launching a step, the next one is launched straight away
for the same sequences one position further, its token ids copied on the device from this step's
argmax. The GPU computes it while the host reads this step's tokens, runs the scheduler and packs
the next batch; when that batch is exactly what was guessed (no sequence finished or joined, no
new block needed), its tokens are already on the way. A wrong guess costs one wasted step of GPU
time and nothing else: it wrote only each sequence's next slot, in a block the sequence still held
when it was launched (a new block is never guessed), and whatever reuses that slot later writes
it again, in stream order, before reading it.

On CPU the same bucketed path runs without capture: that is how it is tested without a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tokenfleet_worker.batch import SampledToken, ScheduledSeq
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
    greedy: torch.Tensor | None = None  # the argmax of each row of logits, likewise
    graph: torch.cuda.CUDAGraph | None = None


@dataclass
class Launched:
    """A greedy step queued on the device, whose tokens are copied back as soon as it ends."""

    key: tuple[int, int, bool, bool]
    packed: torch.Tensor  # the CPU rows it runs with (a lookahead's token ids are filled in later)
    tokens: torch.Tensor  # host buffer its argmax lands in
    done: torch.cuda.Event | None  # None on CPU, where the step has already run

    def token_ids(self, count: int) -> list[int]:
        if self.done is not None:
            self.done.synchronize()
        return self.tokens[:count].tolist()


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
        fused_kernels: bool = False,
        lookahead: bool = False,
    ) -> None:
        """`paged_kernel`: attend with the Triton kernel of paged_attention.py; `fused_kernels`: with
        it, run the Triton kernels of fused_kernels.py too; `lookahead`: launch each greedy step's
        successor ahead (module doc). All may be switched later."""
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
        self.fused_kernels = fused_kernels
        self.lookahead = lookahead
        self.entries: dict[tuple[int, int, bool, bool], GraphEntry] = {}
        self.ahead: Launched | None = None  # the lookahead step in flight, if any
        self.lookahead_used = 0  # guessed steps that were the next step
        self.lookahead_wasted = 0  # guessed steps thrown away
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

    def kernel_flags(self) -> tuple[bool, bool]:
        """(paged kernel, fused kernels) as steps now run: the fused kernels only with the paged one."""
        return self.paged_kernel, self.paged_kernel and self.fused_kernels

    def entry(self, bucket: tuple[int, int]) -> tuple[tuple[int, int, bool, bool], GraphEntry]:
        key = (*bucket, *self.kernel_flags())
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = self.new_entry(*key)
        return key, entry

    def logits(self, seqs: Sequence[ScheduledSeq], bucket: tuple[int, int]) -> torch.Tensor:
        """float32 logits [len(seqs), vocab] of one decode step, rows in the order of `seqs`."""
        self.discard_ahead()  # its guess cannot be this step: only greedy steps are guessed
        key, entry = self.entry(bucket)
        entry.packed.copy_(self.pack(seqs, *bucket))
        if entry.graph is not None and entry.logits is not None:
            entry.graph.replay()
            return entry.logits[: len(seqs)]
        return self.forward(entry.packed, *key[2:])[: len(seqs)]

    def greedy_tokens(self, seqs: Sequence[ScheduledSeq], bucket: tuple[int, int]) -> list[SampledToken]:
        """The argmax token of each sequence, with the next step launched ahead (see the module doc)."""
        key, entry = self.entry(bucket)
        packed = self.pack(seqs, *bucket)
        ahead = self.ahead
        if ahead is not None and ahead.key == key and torch.equal(ahead.packed, packed):
            current, self.ahead = ahead, None
            self.lookahead_used += 1
        else:
            self.discard_ahead()
            current = self.launch(key, entry, packed, tokens_on_device=False)
        following = self.advance(seqs, bucket, packed) if self.lookahead else None
        if following is not None:
            self.ahead = self.launch(key, entry, following, tokens_on_device=True)
        token_ids = current.token_ids(len(seqs))
        if self.ahead is not None:
            self.ahead.packed[: len(seqs), 0] = torch.tensor(token_ids)
        return [SampledToken(seq.seq_id, token) for seq, token in zip(seqs, token_ids, strict=True)]

    def discard_ahead(self) -> None:
        """Forget the guessed step (the GPU may still be computing it: see the module doc)."""
        if self.ahead is not None:
            self.lookahead_wasted += 1
            self.ahead = None

    def launch(
        self,
        key: tuple[int, int, bool, bool],
        entry: GraphEntry,
        packed: torch.Tensor,
        *,
        tokens_on_device: bool,
    ) -> Launched:
        """Queue one step on `packed`; with `tokens_on_device`, its token ids are the last step's argmax."""
        count = len(packed)
        if not self.capture:
            entry.packed.copy_(packed)
            if tokens_on_device and entry.greedy is not None:
                entry.packed[:, 0] = entry.greedy
            entry.logits = self.forward(entry.packed, *key[2:])
            entry.greedy = entry.logits.argmax(dim=-1)
            return Launched(key, packed, entry.greedy.clone(), None)
        # Pinned sources and targets keep both copies asynchronous: a pageable one waits for the GPU.
        entry.packed.copy_(packed.pin_memory(), non_blocking=True)
        assert entry.graph is not None and entry.greedy is not None
        if tokens_on_device:
            entry.packed[:, 0].copy_(entry.greedy)
        entry.graph.replay()
        tokens = torch.empty(count, dtype=torch.int64, pin_memory=True)
        tokens.copy_(entry.greedy, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return Launched(key, packed, tokens, done)

    def advance(
        self, seqs: Sequence[ScheduledSeq], bucket: tuple[int, int], packed: torch.Tensor
    ) -> torch.Tensor | None:
        """The rows of the step after the one `packed` holds (token ids still unknown), or None where
        it cannot be guessed: a sequence would need a block it does not hold yet, or a bigger bucket.

        Derived from this step's rows, not packed again: the host's work is what lookahead hides.
        """
        rows = packed.clone()
        values = rows.numpy()
        positions = values[: len(seqs), 1] + 1
        if int(positions.max()) >= self.max_model_len:
            return None
        for row in (positions % self.block_size == 0).nonzero()[0].tolist():
            index = int(positions[row]) // self.block_size  # the new block this row moves into
            table = seqs[row].block_table
            if index >= len(table) or index >= bucket[1]:
                return None
            values[row, 2 + index] = table[index]
        values[: len(seqs), 1] = positions
        return rows

    def pack(self, seqs: Sequence[ScheduledSeq], batch: int, blocks: int) -> torch.Tensor:
        rows = torch.full((batch, 2 + blocks), self.sink_block, dtype=torch.int64)
        rows[:, :2] = 0  # padding rows: token 0 at position 0, attending only to the sink block
        values = rows.numpy()  # numpy's item and slice assignment is several times torch's
        for row, seq in enumerate(seqs):
            used = seq.start_pos // self.block_size + 1
            values[row, 0] = seq.token_ids[0]
            values[row, 1] = seq.start_pos
            values[row, 2 : 2 + used] = seq.block_table[:used]
        return rows

    def new_entry(self, batch: int, blocks: int, paged_kernel: bool, fused: bool) -> GraphEntry:
        packed = torch.zeros((batch, 2 + blocks), dtype=torch.int64, device=self.device)
        packed[:, 2:] = self.sink_block  # warm-up and capture runs write only into the sink block
        entry = GraphEntry(packed)
        if self.capture:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(WARMUP_RUNS):
                    self.forward(packed, paged_kernel, fused)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                entry.logits = self.forward(packed, paged_kernel, fused)
                entry.greedy = entry.logits.argmax(dim=-1)
            entry.graph = graph
        return entry

    def forward(self, packed: torch.Tensor, paged_kernel: bool, fused: bool = False) -> torch.Tensor:
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
        meta = AttentionMetadata(slot_mapping, [group], prefills=[], fused=fused)
        hidden = self.model(input_ids, positions, self.kv_caches, meta)
        return self.model.compute_logits(hidden)
