"""Our decoder's logits equal Hugging Face transformers' on the same safetensors, and chunked
prefill plus paged decode equals one full forward."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tokenfleet_worker.batch import ScheduledSeq, StepBatch
from tokenfleet_worker.loader import load_model
from tokenfleet_worker.make_model import make_model
from tokenfleet_worker.model import DecoderLayer, DecoderModel, GatherWorkspace, KVCache, gather_rows
from tokenfleet_worker.runner import build_step_inputs

BLOCK_SIZE = 4
NUM_BLOCKS = 256
ATOL = 1e-4


def new_cache(model: DecoderModel) -> list[KVCache]:
    config = model.config
    shape = (NUM_BLOCKS, BLOCK_SIZE, config.num_kv_heads, config.head_dim)
    return [(torch.zeros(shape), torch.zeros(shape)) for _ in range(config.num_layers)]


def run_logits(model: DecoderModel, caches: list[KVCache], seqs: list[ScheduledSeq]) -> list[torch.Tensor]:
    """Logits of every token of every chunk, per sequence in batch order."""
    inputs = build_step_inputs(StepBatch(tuple(seqs)), BLOCK_SIZE, model.config.max_position_embeddings)
    with torch.inference_mode():
        hidden = model(inputs.input_ids, inputs.positions, caches, inputs.meta)
        logits = model.compute_logits(hidden)
    return [
        logits[inputs.first_rows[s.seq_id] : inputs.first_rows[s.seq_id] + len(s.token_ids)] for s in seqs
    ]


def hf_logits(model_dir: Path, token_ids: list[int]) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        return reference(torch.tensor([token_ids])).logits[0].float()


def edit_config(model_dir: Path, **changes: Any) -> None:
    path = model_dir / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("llama"), preset="tiny", arch="llama", seed=3)


def prompt(length: int, vocab_size: int, seed: int = 0) -> list[int]:
    return torch.randint(0, vocab_size, (length,), generator=torch.Generator().manual_seed(seed)).tolist()


def full_forward(model: DecoderModel, tokens: list[int]) -> torch.Tensor:
    table = tuple(range(NUM_BLOCKS))
    seq = ScheduledSeq(0, tuple(tokens), 0, table, needs_sample=True)
    return run_logits(model, new_cache(model), [seq])[0]


@pytest.mark.parametrize(
    ("arch", "config_changes"),
    [
        ("llama", {}),
        ("qwen2", {}),
        ("mistral", {}),
        (
            "llama",
            {
                "rope_scaling": {
                    "rope_type": "llama3",
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 16,
                }
            },
        ),
        ("llama", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
        ("llama", {"tie_word_embeddings": True}),
    ],
    ids=["llama", "qwen2", "mistral", "llama3-rope", "linear-rope", "tied"],
)
@pytest.mark.parametrize("packed", [False, True], ids=["dense", "onednn-packed"])
def test_logits_match_transformers(
    tmp_path: Path, arch: str, config_changes: dict[str, Any], packed: bool
) -> None:
    model_dir = make_model(tmp_path / arch, preset="tiny", arch=arch, seed=7)
    if config_changes:
        edit_config(model_dir, **config_changes)
    if config_changes.get("tie_word_embeddings"):
        # A tied checkpoint carries no lm_head; drop it the way a real one would be written.
        from safetensors.torch import load_file, save_file

        tensors = load_file(model_dir / "model.safetensors")
        del tensors["lm_head.weight"]
        save_file(tensors, model_dir / "model.safetensors", metadata={"format": "pt"})
    model = load_model(model_dir)
    if packed:  # what the CPU runner serves with
        model.pack_linears()
    tokens = prompt(40, model.config.vocab_size)
    ours = full_forward(model, tokens)
    expected = hf_logits(model_dir, tokens)
    assert ours.shape == expected.shape
    torch.testing.assert_close(ours, expected, atol=ATOL, rtol=0)
    assert float(expected.std()) > 0.01  # the comparison is not between two constant outputs


def test_packing_keeps_shapes_and_frees_the_dense_weights(llama_dir: Path) -> None:
    model = load_model(llama_dir)
    before = {name: (p.shape, p.dtype) for name, p in model.named_parameters()}
    model.pack_linears()
    after = {name: (p.shape, p.dtype) for name, p in model.named_parameters()}
    assert after == before  # parameter counts and byte accounting still hold
    layer = model.layers[0]
    assert isinstance(layer, DecoderLayer)
    assert layer.mlp.gate_up_proj.weight.is_meta and layer.mlp.gate_up_proj.packed is not None
    assert not model.embed_tokens.weight.is_meta  # the lookup table stays dense


def test_chunked_prefill_and_paged_decode_match_full_forward(llama_dir: Path) -> None:
    model = load_model(llama_dir)
    tokens = prompt(30, model.config.vocab_size, seed=1)
    expected = full_forward(model, tokens)
    caches = new_cache(model)
    # Deliberately scattered, non-monotonic physical blocks.
    table = (9, 2, 31, 5, 17, 40, 11, 3)
    chunks = [(0, 7), (7, 19), (19, 26)]  # three prefill chunks, then single-token decodes
    got: list[torch.Tensor] = []
    for start, end in chunks:
        seq = ScheduledSeq(0, tuple(tokens[start:end]), start, table, needs_sample=end == 26)
        got.append(run_logits(model, caches, [seq])[0])
    for position in range(26, 30):
        seq = ScheduledSeq(0, (tokens[position],), position, table, needs_sample=True)
        got.append(run_logits(model, caches, [seq])[0])
    torch.testing.assert_close(torch.cat(got), expected, atol=ATOL, rtol=0)


def test_mixed_batch_of_decodes_and_prefills_matches_separate_runs(llama_dir: Path) -> None:
    model = load_model(llama_dir)
    vocab = model.config.vocab_size
    prompts = {
        seq_id: prompt(length, vocab, seed=seq_id) for seq_id, length in [(1, 13), (2, 5), (3, 22), (4, 9)]
    }
    expected = {seq_id: full_forward(model, tokens) for seq_id, tokens in prompts.items()}
    tables = {1: (0, 1, 2, 3, 4, 5), 2: (6, 7), 3: (8, 9, 10, 11, 12, 13), 4: (14, 15, 16)}
    caches = new_cache(model)
    # Step 1: sequences 1 and 2 prefill all but their last token, sequence 3 prefills a first chunk.
    first = [
        ScheduledSeq(1, tuple(prompts[1][:12]), 0, tables[1], needs_sample=False),
        ScheduledSeq(2, tuple(prompts[2][:4]), 0, tables[2], needs_sample=False),
        ScheduledSeq(3, tuple(prompts[3][:10]), 0, tables[3], needs_sample=False),
    ]
    run_logits(model, caches, first)
    # Step 2: two decodes at different lengths, a continuing chunk and a fresh prefill in one batch.
    second = [
        ScheduledSeq(3, tuple(prompts[3][10:]), 10, tables[3], needs_sample=True),
        ScheduledSeq(1, (prompts[1][12],), 12, tables[1], needs_sample=True),
        ScheduledSeq(4, tuple(prompts[4]), 0, tables[4], needs_sample=True),
        ScheduledSeq(2, (prompts[2][4],), 4, tables[2], needs_sample=True),
    ]
    logits = run_logits(model, caches, second)
    torch.testing.assert_close(logits[0], expected[3][10:], atol=ATOL, rtol=0)
    torch.testing.assert_close(logits[1], expected[1][12:], atol=ATOL, rtol=0)
    torch.testing.assert_close(logits[2], expected[4], atol=ATOL, rtol=0)
    torch.testing.assert_close(logits[3], expected[2][4:], atol=ATOL, rtol=0)


def test_decodes_of_very_different_lengths_in_one_step(llama_dir: Path) -> None:
    """Contexts of 9, 150 and 330 tokens fall into separate padded decode groups."""
    model = load_model(llama_dir)
    lengths = {1: 9, 2: 330, 3: 150, 4: 12}
    prompts = {seq_id: prompt(n, model.config.vocab_size, seed=seq_id) for seq_id, n in lengths.items()}
    caches = new_cache(model)
    tables: dict[int, tuple[int, ...]] = {}
    next_block = 0
    for seq_id, tokens in prompts.items():
        num_blocks = len(tokens) // BLOCK_SIZE + 1
        tables[seq_id] = tuple(range(next_block, next_block + num_blocks))
        next_block += num_blocks
        run_logits(model, caches, [ScheduledSeq(seq_id, tuple(tokens[:-1]), 0, tables[seq_id], False)])
    step = [ScheduledSeq(s, (p[-1],), len(p) - 1, tables[s], True) for s, p in prompts.items()]
    inputs = build_step_inputs(StepBatch(tuple(step)), BLOCK_SIZE, model.config.max_position_embeddings)
    assert len(inputs.meta.decode_groups) == 3
    logits = run_logits(model, caches, step)
    for seq, got in zip(step, logits, strict=True):
        expected = full_forward(model, prompts[seq.seq_id])[-1:]
        torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_cuda_logits_close_to_cpu_fp32(llama_dir: Path, dtype: str) -> None:
    cpu = load_model(llama_dir)
    gpu = load_model(llama_dir, "cuda", dtype)
    tokens = prompt(24, cpu.config.vocab_size, seed=5)
    expected = full_forward(cpu, tokens)
    config = gpu.config
    shape = (NUM_BLOCKS, BLOCK_SIZE, config.num_kv_heads, config.head_dim)
    caches = [
        (
            torch.zeros(shape, dtype=gpu.embed_tokens.weight.dtype, device="cuda"),
            torch.zeros(shape, dtype=gpu.embed_tokens.weight.dtype, device="cuda"),
        )
        for _ in range(config.num_layers)
    ]
    seq = ScheduledSeq(0, tuple(tokens), 0, tuple(range(NUM_BLOCKS)), needs_sample=True)
    inputs = build_step_inputs(StepBatch((seq,)), BLOCK_SIZE, config.max_position_embeddings)
    from tokenfleet_worker.runner import move_metadata

    with torch.inference_mode():
        hidden = gpu(
            inputs.input_ids.cuda(),
            inputs.positions.cuda(),
            caches,
            move_metadata(inputs.meta, torch.device("cuda")),
        )
        got = gpu.compute_logits(hidden).cpu()
    torch.testing.assert_close(got, expected, atol=2e-2, rtol=0)


@pytest.mark.gpu
def test_cuda_bf16_logits_close_to_transformers_bf16(llama_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    ours = load_model(llama_dir, "cuda", "bfloat16")
    tokens = prompt(32, ours.config.vocab_size, seed=9)
    reference = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.bfloat16).to("cuda").eval()
    with torch.no_grad():
        expected = reference(torch.tensor([tokens], device="cuda")).logits[0].float().cpu()
    config = ours.config
    shape = (NUM_BLOCKS, BLOCK_SIZE, config.num_kv_heads, config.head_dim)
    caches = [
        (
            torch.zeros(shape, dtype=torch.bfloat16, device="cuda"),
            torch.zeros(shape, dtype=torch.bfloat16, device="cuda"),
        )
        for _ in range(config.num_layers)
    ]
    seq = ScheduledSeq(0, tuple(tokens), 0, tuple(range(NUM_BLOCKS)), needs_sample=True)
    inputs = build_step_inputs(StepBatch((seq,)), BLOCK_SIZE, config.max_position_embeddings)
    from tokenfleet_worker.runner import move_metadata

    with torch.inference_mode():
        meta = move_metadata(inputs.meta, torch.device("cuda"))
        hidden = ours(inputs.input_ids.cuda(), inputs.positions.cuda(), caches, meta)
        got = ours.compute_logits(hidden).cpu()
    torch.testing.assert_close(got, expected, atol=2e-2, rtol=0)
    assert float(expected.std()) > 0.01


def test_gathers_reuse_one_buffer_per_side_and_copy_whole_rows() -> None:
    table = torch.arange(40.0).view(10, 4)
    workspace = GatherWorkspace()
    first = gather_rows(table, torch.tensor([3, 1, 3]), workspace, 0)
    torch.testing.assert_close(first, table[[3, 1, 3]])
    address = workspace.buffers[0].data_ptr()
    second = gather_rows(table, torch.tensor([9, 0]), workspace, 0)  # smaller: the same storage
    torch.testing.assert_close(second, table[[9, 0]])
    assert second.data_ptr() == address
    values = gather_rows(table, torch.tensor([2]), workspace, 1)  # the other side keeps its own
    assert values.data_ptr() != address and torch.equal(second, table[[9, 0]])
    assert torch.equal(gather_rows(table, torch.tensor([4, 5]), None, 0), table[[4, 5]])
