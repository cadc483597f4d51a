"""Train a real byte-level BPE tokenizer locally and write the Hugging Face tokenizer files.

The training text is built in: a few paragraphs of prose and code, plus seeded pseudo-words
drawn from a syllable list so that larger vocabularies still find merges to learn. Byte-level
BPE can encode any string, so the tokenizer works on text it never saw.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
)

# Llama-3-style: every message is a header plus content, closed by <|eot_id|>.
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{- message['content'] | trim }}"
    "{{- '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)

BUILTIN_TEXT = """\
A fleet of inference workers serves requests whose prompts and answers have unpredictable
lengths. Each worker keeps the keys and values of every running sequence in a paged cache, so
memory is handed out in small blocks rather than reserved for the longest possible answer.
When the queue grows, the autoscaler adds replicas; when it shrinks, the least loaded workers
drain their requests and leave. The cost of a million tokens is the number that matters.

The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs!
How vexingly quick daft zebras jump? Sphinx of black quartz, judge my vow. 0123456789
Numbers like 3.14159, 2.71828, 42, 1024 and 65536 appear in logs, prices ($4.00/hour) and dates
(2024-05-17T12:30:00Z). Questions end with a question mark? Lists use commas, semicolons; and
colons: like this. "Quotes", 'apostrophes', (parentheses), [brackets] and {braces} all occur.

def schedule(waiting, running, budget):
    batch = []
    for seq in running + waiting:
        if budget <= 0:
            break
        take = min(budget, seq.remaining)
        batch.append((seq.id, take))
        budget -= take
    return batch

class BlockManager:
    def __init__(self, num_blocks: int) -> None:
        self.free = list(range(num_blocks))

    def allocate(self) -> int:
        return self.free.pop()

for (int i = 0; i < n; ++i) { sum += values[i] * weights[i]; }
SELECT model, count(*) FROM requests WHERE latency_ms > 250 GROUP BY model;
Café, naïve, façade, Zürich, São Paulo, Kraków, 東京, 北京, München, Ελλάδα, Россия, 🙂 🚀.
"""

SYLLABLE_TEXT = (
    "ka ki ku ke ko sa si su se so ta ti tu te to na ni nu ne no ma mi mu me mo ra ri ru re ro la li "
    "lu le lo ba bi bu be bo da di du de do ga gi gu ge go pa pi pu pe po va vi vu ve vo tra tri tro "
    "pla ple pro sta ste sto fen fin fon mar mer mor lin lun ven vor zel zan quo qui ing ion ent ant "
    "est ist ory ary ell all orn ern ith ath ound and ight ough "
)
SYLLABLES = tuple(SYLLABLE_TEXT.split())


def pseudo_words(num_words: int, seed: int) -> Iterator[str]:
    """Seeded words with a Zipf-like frequency, so BPE sees frequent pairs at every scale."""
    rng = random.Random(seed)
    lexicon_size = max(64, num_words // 4)
    lexicon = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(lexicon_size)]
    weights = [1.0 / (rank + 1) for rank in range(lexicon_size)]
    yield from rng.choices(lexicon, weights=weights, k=num_words)


def training_lines(vocab_size: int, seed: int) -> Iterator[str]:
    yield from BUILTIN_TEXT.splitlines()
    line: list[str] = []
    for word in pseudo_words(num_words=vocab_size * 12, seed=seed):
        line.append(word)
        if len(line) == 16:
            yield " ".join(line) + "."
            line = []


def train_tokenizer(vocab_size: int, seed: int = 0) -> Tokenizer:
    """A byte-level BPE with at most `vocab_size` entries; special tokens take the first ids."""
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be at least {256 + len(SPECIAL_TOKENS)} for byte-level BPE")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_lines(vocab_size, seed), trainer=trainer)
    bos = SPECIAL_TOKENS[0]
    # As Llama 3 does: encoding with special tokens prepends the BOS token.
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A",
        pair=f"{bos} $A {bos} $B",
        special_tokens=[(bos, tokenizer.token_to_id(bos))],
    )
    return tokenizer


def write_tokenizer_files(out_dir: Path, *, vocab_size: int, model_max_length: int, seed: int = 0) -> None:
    """Write tokenizer.json and tokenizer_config.json (with the chat template) into `out_dir`."""
    tokenizer = train_tokenizer(vocab_size, seed)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    added_tokens_decoder = {
        str(tokenizer.token_to_id(token)): {
            "content": token,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for token in SPECIAL_TOKENS
    }
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "pad_token": None,
        "add_bos_token": True,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "added_tokens_decoder": added_tokens_decoder,
        "chat_template": CHAT_TEMPLATE,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
